"""Load-aware degradation and decision records, around every virtual model.

`Governed` wraps a virtual model's strategy: it keeps cheap in-process counters (requests in
flight, the last 100 latencies), reads the members' breakers and the host's available memory
(refreshed by the health loop, never probed per request), and asks the pure `rules.degrade`
whether this request should run `degrade-to` instead. Each request then leaves one decision
record: its inputs and what was decided, for `shenron replay`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import IO

from routing import rules
from routing.config import VirtualModel
from routing.strategies.base import NESTED, Call, Json, Strategy

SAMPLES = 100
NOT_DEGRADED = "not degraded: "
"""Marks a degrade reason that could not be acted on (the target is outside the caller's tier)."""


def meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """The host's memory figures in kB (MemTotal, MemAvailable...); empty where the file does not exist."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if value.split() and value.split()[0].isdigit():
            out[key] = int(value.split()[0])
    return out


def mem_available_pct(path: str = "/proc/meminfo") -> float | None:
    """MemAvailable over MemTotal, in percent; None where /proc/meminfo does not say."""
    info = meminfo(path)
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    return round(100.0 * available / total, 1) if total and available is not None else None


class DecisionLog:
    """One JSON line per request; `off` writes nothing, `-` writes to stderr."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self._file: IO[str] | None = None
        if dest == "-":
            self._file = sys.stderr
        elif dest != "off":
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(dest, "a", encoding="utf-8", buffering=1)

    def write(self, record: Json) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")

    def close(self) -> None:
        if self._file is not None and self._file is not sys.stderr:
            self._file.close()


class Governed:
    def __init__(self, name: str, vm: VirtualModel, inner: Strategy, models: Mapping[str, Strategy],
                 healthy: Callable[[], int], memory: Callable[[], float | None], log: DecisionLog) -> None:
        self.name = name
        self.vm = vm
        self.inner = inner
        self.label = inner.label
        self.models = models
        self.healthy = healthy
        self.memory = memory
        self.log = log
        self.inflight = 0
        self.latencies: deque[float] = deque(maxlen=SAMPLES)
        self.limits = {k: getattr(vm, k) for k in ("max_inflight", "max_p95_ms", "min_healthy_members",
                                                   "min_mem_available_pct")}

    def load(self) -> rules.Load:
        return rules.Load(inflight=self.inflight, p95_ms=rules.p95(self.latencies), healthy_members=self.healthy(),
                          mem_available_pct=self.memory())

    def decide(self, call: Call) -> tuple[Strategy, str | None, rules.Load]:
        load = self.load()
        if self.vm.degrade_to is None:
            return self.inner, None, load
        why = rules.degrade(load, self.limits)
        target = self.models.get(self.vm.degrade_to) if why else None
        if target is None:
            return self.inner, None, load
        if not call.may(self.vm.degrade_to):
            return self.inner, f"{NOT_DEGRADED}{why}, but `{self.vm.degrade_to}` is outside the key's tier", load
        return getattr(target, "inner", target), why, load

    def _annotate(self, council: Json | None, why: str | None) -> Json | None:
        if why is None or council is None:
            return council
        if why.startswith(NOT_DEGRADED):
            return {**council, "degrade_skipped": why.removeprefix(NOT_DEGRADED)}
        return {**council, "degraded": True, "degraded_from": self.name, "degraded_because": why}

    def _record(self, call: Call, load: rules.Load, why: str | None, council: Json | None, status: str,
                start: float) -> None:
        ms = (time.perf_counter() - start) * 1000
        self.latencies.append(ms)
        if self.log.dest == "off" or call.extras.get(NESTED):
            return
        c = council or {}
        record: Json = {
            "ts": round(time.time(), 3), "id": call.id, "model": self.name, "strategy": self.label,
            "stream": call.stream, "status": status, "latency_ms": int(ms),
            "load": {"inflight": load.inflight, "p95_ms": load.p95_ms, "healthy_members": load.healthy_members,
                     "mem_available_pct": load.mem_available_pct},
            "degraded_to": self.vm.degrade_to if why and not why.startswith(NOT_DEGRADED) else None,
            "degrade_reason": why,
            "skipped": {m["name"]: m.get("error") for m in c.get("members") or [] if m.get("status") == "skipped"},
        }
        inputs = getattr(self.inner, "inputs", None)
        if inputs is not None and not why:
            record["cascade"] = {**inputs(call), "confidence": c.get("confidence"),
                                 "escalated_because": c.get("escalated_because")}
        self.log.write(record)

    async def complete(self, call: Call) -> Json:
        strategy, why, load = self.decide(call)
        start = time.perf_counter()
        self.inflight += 1
        out: Json | None = None
        try:
            out = await strategy.complete(call)
            out["council"] = self._annotate(out.get("council"), why)
            return out
        finally:
            self.inflight -= 1
            self._record(call, load, why, (out or {}).get("council"), "ok" if out is not None else "error", start)

    async def stream(self, call: Call) -> AsyncIterator[Json]:
        strategy, why, load = self.decide(call)
        start = time.perf_counter()
        self.inflight += 1
        council: Json | None = None
        status = "error"
        try:
            async for chunk in strategy.stream(call):
                if "council" in chunk:
                    council = self._annotate(chunk["council"], why)
                    chunk = {**chunk, "council": council}
                yield chunk
            status = "ok"
        finally:
            self.inflight -= 1
            self._record(call, load, why, council, status, start)
