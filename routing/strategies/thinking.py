"""A thinking strategy (`solo`, `duo-debate`, `trio-consensus`, `debate`, `vote`) as a virtual model.

`members[0]` leads; the others are its partners. Every call appears in `council.members` with
its role. Streamed, each step shows as a `reasoning_content` line while the members think;
the answer itself follows as content when they are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from routing.config import Config
from routing.core import Answer, CouncilReport, Event, Reply, Report, Result, UsageEvent, replay
from routing.models import ThinkingModel
from routing.report import Timer
from routing.strategies.base import Backends, Call, narrate
from routing.thinking import THINKERS, Asker, Options, Thought
from routing.tokens import ZERO, Usage


def usage_of(asker: Asker, member: str | None = None) -> Usage | None:
    """The usage of the call whose answer the client gets: the last that succeeded (of `member`, if named).
    What every call spent is the report's `usage`."""
    for r in reversed(asker.reports):
        if r.status == "ok" and r.usage and (member is None or r.name == member):
            return r.usage
    return None


class ThinkingStrategy:
    def __init__(self, name: str, vm: ThinkingModel, backends: Backends) -> None:
        self.name = name
        self.vm = vm
        self.label = vm.thinking
        self.backends = backends
        self.think = THINKERS[vm.thinking]
        self.opts = Options(rounds=vm.rounds, similarity=vm.similarity,
                            weights={m: vm.weights.get(m, backends[m].cfg.weight) for m in vm.members})

    @classmethod
    def from_config(cls, name: str, vm: ThinkingModel, backends: Backends, cfg: Config | None = None
                    ) -> ThinkingStrategy:
        return cls(name, vm, backends)

    async def _run(self, call: Call, asker: Asker) -> Thought:
        messages = call.request.messages
        return await self.think(asker, messages, self.vm.members[0], self.vm.members[1:], self.opts)

    def _report(self, asker: Asker, thought: Thought, timer: Timer) -> CouncilReport:
        members = asker.reports
        return CouncilReport(
            virtual_model=self.name, strategy=self.label, winner=thought.by, members=members,
            degraded=any(m.status in ("error", "timeout", "skipped") for m in members),
            decided_by=thought.decided_by, agreement=thought.agreement, latency_ms=timer.ms(), note=thought.note,
        ).totalled()

    async def complete(self, call: Call) -> Result:
        timer = Timer()
        asker = Asker.for_request(self.backends, call.budget, call.request)
        thought = await self._run(call, asker)
        return Result(Reply([Answer(text=thought.text)], usage_of(asker)), self._report(asker, thought, timer))

    async def stream(self, call: Call) -> AsyncIterator[Event]:
        timer = Timer()
        lines: asyncio.Queue[str] = asyncio.Queue()
        asker = Asker.for_request(self.backends, call.budget, call.request)
        asker.progress = lines.put_nowait
        lines.put_nowait(f"{self.label} · {self.vm.members[0]} leads")
        work = asyncio.create_task(self._run(call, asker))
        async with aclosing(narrate(work, lines, self.vm.heartbeat_s)) as progress:
            async for e in progress:
                yield e
        thought = work.result()
        for e in replay(Answer(text=thought.text)):
            yield e
        yield UsageEvent(usage_of(asker) or ZERO)
        yield Report(self._report(asker, thought, timer))
