"""What happens when a chat request ends: its ledger row, metrics, the key's counters, the status page's log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from proxy import errors
from proxy.auth import ANONYMOUS, Gate, Principal
from proxy.metrics import Metrics
from proxy.store import LedgerRow, MemberUse, Store
from routing.core import CouncilReport
from routing.decide import spend
from routing.decide.spend import Spend
from routing.errors import AllMembersFailed, MemberFailure
from routing.request import Json
from routing.tokens import usd

RECENT = 25


@dataclass
class Ticket:
    """One chat request from arrival to its last byte."""

    start: float = field(default_factory=time.perf_counter)
    ts: float = field(default_factory=time.time)
    principal: Principal = ANONYMOUS
    model: str = "-"
    request_id: str = ""
    strategy: str = "-"
    stream: bool = False
    cached: bool = False
    session: str | None = None
    """Its conversation, hashed (routing/session.py `shown`)."""
    routed: bool = False
    """The model resolved; until then its name is the client's and stays out of metric labels."""
    done: bool = False
    log: Json = field(default_factory=dict)
    """Fields for the access log line."""


def members_of(council: CouncilReport | None, exc: BaseException | None, calls: list[Spend] | None = None
               ) -> list[MemberUse]:
    """Each member's use: from the `council` report when the request got one; otherwise from the calls
    it made as they happened (a client that left: finished ones with their cost, the rest cancelled)
    and the failures that never became a call (skipped members)."""
    if council is not None:
        return [MemberUse(name=m.name, model=m.model, status=m.status, latency_ms=m.latency_ms,
                          prompt_tokens=m.usage.prompt_tokens if m.usage else 0,
                          completion_tokens=m.usage.completion_tokens if m.usage else 0,
                          cost_usd=m.cost_usd or 0.0, cloud=m.cloud, endpoint=m.endpoint or "",
                          cached_tokens=m.usage.cached_tokens if m.usage else 0)
                for m in council.members]
    failures = exc.failures if isinstance(exc, AllMembersFailed) else [exc] if isinstance(exc, MemberFailure) else []
    used = [MemberUse(name=c.name, model=c.model, status="cancelled" if c.status == "running" else c.status,
                      latency_ms=c.latency_ms, prompt_tokens=c.usage.prompt_tokens if c.usage else 0,
                      completion_tokens=c.usage.completion_tokens if c.usage else 0, cost_usd=c.cost_usd,
                      cloud=c.cfg.is_cloud, endpoint=c.notes.get("endpoint") or "",
                      cached_tokens=c.usage.cached_tokens if c.usage else 0) for c in calls or ()]
    called = {c.name for c in calls or ()}
    return used + [MemberUse(name=f.member, status=f.kind) for f in failures if f.member not in called]


class Books:
    def __init__(self, store: Store, gate: Gate, metrics: Metrics) -> None:
        self.store = store
        self.gate = gate
        self.metrics = metrics
        self.inflight: dict[str, int] = {}
        self.recent: deque[Json] = deque(maxlen=RECENT)
        self._late: set[asyncio.Task[None]] = set()

    def started(self, t: Ticket) -> None:
        t.routed = True
        self.inflight[t.model] = self.inflight.get(t.model, 0) + 1
        self.metrics.started(t.model)

    def ticket(self, log: dict[str, Any]) -> _Ticketed:
        """One request's ticket and the list of the member calls it makes. A request that fails before its
        answer is settled gets its ledger row here, with the status its client sees."""
        return _Ticketed(self, Ticket(log=log))

    async def finish(self, t: Ticket, status: int, council: CouncilReport | None = None,
                     exc: BaseException | None = None, error: str | None = None,
                     calls: list[Spend] | None = None) -> None:
        """Account for a request once; the ledger row is committed before this returns."""
        row = self._settle(t, status, council, exc, error, calls)
        if row is not None:
            await self._book(t.principal, row)

    def finish_later(self, t: Ticket, status: int, council: CouncilReport | None = None, error: str | None = None,
                     calls: list[Spend] | None = None) -> None:
        """For a stream the client left: its task is being cancelled, so the row is written by another. The
        metrics and the access log's fields are settled now, before the request's task ends."""
        row = self._settle(t, status, council, None, error, calls)
        if row is None:
            return
        task = asyncio.get_running_loop().create_task(self._book(t.principal, row))
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _book(self, principal: Principal, row: LedgerRow) -> None:
        await self.gate.spent(principal, row.prompt_tokens + row.completion_tokens, row.cloud_cost_usd)
        await self.store.record(row)

    def _settle(self, t: Ticket, status: int, council: CouncilReport | None, exc: BaseException | None,
                error: str | None, calls: list[Spend] | None) -> LedgerRow | None:
        """Everything of `finish` that needs no waiting; the row to book, or None (done already, or a request
        no key made while keys are required)."""
        if t.done:
            return None
        t.done = True
        seconds = time.perf_counter() - t.start
        if t.routed:
            self.inflight[t.model] -= 1
            self.metrics.ended(t.model)
        members = [] if t.cached else members_of(council, exc, calls)
        self.metrics.finished(t.model if t.routed else "(unrouted)", status, seconds, council, members)
        prompt = completion = 0  # the members' sums in one pass, in their order (as `sum` adds them)
        spent = cloud = 0.0
        for m in members:
            prompt += m.prompt_tokens
            completion += m.completion_tokens
            spent += m.cost_usd
            if m.cloud:
                cloud += m.cost_usd
        row = LedgerRow(
            ts=t.ts, request_id=t.request_id, key_id=t.principal.key_id, model=t.model, strategy=t.strategy,
            status=status, latency_ms=int(seconds * 1000), prompt_tokens=prompt, completion_tokens=completion,
            cost_usd=usd(spent), cloud_cost_usd=usd(cloud),
            cached=t.cached, stream=t.stream, error=error, members=members, session=t.session,
            escalated=council.escalated if council is not None and council.answered_by is not None else None,
        )
        log = t.log  # the access log's line: what is not known is left out, not `null`
        log["outcome"], log["model"], log["strategy"] = status, t.model, t.strategy
        if t.principal.key_id is not None:
            log["key"] = t.principal.key_id
        log["request_id"], log["stream"], log["cached"] = t.request_id, t.stream, t.cached
        log["tokens"], log["cost_usd"] = row.prompt_tokens + row.completion_tokens, row.cost_usd
        if error is not None:
            log["error"] = error
        if t.principal.key_id is not None or not self.gate.enabled:
            self.recent.appendleft({"ts": t.ts, "model": t.model, "strategy": t.strategy, "status": status,
                                    "latency_ms": row.latency_ms, "cached": t.cached, "council": council,
                                    "members": members, "error": error})
            return row
        return None

    async def drain(self) -> None:
        if self._late:
            await asyncio.gather(*self._late, return_exceptions=True)


class _Ticketed(contextlib.AbstractAsyncContextManager[tuple[Ticket, list[Spend]]]):
    """`Books.ticket`: a class, not a generator, since every request enters one."""

    __slots__ = ("books", "calls", "t")

    def __init__(self, books: Books, t: Ticket) -> None:
        self.books, self.t = books, t
        self.calls: list[Spend] = []

    async def __aenter__(self) -> tuple[Ticket, list[Spend]]:
        self.calls = spend.begin()
        return self.t, self.calls

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, Exception):
            status, code = errors.classify(exc)
            await self.books.finish(self.t, status, exc=exc, error=code, calls=self.calls)
