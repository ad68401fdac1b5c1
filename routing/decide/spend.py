"""What a request's member calls spent, kept as they happen, for when its answer never gets a report.

A client that leaves cancels the strategy before it can build its `council` report; the ledger
still gets a row for every call the request made: the calls that finished with their usage and
cost, the ones cut short as `cancelled`. Nothing is lost silently.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import msgspec

from routing.config import BackendConfig
from routing.errors import MemberFailure
from routing.report import cost
from routing.request import Json
from routing.tokens import Usage, usd


class Spend(msgspec.Struct):
    """One member call's record (a struct: made once per call, and msgspec makes it in C)."""

    name: str
    model: str
    cfg: BackendConfig
    status: str = "running"
    usage: Usage | None = None
    start: float = msgspec.field(default_factory=time.perf_counter)
    latency_ms: int = 0
    notes: Json = msgspec.field(default_factory=dict)
    """What the backend's guard noticed about this one call (`Guard.call` yields it): `queue_ms`, `cold_start`."""

    def end(self, status: str) -> None:
        if self.status == "running":
            self.status = status
            self.latency_ms = int((time.perf_counter() - self.start) * 1000)

    @property
    def cost_usd(self) -> float:
        return usd(cost(self.usage, self.cfg))


SPENT: ContextVar[list[Spend] | None] = ContextVar("shenron_spent", default=None)
def calls() -> list[Spend]:
    """The current request's calls so far (empty outside a request)."""
    return SPENT.get() or []


def begin() -> list[Spend]:
    """Start keeping the calls of the current request (tasks it starts share the list)."""
    calls: list[Spend] = []
    SPENT.set(calls)
    return calls


class tracked:  # lower case: used as the function it was, `with tracked(...) as spent`
    """Around one member call: kept in the request's list, ended `ok`, with the member's failure kind, or
    `cancelled` (cancelled, or a stream closed by a caller that stopped reading). A class, not a generator:
    it is entered once per member call."""

    __slots__ = ("entry",)

    def __init__(self, name: str, model: str, cfg: BackendConfig) -> None:
        self.entry = Spend(name, model, cfg)
        made = SPENT.get()
        if made is not None:
            made.append(self.entry)

    def __enter__(self) -> Spend:
        return self.entry

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.entry.end("ok" if exc is None else exc.kind if isinstance(exc, MemberFailure) else "cancelled")
