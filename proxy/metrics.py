"""Prometheus metrics: one registry per app, filled from each finished request's `council` object."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from proxy.store import MemberUse
from routing.core import CouncilReport
from routing.upstream.health import Health
from routing.upstream.pool import PooledBackend

CONTENT_TYPE = CONTENT_TYPE_LATEST
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


BREAKER = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.requests = Counter("shenron_requests", "Chat requests by model and HTTP status.",
                                ["model", "status"], registry=r)
        self.latency = Histogram("shenron_request_duration_seconds", "Chat request latency, to the last byte.",
                                 ["model", "status"], buckets=BUCKETS, registry=r)
        self.inflight = Gauge("shenron_inflight_requests", "Chat requests being served.", ["model"], registry=r)
        self.member_calls = Counter("shenron_member_calls", "Calls to members by outcome "
                                    "(ok, error, timeout, cancelled, skipped).", ["member", "status"], registry=r)
        self.member_latency = Histogram("shenron_member_duration_seconds", "Member answer latency.", ["member"],
                                        buckets=BUCKETS, registry=r)
        self.agreement = Histogram("shenron_vote_agreement", "Weight share of the winning cluster in a council vote.",
                                   ["model"], buckets=(0.2, 0.34, 0.5, 0.67, 0.75, 0.9, 1.0), registry=r)
        self.cost = Counter("shenron_cost_usd", "Spend in USD by member.", ["member", "cloud"], registry=r)
        self.tokens = Counter("shenron_tokens", "Tokens by member and kind.", ["member", "kind"], registry=r)
        self.cache = Counter("shenron_cache_lookups", "Response cache lookups.", ["model", "result"], registry=r)
        self.limited = Counter("shenron_rate_limited", "Requests refused by a tier limit.", ["tier", "limit"],
                               registry=r)
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

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus-client's lookup takes a lock and rebuilds the
        key on every call, 3.5 us each and a dozen per council request. Label values are bounded
        (routed models, member names, statuses)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def finished(self, model: str, status: int, seconds: float, council: CouncilReport | None,
                 members: list[MemberUse]) -> None:
        """Count a finished request and each member call it made, failed requests' members included."""
        c = self.child
        code = str(status)
        c(self.requests, model, code).inc()
        c(self.latency, model, code).observe(seconds)
        if council is not None and council.agreement is not None:
            c(self.agreement, model).observe(council.agreement)
        for m in members:
            c(self.member_calls, m.name, m.status).inc()
            if m.status == "ok":
                c(self.member_latency, m.name).observe(m.latency_ms / 1000)
            if m.prompt_tokens:
                c(self.tokens, m.name, "prompt").inc(m.prompt_tokens)
            if m.completion_tokens:
                c(self.tokens, m.name, "completion").inc(m.completion_tokens)
            if m.cached_tokens:  # of the prompt tokens above, read from the server's prompt cache
                c(self.tokens, m.name, "cached").inc(m.cached_tokens)
            if m.cost_usd:
                c(self.cost, m.name, "true" if m.cloud else "false").inc(m.cost_usd)

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
