"""The `council` extension object: what the members did, as plain structs."""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from routing.errors import MemberFailure

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


class ClusterReport(msgspec.Struct, omit_defaults=True):
    id: int
    members: list[str]
    weight: float
    preview: str


class CouncilReport(msgspec.Struct, omit_defaults=True):
    virtual_model: str
    strategy: str
    winner: str | None = None
    members: list[MemberReport] = []
    degraded: bool = False
    decided_by: str | None = None
    agreement: float | None = None
    clusters: list[ClusterReport] | None = None
    latency_ms: int = 0
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.setdefault("degraded", self.degraded)
        return out


class Timer:
    """Milliseconds since construction, for latency_ms fields."""

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)


def failed(name: str, model: str, exc: MemberFailure, timer: Timer) -> MemberReport:
    return MemberReport(name=name, model=model, status=exc.kind, latency_ms=timer.ms(), error=exc.reason)  # type: ignore[arg-type]
