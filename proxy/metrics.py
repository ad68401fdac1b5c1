"""Prometheus metrics: one registry per app, filled from each finished request's `council` object."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from proxy.store import MemberUse
from routing.core import CouncilReport
from routing.upstream.health import Health
from routing.upstream.pool import PooledBackend

CONTENT_TYPE = CONTENT_TYPE_LATEST
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


BREAKER = {"closed": 0, "half-open": 1, "open": 2}


class _Value:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class _Buckets:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket whose `le` holds it
        self.sum += amount


class Family:
    """A labelled counter, gauge or histogram of the request path, kept as plain numbers.

    prometheus-client's own metrics take a lock for each increment and each label lookup: about ten of
    each per request, a few percent of a pass-through's CPU. These are only ever changed on the event
    loop (one thread), and read when /metrics is scraped, on the same loop; the text they expose is
    prometheus-client's own (its metric families and its exposition)."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: list[str],
                 buckets: tuple[float, ...] = ()) -> None:
        self.kind, self.name, self.documentation, self.labelnames = kind, name, documentation, labelnames
        self.bounds = (*buckets, float("inf")) if kind == "histogram" else ()
        self._le = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]  # as it spells `le`
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:  # checked once per label set, as prometheus-client checks every call
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {values}")
            child = self._children[values] = _Buckets(self.bounds) if self.bounds else _Value()
        return child

    def exposed(self) -> Metric:
        if self.kind == "counter":
            counter = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for values, v in self._children.items():
                counter.add_metric(values, v.value, created=v.created)
            return counter
        if self.kind == "gauge":
            gauge = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for values, v in self._children.items():
                gauge.add_metric(values, v.value)
            return gauge
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, h in self._children.items():
            running, cumulative = 0, []
            for le, n in zip(self._le, h.counts, strict=True):
                running += n
                cumulative.append((le, running))
            histogram.add_metric(values, cumulative, h.sum)
            histogram.samples.append(Sample(f"{self.name}_created", dict(zip(self.labelnames, values, strict=True)),
                                            h.created))
        return histogram


class _Member:
    """One member's children of the member families, each looked up the first time it is used (a label set
    appears in /metrics once it has counted something, as prometheus-client's would): a finished council
    reads six members' children without building a label tuple and a lookup for each."""

    __slots__ = ("completion", "latency", "ok", "prompt")

    def __init__(self) -> None:
        self.ok: _Value | None = None
        self.latency: _Buckets | None = None
        self.prompt: _Value | None = None
        self.completion: _Value | None = None


class _Model:
    """One model's children of the request families, as `_Member` is a member's: `inflight` made with the
    first request, the finished ones per HTTP status, each the first time it is counted."""

    __slots__ = ("finished", "inflight")

    def __init__(self, inflight: _Value) -> None:
        self.inflight = inflight
        self.finished: dict[str, tuple[_Value, _Buckets]] = {}


class _Families:
    """The collector that hands the families to prometheus-client's registry."""

    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return (f.exposed() for f in self.families)

    def describe(self) -> Iterator[Metric]:
        return self.collect()


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Family("counter", "shenron_requests", "Chat requests by model and HTTP status.",
                               ["model", "status"])
        self.latency = Family("histogram", "shenron_request_duration_seconds", "Chat request latency, to the last "
                              "byte.", ["model", "status"], BUCKETS)
        self.inflight = Family("gauge", "shenron_inflight_requests", "Chat requests being served.", ["model"])
        self.member_calls = Family("counter", "shenron_member_calls", "Calls to members by outcome "
                                   "(ok, error, timeout, cancelled, skipped).", ["member", "status"])
        self.member_latency = Family("histogram", "shenron_member_duration_seconds", "Member answer latency.",
                                     ["member"], BUCKETS)
        self.agreement = Family("histogram", "shenron_vote_agreement", "Weight share of the winning cluster in a "
                                "council vote.", ["model"], (0.2, 0.34, 0.5, 0.67, 0.75, 0.9, 1.0))
        self.cost = Family("counter", "shenron_cost_usd", "Spend in USD by member.", ["member", "cloud"])
        self.tokens = Family("counter", "shenron_tokens", "Tokens by member and kind.", ["member", "kind"])
        self.cache = Family("counter", "shenron_cache_lookups", "Response cache lookups.", ["model", "result"])
        self.limited = Family("counter", "shenron_rate_limited", "Requests refused by a tier limit.",
                              ["tier", "limit"])
        r.register(_Families([self.requests, self.latency, self.inflight, self.member_calls, self.member_latency,
                              self.agreement, self.cost, self.tokens, self.cache, self.limited]))
        self.backend_up = Gauge("shenron_backend_up", "1 when the backend answered its last probe.", ["backend"],
                                registry=r)
        self.breaker = Gauge("shenron_breaker_state", "Circuit breaker per backend: 0 closed, 1 half-open, 2 open.",
                             ["backend"], registry=r)
        self.gpu_inflight = Gauge("shenron_gpu_inflight", "Requests running on each GPU pool.", ["gpu"], registry=r)
        self.gpu_queued = Gauge("shenron_gpu_queued", "Requests waiting for a slot on each GPU pool.", ["gpu"],
                                registry=r)
        self.endpoint_up = Gauge("shenron_endpoint_up", "1 while a pool's endpoint may be asked (breaker closed, "
                                 "not loading).", ["backend", "endpoint"], registry=r)
        self.endpoint_outstanding = Gauge("shenron_endpoint_outstanding", "Requests this replica has on each "
                                          "endpoint of a pool.", ["backend", "endpoint"], registry=r)
        self.fleet_redis_up = Gauge("shenron_fleet_redis_up", "1 while the replicas' shared Redis answers (GPU slots "
                                    "shared); 0: this replica keeps to its share.", registry=r)
        self.fleet_replicas = Gauge("shenron_fleet_replicas", "Replicas of Shenron alive at the last heartbeat.",
                                    registry=r)
        self.fleet_round_trips = Gauge("shenron_fleet_redis_round_trips", "Redis calls made for GPU slots and "
                                       "heartbeats since start.", registry=r)
        self._members: dict[str, _Member] = {}
        self._models: dict[str, _Model] = {}
        """The models requests were routed to (a finished request not routed, "(unrouted)", has none)."""

    def finished(self, model: str, status: int, seconds: float, council: CouncilReport | None,
                 members: list[MemberUse]) -> None:
        """Count a finished request and each member call it made, failed requests' members included."""
        code = str(status)
        at = self._models.get(model)
        done = at.finished.get(code) if at is not None else None
        if done is None:
            done = (self.requests.labels(model, code), self.latency.labels(model, code))
            if at is not None:
                at.finished[code] = done
        done[0].inc()
        done[1].observe(seconds)
        if council is not None and council.agreement is not None:
            self.agreement.labels(model).observe(council.agreement)
        tokens = self.tokens.labels
        for m in members:
            c = self._members.get(m.name)
            if c is None:
                c = self._members[m.name] = _Member()
            if m.status == "ok":
                (c.ok or self._made(c, "ok", self.member_calls, m.name, "ok")).inc()
                (c.latency or self._made(c, "latency", self.member_latency, m.name)).observe(m.latency_ms / 1000)
            else:
                self.member_calls.labels(m.name, m.status).inc()
            if m.prompt_tokens:
                (c.prompt or self._made(c, "prompt", self.tokens, m.name, "prompt")).inc(m.prompt_tokens)
            if m.completion_tokens:
                (c.completion or self._made(c, "completion", self.tokens, m.name, "completion")).inc(
                    m.completion_tokens)
            if m.cached_tokens:  # of the prompt tokens above, read from the server's prompt cache
                tokens(m.name, "cached").inc(m.cached_tokens)
            if m.cost_usd:
                self.cost.labels(m.name, "true" if m.cloud else "false").inc(m.cost_usd)

    def started(self, model: str) -> None:
        """A request routed to `model` is being served."""
        c = self._models.get(model)
        if c is None:
            c = self._models[model] = _Model(self.inflight.labels(model))
        c.inflight.inc()

    def ended(self, model: str) -> None:
        """A request `started` is over (`finished` counts it)."""
        self._models[model].inflight.dec()

    @staticmethod
    def _made(c: _Member, slot: str, family: Family, *values: str) -> Any:
        """A member's child of `family` for `values`, made now and kept in `c`'s `slot`."""
        child = family.labels(*values)
        setattr(c, slot, child)
        return child

    def render(self, reachable: dict[str, bool], health: Health | None = None) -> bytes:
        for name, ok in reachable.items():
            self.backend_up.labels(name).set(1 if ok else 0)
        if health is not None:
            for name, g in health.guards.items():
                self.breaker.labels(name).set(BREAKER[g.state])
                if g.probed_at is not None:
                    self.backend_up.labels(name).set(1 if g.state == "closed" and not g.loading else 0)
            for name, b in health.backends.items():
                for e in b.endpoints if isinstance(b, PooledBackend) else ():
                    self.endpoint_up.labels(name, e.label).set(
                        1 if e.backend.guard.state == "closed" and not e.backend.guard.loading else 0)
                    self.endpoint_outstanding.labels(name, e.label).set(e.outstanding)
            for gpu, pool in health.pools.items():
                self.gpu_inflight.labels(gpu).set(pool.inflight)
                self.gpu_queued.labels(gpu).set(pool.queued)
            if health.fleet is not None:
                self.fleet_redis_up.set(1 if health.fleet.online else 0)
                self.fleet_replicas.set(health.fleet.replicas)
                self.fleet_round_trips.set(health.fleet.round_trips)
        return generate_latest(self.registry)
