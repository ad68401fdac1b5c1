"""`single`: one member, then its fallbacks in order while nothing has reached the client.

Also serves pass-through (a backend's name or model id), with label `passthrough`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from routing.config import Config
from routing.core import CouncilReport, Event, Report, Result, UsageEvent
from routing.errors import AllMembersFailed, MemberFailure, UpstreamStatus
from routing.member import Members
from routing.models import SingleModel
from routing.report import Timer
from routing.strategies.base import Backends, Call
from routing.tokens import ZERO


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

    def _report(self, winner: str | None, members: Members, timer: Timer) -> CouncilReport:
        degraded = any(m.status != "ok" for m in members.reports)
        return CouncilReport(virtual_model=self.name, strategy=self.label, winner=winner, members=members.reports,
                             degraded=degraded, latency_ms=timer.ms()).totalled()

    def _give_up(self, failures: list[MemberFailure]) -> MemberFailure | AllMembersFailed:
        if len(failures) == 1:
            return failures[0]
        return AllMembersFailed(f"every member of {self.name!r} failed", failures)

    def _failed(self, e: MemberFailure, failures: list[MemberFailure]) -> None:
        """Keep a member's failure, unless the request itself is at fault: then no fallback would help."""
        if isinstance(e, UpstreamStatus) and e.is_client_error:
            raise e
        failures.append(e)

    async def complete(self, call: Call) -> Result:
        timer = Timer()
        members = Members(self.backends, call.budget)
        failures: list[MemberFailure] = []
        lone = len(self.order) == 1
        for name in self.order:
            try:
                reply = await members.ask(name, call.request, model=self.model, lone=lone)
            except MemberFailure as e:
                self._failed(e, failures)
                continue
            return Result(reply, self._report(name, members, timer))
        raise self._give_up(failures)

    async def stream(self, call: Call) -> AsyncIterator[Event]:
        timer = Timer()
        members = Members(self.backends, call.budget)
        failures: list[MemberFailure] = []
        lone = len(self.order) == 1
        for name in self.order:
            async with aclosing(members.stream(name, call.request, model=self.model, lone=lone,
                                              raw=call.relay)) as events:
                try:
                    first = await anext(events)
                except MemberFailure as e:
                    self._failed(e, failures)
                    continue
                yield first
                async for ev in events:
                    yield ev
            yield UsageEvent(members.usage_of(name) or ZERO)
            yield Report(self._report(name, members, timer))
            return
        raise self._give_up(failures)
