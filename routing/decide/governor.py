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
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from routing.core import CouncilReport, Event, Report, Result
from routing.decide import rules
from routing.models import VirtualModel
from routing.request import Json
from routing.strategies.base import NESTED, Call, Strategy

SAMPLES = 100


@dataclass(frozen=True, slots=True)
class Decision:
    """Which strategy serves one request, and why: `degraded` when it runs `degrade-to`; `skipped` when
    the load said degrade but `degrade-to` is outside the caller's tier."""

    strategy: Strategy
    load: rules.Load | None
    """None where nothing reads it: no `degrade-to` and no decision log."""
    degraded: str | None = None
    skipped: str | None = None


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
                 healthy: Callable[[], int], memory: Callable[[], float | None], log: DecisionLog,
                 elsewhere: Callable[[str], tuple[int, list[float]]] | None = None) -> None:
        """`elsewhere`: this model's requests in flight and recent latencies on the other replicas (as they
        last said, through Redis), counted with this replica's own."""
        self.name = name
        self.vm = vm
        self.inner = inner
        self.label = inner.label
        self.models = models
        self.healthy = healthy
        self.memory = memory
        self.log = log
        self.elsewhere = elsewhere
        self.inflight = 0
        self.latencies: deque[float] = deque(maxlen=SAMPLES)
        self.limits = {k: getattr(vm, k) for k in ("max_inflight", "max_p95_ms", "min_healthy_members",
                                                   "min_mem_available_pct")}
        self.reads_load = vm.degrade_to is not None or log.dest != "off"
        """The load (a sort of the latency window, the members' health) is read for a decision or a record,
        or not at all: most models have neither, and it was a tenth of an `ultra-instinct` request's work."""

    def load(self) -> rules.Load:
        inflight, latencies = self.inflight, self.latencies
        if self.elsewhere is not None:
            more, theirs = self.elsewhere(self.name)
            if more or theirs:
                inflight, latencies = inflight + more, deque([*latencies, *theirs])
        return rules.Load(inflight=inflight, p95_ms=rules.p95(latencies), healthy_members=self.healthy(),
                          mem_available_pct=self.memory())

    def decide(self, call: Call) -> Decision:
        if not self.reads_load:
            return Decision(self.inner, None)
        load = self.load()
        if self.vm.degrade_to is None:
            return Decision(self.inner, load)
        why = rules.degrade(load, self.limits)
        target = self.models.get(self.vm.degrade_to) if why else None
        if target is None or why is None:
            return Decision(self.inner, load)
        if not call.may(self.vm.degrade_to):
            return Decision(self.inner, load, skipped=f"{why}, but `{self.vm.degrade_to}` is outside the key's tier")
        return Decision(getattr(target, "inner", target), load, degraded=why)

    def _annotate(self, report: CouncilReport, d: Decision) -> CouncilReport:
        if d.skipped:
            report.degrade_skipped = d.skipped
        if d.degraded:
            report.degraded, report.degraded_from, report.degraded_because = True, self.name, d.degraded
        return report

    def _record(self, call: Call, d: Decision, council: CouncilReport | None, status: str, start: float) -> None:
        ms = (time.perf_counter() - start) * 1000
        self.latencies.append(ms)
        if d.load is None or self.log.dest == "off" or call.extras.get(NESTED):
            return
        record: Json = {
            "ts": round(time.time(), 3), "id": call.id, "model": self.name, "strategy": self.label,
            "stream": call.stream, "status": status, "latency_ms": int(ms),
            "load": {"inflight": d.load.inflight, "p95_ms": d.load.p95_ms,
                     "healthy_members": d.load.healthy_members, "mem_available_pct": d.load.mem_available_pct},
            "degraded_to": self.vm.degrade_to if d.degraded else None, "degrade_reason": d.degraded or d.skipped,
            "skipped": {m.name: m.error for m in (council.members if council else ()) if m.status == "skipped"},
        }
        if council is not None and council.sampling_waves and not d.degraded:
            vm = self.vm
            record["sampling"] = {  # what rules.sample_more saw after each wave, for `shenron replay`
                "weights": getattr(self.inner, "sample_weights", []),
                "waves": [msgspec.to_builtins(w) for w in council.sampling_waves],
                "confidence": getattr(vm, "adaptive_confidence", None),
                "confident_first": getattr(vm, "confident_first", None), "stopped": council.sampling_stopped}
        inputs = getattr(self.inner, "inputs", None)
        if inputs is not None and not d.degraded:
            record["cascade"] = {**inputs(call), "confidence": council.confidence if council else None,
                                 "escalated_because": council.escalated_because if council else None}
        self.log.write(record)

    async def complete(self, call: Call) -> Result:
        d = self.decide(call)
        start = time.perf_counter()
        self.inflight += 1
        out: Result | None = None
        try:
            out = await d.strategy.complete(call)
            self._annotate(out.report, d)
            return out
        finally:
            self.inflight -= 1
            self._record(call, d, out.report if out else None, "ok" if out is not None else "error", start)

    async def stream(self, call: Call) -> AsyncIterator[Event]:
        d = self.decide(call)
        start = time.perf_counter()
        self.inflight += 1
        report: CouncilReport | None = None
        status = "error"
        try:
            async with aclosing(d.strategy.stream(call)) as events:  # type: ignore[type-var]
                async for e in events:
                    if isinstance(e, Report):
                        report = self._annotate(e.report, d)
                    yield e
            status = "ok"
        finally:
            self.inflight -= 1
            self._record(call, d, report, status, start)
