"""The `council` extension object: what the members did, as plain structs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

import msgspec

from routing.config import BackendConfig
from routing.errors import MemberFailure
from routing.samples import backend_of

Status = Literal["ok", "error", "timeout", "cancelled", "skipped"]


class MemberReport(msgspec.Struct, omit_defaults=True):
    name: str
    model: str
    status: Status
    latency_ms: int
    error: str | None = None
    usage: dict[str, Any] | None = None
    usage_estimated: bool = False
    weight: float | None = None
    cluster: int | None = None
    role: str | None = None
    cost_usd: float | None = None
    cloud: bool = False
    queue_ms: int | None = None
    """Time waiting for a slot on its GPU (`[gpus.NAME] max-concurrent`)."""
    cold_start: bool = False
    """The model was not loaded when asked: its latency includes loading it."""


class ClusterReport(msgspec.Struct, omit_defaults=True):
    id: int
    members: list[str]
    weight: float
    preview: str


class IterationReport(msgspec.Struct, omit_defaults=True):
    """One attempt of the code ladder."""

    attempt: int
    rung: int
    coder: str
    thinking: str
    compiled: bool | None
    """None: no check exists for the language here (the validators still judged it)."""
    check_output: str
    scores: dict[str, float]
    score: float
    cost_usd: float
    latency_ms: int
    language: str | None = None
    issues: list[str] = []
    invalid: dict[str, str] = {}
    """Validators left out of the score, and why (nonsense, failure, skipped)."""
    note: str | None = None


class RungReport(msgspec.Struct, omit_defaults=True):
    rung: int
    coder: str
    thinking: str
    status: Literal["passed", "failed", "skipped", "not reached"]
    attempts: int = 0
    reason: str | None = None


class CouncilReport(msgspec.Struct, omit_defaults=True):
    virtual_model: str
    strategy: str
    winner: str | None = None
    members: list[MemberReport] = []
    degraded: bool = False
    decided_by: str | None = None
    agreement: float | None = None
    majority: bool | None = None
    """Whether the winning claim had more than half of the answering weight (a council's vote)."""
    clusters: list[ClusterReport] | None = None
    latency_ms: int = 0
    note: str | None = None
    cost_usd: float = 0.0
    cached: bool = False
    usage: dict[str, Any] | None = None
    """What every member call together spent (the response's own `usage` is the answer's)."""
    score: float | None = None
    pass_score: float | None = None
    iterations: list[IterationReport] | None = None
    rungs: list[RungReport] | None = None

    def as_json(self) -> dict[str, Any]:
        self.cost_usd = round(sum(m.cost_usd or 0.0 for m in self.members), 8)
        self.usage = total_usage(m.usage for m in self.members)
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.setdefault("degraded", self.degraded)
        out.setdefault("cost_usd", self.cost_usd)
        return out


def total_usage(usages: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Prompt, completion and total tokens summed over calls (None when none reported any)."""
    total: dict[str, Any] | None = None
    for u in usages:
        if u:
            total = total or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
            total["prompt_tokens"] += p
            total["completion_tokens"] += c
            total["total_tokens"] += int(u.get("total_tokens") or p + c)
    return total


class _HasConfig(Protocol):
    @property
    def cfg(self) -> BackendConfig: ...


def cost(usage: Mapping[str, Any] | None, cfg: BackendConfig) -> float:
    """USD for one call at the backend's per-million prices; no usage, no known cost."""
    if not usage:
        return 0.0
    tokens_in = usage.get("prompt_tokens") or 0
    tokens_out = usage.get("completion_tokens") or 0
    return (tokens_in * cfg.price_in + tokens_out * cfg.price_out) / 1_000_000


def priced(members: list[MemberReport], backends: Mapping[str, _HasConfig]) -> list[MemberReport]:
    """Fill each member's cost from its usage and its backend's prices, and what its guard noticed."""
    from routing.spend import calls

    made = calls()
    for m in members:
        # a report that was asked is matched to its member's first call not yet matched (a debate
        # asks one member several times, one after another): each report carries its own call's wait
        call = next((c for c in made if c.report is m), None)
        if call is None and m.status != "skipped":
            call = next((c for c in made if c.name == backend_of(m.name) and c.report is None), None)
            if call is not None:
                call.report = m
        noted = call.notes if call is not None else {}
        if "queue_ms" in noted and m.queue_ms is None:
            m.queue_ms = noted["queue_ms"]
        if noted.get("cold_start") and m.status == "ok":
            m.cold_start = True
        b = backends.get(m.name) or backends.get(backend_of(m.name))
        if b is None:
            continue
        m.cloud = b.cfg.is_cloud
        if m.usage is not None:
            m.cost_usd = round(cost(m.usage, b.cfg), 8)
    return members


class Timer:
    """Milliseconds since construction, for latency_ms fields."""

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)


def failed(name: str, model: str, exc: MemberFailure, timer: Timer) -> MemberReport:
    return MemberReport(name=name, model=model, status=exc.kind, latency_ms=timer.ms(), error=exc.reason)  # type: ignore[arg-type]
