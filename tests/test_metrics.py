"""/metrics: the request path's counters and histograms say what prometheus-client's own would say."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import BUCKETS, Metrics
from proxy.store import MemberUse


def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample but the creation times (the only thing two registries built apart may differ in)."""
    return {(s.name, tuple(sorted(s.labels.items())), s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if not s.name.endswith("_created")}


seconds = st.sampled_from(BUCKETS) | st.floats(0, 200, allow_nan=False)  # exactly on a bucket's bound too


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(["ultra-instinct", "full-council"]), st.sampled_from([200, 502]),
                                seconds, st.integers(0, 50)), min_size=1, max_size=12))
def test_the_request_metrics_expose_what_prometheus_client_would(
        calls: list[tuple[str, int, float, int]]) -> None:
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
    for model, status, s, n in calls:
        ours.finished(model, status, s, None, [MemberUse("goku", "ok", int(s * 1000), n, 1)])
        requests.labels(model, str(status)).inc()
        latency.labels(model, str(status)).observe(s)
        calls_.labels("goku", "ok").inc()
        member_latency.labels("goku").observe(int(s * 1000) / 1000)
        if n:
            tokens.labels("goku", "prompt").inc(n)
        tokens.labels("goku", "completion").inc(1)
    exposed = samples(ours.render({}).decode())
    assert samples(generate_latest(reference).decode()) <= exposed
    assert any(name == "shenron_request_duration_seconds_created" for f in
               text_string_to_metric_families(ours.render({}).decode()) for name, *_ in f.samples)


def test_in_flight_requests_go_up_and_back_down() -> None:
    m = Metrics()
    m.inflight.labels("ultra-instinct").inc()
    assert ("shenron_inflight_requests", (("model", "ultra-instinct"),), 1.0) in samples(m.render({}).decode())
    m.inflight.labels("ultra-instinct").dec()
    assert ("shenron_inflight_requests", (("model", "ultra-instinct"),), 0.0) in samples(m.render({}).decode())


def test_a_label_missing_is_an_error_where_it_is_made_not_at_the_scrape() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="shenron_requests takes the labels"):
        m.requests.labels("ultra-instinct")
    assert b"shenron_requests" in m.render({})
