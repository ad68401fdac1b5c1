"""A backend served by several servers of one model: `urls = [...]`, or a host name with several addresses.

Each endpoint is a backend of its own kind with its own guard (health, breaker, GPU slot, warm-up,
cold start); the pool is up while any of them is. A request goes to one endpoint, chosen by:
- affinity (`session`, `prefix`): rendezvous hashing of the session key or the prompt prefix, so an
  agent's turns and a council's samples land where their prefix is already in KV cache, passed over
  while that endpoint holds more than `affinity-bound` times the pool's mean load (bounded load);
- otherwise the less loaded of two endpoints drawn at random (power of two choices), by requests
  outstanding per unit of `capacity`.
A failure before anything reached the client (connection refused or reset, a 5xx, a 429, a connect
timeout) is tried on the next endpoint before the backend counts as failed. The report and the ledger
name the endpoint that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import math
import random
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from routing.config import BackendConfig, EndpointConfig, endpoint_urls
from routing.core import Event, Reply
from routing.decide import rules
from routing.errors import MemberFailure, MemberTimeout, UpstreamStatus
from routing.request import Json, Request
from routing.session import prefix_of
from routing.upstream.backends import OpenAIBackend
from routing.upstream.guard import Guard

log = logging.getLogger("shenron")
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_TRIES = 3
"""Endpoints one request may try before the backend fails (the first and two more)."""


async def addresses(host: str, port: int) -> list[str]:
    """The distinct addresses a name resolves to, IPv4 first (as a headless Service or Consul lists them)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({str(i[4][0]) for i in infos if i[0] == socket.AF_INET})
    return v4 or sorted({str(i[4][0]) for i in infos if i[0] == socket.AF_INET6})


def _expandable(url: str) -> tuple[str, int] | None:
    """A plain-HTTP URL whose host is a name other than localhost: (host, port); else None. HTTPS names stay
    one endpoint (an address in place of the name would fail the certificate check)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host or host == "localhost":
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host, parts.port or 80


def _with_host(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def label_of(url: str) -> str:
    """host:port, never the URL's credentials or query."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _hrw(key: str, label: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\0{label}".encode(), digest_size=8).digest(), "big")


def retryable(e: MemberFailure) -> bool:
    """Whether another endpoint may answer what this one failed: not the request's own fault, not a
    read timeout (a second wait as long would double the client's)."""
    if isinstance(e, UpstreamStatus):
        return e.upstream_status >= 500 or e.upstream_status == 429
    if isinstance(e, MemberTimeout):
        return isinstance(e.__cause__, httpx.ConnectTimeout)
    return True


class Endpoint:
    __slots__ = ("backend", "capacity", "label", "outstanding", "url")

    def __init__(self, label: str, url: str, capacity: float, backend: OpenAIBackend) -> None:
        self.label = label
        self.url = url
        self.capacity = capacity
        self.backend = backend
        self.outstanding = 0
        """Requests this replica has on it now."""

    def load(self) -> float:
        return self.outstanding / self.capacity


class PoolGuard(Guard):
    """The pool's health as strategies read it: usable while any endpoint is. Outcomes are recorded by
    each endpoint's own guard, around each endpoint call."""

    def __init__(self, pool: PooledBackend) -> None:
        super().__init__(pool.name, pool.cfg)
        self.pool_of = pool

    def _guards(self) -> list[Guard]:
        return [e.backend.guard for e in self.pool_of.endpoints]

    @property
    def state(self) -> rules.State:
        states = {g.state for g in self._guards()}
        return "closed" if "closed" in states else "half-open" if "half-open" in states else "open"

    @property
    def breaker(self) -> rules.Breaker:
        guards = self._guards()
        worst = [g.breaker for g in guards if g.state == "open"]
        return worst[0] if worst and len(worst) == len(guards) else rules.Breaker()

    @breaker.setter
    def breaker(self, value: rules.Breaker) -> None:
        pass  # each endpoint keeps its own

    def usable(self) -> str | None:
        reasons = []
        for e in self.pool_of.endpoints:
            why = e.backend.guard.usable()
            if why is None:
                return None
            reasons.append(f"{e.label}: {why.removeprefix('skipped: ')}")
        return "skipped: no endpoint of the pool can be asked (" + "; ".join(reasons) + ")"

    def record(self, ok: bool, reason: str = "") -> None:
        pass

    @property
    def loading(self) -> bool:
        guards = self._guards()
        return bool(guards) and all(g.loading for g in guards)

    @loading.setter
    def loading(self, value: bool) -> None:
        pass

    @property
    def probed_at(self) -> float | None:
        seen = [g.probed_at for g in self._guards() if g.probed_at is not None]
        return max(seen) if seen else None

    @probed_at.setter
    def probed_at(self, value: float | None) -> None:
        pass

    @contextlib.asynccontextmanager
    async def call(self) -> AsyncIterator[Json]:
        yield {}  # the endpoint's guard does the work, once the endpoint is chosen


class PooledBackend(OpenAIBackend):
    """One backend over several servers; strategies see one member."""

    def __init__(self, name: str, cfg: BackendConfig, client: httpx.AsyncClient,
                 build_one: Callable[[str, BackendConfig, httpx.AsyncClient], OpenAIBackend],
                 resolver: Resolver = addresses) -> None:
        super().__init__(name, cfg, client)
        self._build_one = build_one
        self._resolver = resolver
        self.specs: list[EndpointConfig] = endpoint_urls(cfg)
        self.make_guard: Callable[[str, BackendConfig], Guard] = lambda n, c: Guard(n, c)
        """How an endpoint gets its guard; the health loop replaces it with one that knows the GPU pools."""
        self.endpoints: list[Endpoint] = [self._endpoint(label_of(s.url) if s.label is None else s.label, s.url,
                                                         s.capacity) for s in self.specs]
        self.guard = PoolGuard(self)
        self.forwards = self.endpoints[0].backend.forwards
        self._rng = random.Random()

    def _endpoint(self, label: str, url: str, capacity: float) -> Endpoint:
        cfg = msgspec.structs.replace(self.cfg, url=url, urls=[])
        backend = self._build_one(self.name, cfg, self._client)
        backend.guard = self.make_guard(f"{self.name}@{label}", cfg)
        return Endpoint(label, url, capacity, backend)

    def adopt(self, make_guard: Callable[[str, BackendConfig], Guard]) -> None:
        """Give every endpoint, now and later, a guard made by `make_guard`."""
        self.make_guard = make_guard
        for e in self.endpoints:
            e.backend.guard = make_guard(f"{self.name}@{e.label}", e.backend.cfg)

    async def resolve(self) -> None:
        """Look the pool's host names up again: a name with several addresses is an endpoint per address.
        Endpoints that stay keep their health, breaker and load; a name that does not resolve keeps what it
        had."""
        current = {e.label: e for e in self.endpoints}
        found: list[Endpoint] = []
        for spec in self.specs:
            base = spec.label or label_of(spec.url)
            where = _expandable(spec.url)
            addrs: list[str] = []
            if where is not None:
                try:
                    addrs = await self._resolver(*where)
                except OSError as e:
                    log.warning("backend %s: cannot resolve %s (%s); keeping its endpoints", self.name, where[0], e)
                    found += [e for label, e in current.items() if label == base or label.startswith(base + "/")]
                    continue
            if len(addrs) <= 1:
                found.append(current.get(base) or self._endpoint(base, spec.url, spec.capacity))
                continue
            for a in addrs:
                label = f"{base}/{a}"
                found.append(current.get(label) or self._endpoint(label, _with_host(spec.url, a), spec.capacity))
        if [e.label for e in found] != [e.label for e in self.endpoints]:
            log.info("backend %s: endpoints %s", self.name, ", ".join(e.label for e in found) or "none")
            self.endpoints = found or self.endpoints

    def order(self, req: Request | None) -> list[Endpoint]:
        """The endpoints to try for `req`, best first."""
        eps = self.endpoints
        if len(eps) == 1:
            return list(eps)
        up = [e for e in eps if e.backend.guard.usable() is None] or list(eps)
        first = self._pick(up, req)
        rest = sorted((e for e in up if e is not first), key=Endpoint.load)
        return [first, *rest, *(e for e in eps if e not in up)]

    def _pick(self, up: list[Endpoint], req: Request | None) -> Endpoint:
        key = None
        if req is not None and self.cfg.affinity != "none":
            key = req.session if self.cfg.affinity == "session" and req.session else \
                prefix_of(req.tools, req.messages)
        if key is None or len(up) == 1:
            if len(up) == 1:
                return up[0]
            a, b = self._rng.sample(up, 2)
            return a if a.load() <= b.load() else b
        total = sum(e.outstanding for e in up) + 1
        capacity = sum(e.capacity for e in up)
        for e in sorted(up, key=lambda e: _hrw(key, e.label), reverse=True):
            if e.outstanding + 1 <= math.ceil(self.cfg.affinity_bound * total * e.capacity / capacity):
                return e
        return min(up, key=Endpoint.load)

    @contextlib.asynccontextmanager
    async def _on(self, e: Endpoint, notes: Json | None) -> AsyncIterator[None]:
        e.outstanding += 1
        try:
            async with e.backend.guard.call() as seen:
                if notes is not None:
                    notes.update(seen)
                    notes["endpoint"] = e.label
                yield
        finally:
            e.outstanding -= 1

    def _failed(self, tried: list[str], e: MemberFailure) -> MemberFailure:
        if not tried:
            return e
        return MemberFailure(self.name, "every endpoint tried failed: " + "; ".join([*tried, e.reason]))

    def _pass_over(self, e: Endpoint, failure: MemberFailure, tried: list[str], last: bool) -> None:
        """After endpoint `e` failed: raise when no other endpoint may answer instead (the request's fault, a
        read timeout, none left), else note the failure and let the caller try the next."""
        if last or not retryable(failure):
            raise self._failed(tried, failure) from failure
        tried.append(f"{e.label}: {failure.reason}")
        log.info("backend %s: endpoint %s failed (%s); trying the next", self.name, e.label, failure.reason)

    async def complete(self, req: Request, model: str | None = None, notes: Json | None = None) -> Reply:
        tried: list[str] = []
        candidates = self.order(req)[:MAX_TRIES]
        for i, e in enumerate(candidates):
            try:
                async with self._on(e, notes):
                    return await e.backend.complete(req, model)
            except MemberFailure as failure:
                self._pass_over(e, failure, tried, i == len(candidates) - 1)
        raise AssertionError("unreachable: a pool has at least one endpoint")

    async def stream(self, req: Request, model: str | None = None, notes: Json | None = None,
                     raw: bool = False) -> AsyncGenerator[Event, None]:
        tried: list[str] = []
        candidates = self.order(req)[:MAX_TRIES]
        for i, e in enumerate(candidates):
            said = False
            try:
                async with self._on(e, notes):
                    async with contextlib.aclosing(e.backend.stream(req, model, raw=raw)) as events:
                        async for event in events:
                            said = True
                            yield event
                return
            except MemberFailure as failure:
                self._pass_over(e, failure, tried, said or i == len(candidates) - 1)  # said: the client has it

    async def forward(self, path: str, body: Json, model: str | None = None,
                      betas: tuple[str, ...] = ()) -> httpx.Response:
        tried: list[str] = []
        candidates = self.order(None)[:MAX_TRIES]
        for i, e in enumerate(candidates):
            e.outstanding += 1
            try:
                return await e.backend.forward(path, body, model, betas)
            except MemberFailure as failure:
                self._pass_over(e, failure, tried, i == len(candidates) - 1)
            finally:
                e.outstanding -= 1
        raise AssertionError("unreachable: a pool has at least one endpoint")

    async def list_models(self) -> list[str]:
        """What any endpoint serves; fails only when none answers."""
        results = await asyncio.gather(*(e.backend.list_models() for e in self.endpoints), return_exceptions=True)
        ids = [i for r in results if isinstance(r, list) for i in r]
        windows = [e.backend.window for e in self.endpoints if e.backend.window is not None]
        self.window = min(windows) if windows else self.cfg.context_tokens
        if not any(isinstance(r, list) for r in results):
            failures = [r for r in results if isinstance(r, BaseException)]
            raise MemberFailure(self.name, "no endpoint answered: " + "; ".join(str(f) for f in failures[:3]))
        return list(dict.fromkeys(ids))
