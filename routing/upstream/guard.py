"""One backend's admission and health as every request meets it: its GPU pool's slots, its circuit breaker,
and what it noticed about each call.

Every backend (and every endpoint of a pool) has a `Guard`. Each real request passes through it: it waits
for a slot in the backend's GPU pool (the wait is noted), and its outcome feeds the breaker. The health
loop (routing/upstream/health.py) feeds the breaker too. Strategies ask `usable()` before asking a member.
The transitions themselves are `routing.decide.rules`. Nothing here knows the backend kinds: they are
built with their guard (routing/upstream/kinds.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from routing.config import BackendConfig
from routing.decide import rules
from routing.errors import MemberFailure, UpstreamStatus
from routing.request import Json
from routing.upstream.fleet import SharedPool
from routing.upstream.waiters import wake_first

log = logging.getLogger("shenron")


def unusable(backend: Any) -> str | None:
    """Why a member should not be asked now (open breaker, loading), or None."""
    guard = getattr(backend, "guard", None)
    return guard.usable() if guard is not None else None


class Pool:
    """One GPU's concurrency limit: requests beyond `max_concurrent` wait, first come first served."""

    def __init__(self, name: str, max_concurrent: int | None) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.inflight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold a slot; yields the milliseconds spent waiting for it."""
        start = time.perf_counter()
        if self.waiters or not rules.may_start(self.inflight, self.max_concurrent):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                await fut  # woken holding the slot its holder handed over
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release()
                elif fut in self.waiters:
                    self.waiters.remove(fut)
                raise
        else:
            self.inflight += 1
        try:
            yield int((time.perf_counter() - start) * 1000)
        finally:
            self._release()

    @property
    def queued(self) -> int:
        return sum(1 for w in self.waiters if not w.done())

    def _release(self) -> None:
        """Hand the slot straight to the next waiter (no overtaking), or free it."""
        if not wake_first(self.waiters):
            self.inflight -= 1


class Guard:
    """One backend's health and admission, shared by every request."""

    def __init__(self, name: str, cfg: BackendConfig, pool: Pool | SharedPool | None = None, threshold: int = 3,
                 open_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.cfg = cfg
        self.pool = pool
        self.threshold = threshold
        self.open_s = open_s
        self.clock = clock
        self.breaker = rules.Breaker()
        self.loading = False
        self.loaded: bool | None = None
        """Whether the model is in memory (Ollama /api/ps, LM Studio); None: the server does not say."""
        self.probed_at: float | None = None
        self.warmed_at: float | None = None
        self.last_error: str | None = None
        self.on_open: Callable[[Guard], None] | None = None
        """Told when this replica opens the breaker, so the others can hear of it."""

    @property
    def state(self) -> rules.State:
        self.breaker = rules.breaker_at(self.breaker, self.clock(), self.open_s)
        return self.breaker.state

    def usable(self) -> str | None:
        """None when the member may be asked; else why it is skipped."""
        if self.state == "open":
            return f"skipped: circuit open ({self.breaker.reason or 'repeated failures'})"
        if self.loading:
            return "skipped: the server is loading the model"
        return None

    def record(self, ok: bool, reason: str = "") -> None:
        if ok and self.breaker.state == "closed" and not self.breaker.failures:
            self.last_error = None  # the usual success: nothing to change, so no new breaker per call
            return
        before = self.state
        self.breaker = rules.breaker_after(self.breaker, ok, self.clock(), self.threshold, reason)
        self.last_error = None if ok else reason
        if before != self.breaker.state:
            log.warning("backend %s: circuit %s -> %s%s", self.name, before, self.breaker.state,
                        f" ({reason})" if reason else "")
            if self.breaker.state == "open" and self.on_open is not None:
                self.on_open(self)

    def opened_elsewhere(self, reason: str) -> None:
        """Another replica found it failing: skip it here too until the breaker's next trial."""
        if self.state == "closed":
            self.breaker = rules.Breaker("open", self.threshold, self.clock(), f"{reason} (seen by another replica)")
            log.warning("backend %s: circuit closed -> open (another replica: %s)", self.name, reason)

    def _outcome(self, e: MemberFailure) -> None:
        if isinstance(e, UpstreamStatus):
            if e.upstream_status == 503 and "loading" in e.upstream_message.lower():
                self.loading = True
                return
            if e.is_client_error:  # the request's fault, not the backend's
                return
            if e.about_operator:  # the operator's account: say what the upstream said, here only
                log.warning("backend %s: %s", self.name, e.operator_detail)
                self.record(False, e.operator_detail)
                return
        self.record(False, e.reason)

    def call(self) -> contextlib.AbstractAsyncContextManager[Json]:
        """Around one real request: the GPU slot and the outcome for the breaker. Gives what it noticed
        about this one call (`queue_ms` waiting for the slot, `cold_start`), for the call's own record."""
        return _GuardedCall(self)


class _GuardedCall(contextlib.AbstractAsyncContextManager[Json]):
    """`Guard.call`: a class, not a generator, since it is entered once per member call."""

    __slots__ = ("guard", "slot")

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.slot: contextlib.AbstractAsyncContextManager[int] | None = None

    async def __aenter__(self) -> Json:
        g = self.guard
        self.slot = g.pool.slot() if g.pool else None
        queued = await self.slot.__aenter__() if self.slot else 0
        notes: Json = {}
        if g.pool is not None:
            notes["queue_ms"] = queued
        if g.loaded is False or g.loading:
            notes["cold_start"] = True
        return notes

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        g = self.guard
        try:
            if isinstance(exc, MemberFailure):
                g._outcome(exc)
            elif exc is None:
                g.record(True)
                g.loaded = True if g.loaded is not None else None
                g.loading = False
        finally:
            if self.slot:
                await self.slot.__aexit__(None, None, None)
