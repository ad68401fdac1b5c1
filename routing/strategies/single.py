"""`single`: one member, then its fallbacks in order while nothing has reached the client.

Also serves pass-through (a backend's name or model id), with label `passthrough`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from routing import wire
from routing.budget import EXHAUSTED, Skipped
from routing.config import Config, SingleModel
from routing.errors import AllMembersFailed, MemberFailure, UpstreamStatus
from routing.health import unusable
from routing.report import CouncilReport, MemberReport, Timer, failed, priced
from routing.strategies.base import Backends, Call, Json, relay


class Single:
    def __init__(self, name: str, order: list[str], backends: Backends, *, label: str = "single",
                 model: str | None = None) -> None:
        self.name = name
        self.label = label
        self.order = order
        self.backends = backends
        self.model = model
        """Upstream model id to ask for instead of the backend's configured one (pass-through)."""

    @classmethod
    def from_config(cls, name: str, vm: SingleModel, backends: Backends, cfg: Config | None = None) -> Single:
        return cls(name, [*vm.members, *vm.fallbacks], backends)

    def _report(self, winner: str | None, members: list[MemberReport], timer: Timer) -> Json:
        degraded = any(m.status != "ok" for m in members)
        return CouncilReport(virtual_model=self.name, strategy=self.label, winner=winner,
                             members=priced(members, self.backends),
                             degraded=degraded, latency_ms=timer.ms()).as_json()

    def _give_up(self, failures: list[MemberFailure]) -> MemberFailure | AllMembersFailed:
        if len(failures) == 1:
            return failures[0]
        return AllMembersFailed(f"every member of {self.name!r} failed", failures)

    def _model_of(self, name: str) -> str:
        return self.model or self.backends[name].model

    def _skip(self, call: Call, name: str, reports: list[MemberReport], failures: list[MemberFailure]) -> bool:
        """Not asked: a cloud member once the budget is spent, or a member whose breaker is open or which
        is loading while a fallback remains; reported, not hidden."""
        why = EXHAUSTED if not call.budget.allows(self.backends[name].cfg) else unusable(self.backends[name])
        if why is None or (why != EXHAUSTED and len(self.order) == 1):
            return False  # a lone member is still tried: a 502 from it says more than "skipped"
        reports.append(MemberReport(name=name, model=self._model_of(name), status="skipped", latency_ms=0, error=why))
        failures.append(Skipped(name, why))
        return True

    def _ok(self, call: Call, name: str, t: Timer, usage: Json | None, estimated: bool = False) -> MemberReport:
        cfg = self.backends[name].cfg
        call.budget.charge(cfg, usage)
        return MemberReport(name=name, model=self._model_of(name), status="ok", latency_ms=t.ms(), usage=usage,
                            usage_estimated=estimated)

    def _failed(self, name: str, e: MemberFailure, t: Timer, reports: list[MemberReport],
                failures: list[MemberFailure]) -> None:
        """Record a member's failure, unless the request itself is at fault: then no fallback would help."""
        if isinstance(e, UpstreamStatus) and e.is_client_error:
            raise e
        reports.append(failed(name, self._model_of(name), e, t))
        failures.append(e)

    async def complete(self, call: Call) -> Json:
        timer = Timer()
        reports: list[MemberReport] = []
        failures: list[MemberFailure] = []
        for name in self.order:
            if self._skip(call, name, reports, failures):
                continue
            t = Timer()
            try:
                resp = await self.backends[name].complete(call.body, self.model)
            except MemberFailure as e:
                self._failed(name, e, t, reports, failures)
                continue
            out = wire.completion(resp, id=call.id, created=call.created, model=call.model)
            reports.append(self._ok(call, name, t, out.get("usage")))
            out["council"] = self._report(name, reports, timer)
            return out
        raise self._give_up(failures)

    async def stream(self, call: Call) -> AsyncIterator[Json]:
        timer = Timer()
        reports: list[MemberReport] = []
        failures: list[MemberFailure] = []
        for name in self.order:
            if self._skip(call, name, reports, failures):
                continue
            t = Timer()
            upstream = self.backends[name].stream(call.body, self.model)
            try:
                first = await anext(upstream)
            except StopAsyncIteration:
                first = None
            except MemberFailure as e:
                self._failed(name, e, t, reports, failures)
                continue
            shaper = wire.ChunkShaper(id=call.id, created=call.created, model=call.model)
            async with aclosing(relay(first, upstream, shaper)) as chunks:
                async for chunk in chunks:
                    yield chunk
            usage, estimated = shaper.measured_usage(call.body)
            if call.include_usage:
                yield shaper.usage_chunk(usage)
            reports.append(self._ok(call, name, t, usage, estimated))
            yield shaper.extension_chunk("council", self._report(name, reports, timer))
            return
        raise self._give_up(failures)
