"""/metrics: the request path's counters and histograms say what prometheus-client's own would say."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import BUCKETS, Metrics
from proxy.store import MemberUse


def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample but the creation times (the only thing two registries built apart may differ in)."""
    return {(s.name, tuple(sorted(s.labels.items())), s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if not s.name.endswith("_created")}


seconds = st.sampled_from(BUCKETS) | st.floats(0, 200, allow_nan=False)  # exactly on a bucket's bound too


member_use = st.tuples(st.sampled_from(["goku", "vegeta", "smol#2"]), st.sampled_from(["ok", "ok", "error", "skipped"]),
                       st.integers(0, 50), st.integers(0, 3))


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(["ultra-instinct", "full-council", "(unrouted)"]),
                                st.sampled_from([200, 502, 429]),
                                seconds, st.integers(0, 50), st.lists(member_use, max_size=4)), min_size=1,
                      max_size=12))
def test_the_request_metrics_expose_what_prometheus_client_would(
        calls: list[tuple[str, int, float, int, list[tuple[str, str, int, int]]]]) -> None:
    ours = Metrics()
    reference = CollectorRegistry()
    requests = Counter("shenron_requests", "Chat requests by model and HTTP status.", ["model", "status"],
                       registry=reference)
    latency = Histogram("shenron_request_duration_seconds", "Chat request latency, to the last byte.",
                        ["model", "status"], buckets=BUCKETS, registry=reference)
    tokens = Counter("shenron_tokens", "Tokens by member and kind.", ["member", "kind"], registry=reference)
    calls_ = Counter("shenron_member_calls", "Calls to members by outcome (ok, error, timeout, cancelled, skipped).",
                     ["member", "status"], registry=reference)
    member_latency = Histogram("shenron_member_duration_seconds", "Member answer latency.", ["member"],
                               buckets=BUCKETS, registry=reference)
    inflight = Gauge("shenron_inflight_requests", "Chat requests being served.", ["model"], registry=reference)
    for model, status, s, n, more in calls:
        used = [MemberUse("goku", "ok", int(s * 1000), n, 1)]
        used += [MemberUse(name, said, 7, p, c) for name, said, p, c in more]
        if model != "(unrouted)":  # as accounting does: only a routed request is in flight
            ours.started(model)
            inflight.labels(model).inc()
            ours.ended(model)
            inflight.labels(model).dec()
        ours.finished(model, status, s, None, used)
        requests.labels(model, str(status)).inc()
        latency.labels(model, str(status)).observe(s)
        for m in used:
            calls_.labels(m.name, m.status).inc()
            if m.status == "ok":
                member_latency.labels(m.name).observe(m.latency_ms / 1000)
            if m.prompt_tokens:
                tokens.labels(m.name, "prompt").inc(m.prompt_tokens)
            if m.completion_tokens:
                tokens.labels(m.name, "completion").inc(m.completion_tokens)
    exposed = samples(ours.render({}).decode())
    want = samples(generate_latest(reference).decode())
    assert want <= exposed
    exact = ("shenron_member_calls", "shenron_tokens", "shenron_member_duration_seconds", "shenron_requests",
             "shenron_request_duration_seconds", "shenron_inflight_requests")
    assert {x for x in exposed if x[0].startswith(exact)} == {x for x in want if x[0].startswith(exact)}
    assert any(name == "shenron_request_duration_seconds_created" for f in
               text_string_to_metric_families(ours.render({}).decode()) for name, *_ in f.samples)


def test_in_flight_requests_go_up_and_back_down() -> None:
    m = Metrics()
    m.started("ultra-instinct")
    m.started("ultra-instinct")
    m.ended("ultra-instinct")
    assert ("shenron_inflight_requests", (("model", "ultra-instinct"),), 1.0) in samples(m.render({}).decode())
    m.ended("ultra-instinct")
    assert ("shenron_inflight_requests", (("model", "ultra-instinct"),), 0.0) in samples(m.render({}).decode())


def test_a_label_missing_is_an_error_where_it_is_made_not_at_the_scrape() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="shenron_requests takes the labels"):
        m.requests.labels("ultra-instinct")
    assert b"shenron_requests" in m.render({})
