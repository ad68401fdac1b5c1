"""A thinking strategy (`solo`, `duo-debate`, `trio-consensus`, `debate`, `vote`) as a virtual model.

`members[0]` leads; the others are its partners. Every call appears in `council.members` with
its role. Streamed, each step shows as a `reasoning_content` line while the members think;
the answer itself follows as content when they are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from routing import wire
from routing.config import Config, ThinkingModel
from routing.report import CouncilReport, Timer, priced
from routing.strategies.base import Backends, Call, Json, narrate
from routing.thinking import THINKERS, Asker, Options, Thought


def usage_of(asker: Asker, member: str | None = None) -> Json | None:
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
        messages: list[Any] = call.body.get("messages") or []
        return await self.think(asker, messages, self.vm.members[0], self.vm.members[1:], self.opts)

    def _report(self, asker: Asker, thought: Thought, timer: Timer) -> Json:
        members = priced(asker.reports, self.backends)
        return CouncilReport(
            virtual_model=self.name, strategy=self.label, winner=thought.by, members=members,
            degraded=any(m.status in ("error", "timeout", "skipped") for m in members),
            decided_by=thought.decided_by, agreement=thought.agreement, latency_ms=timer.ms(), note=thought.note,
        ).as_json()

    async def complete(self, call: Call) -> Json:
        timer = Timer()
        asker = Asker.for_body(self.backends, call.budget, call.body)
        thought = await self._run(call, asker)
        resp = {"choices": [{"index": 0, "message": {"role": "assistant", "content": thought.text},
                             "finish_reason": "stop"}], "usage": usage_of(asker)}
        out = wire.completion(resp, id=call.id, created=call.created, model=call.model)
        out["council"] = self._report(asker, thought, timer)
        return out

    async def stream(self, call: Call) -> AsyncIterator[Json]:
        timer = Timer()
        shaper = wire.ChunkShaper(id=call.id, created=call.created, model=call.model)
        lines: asyncio.Queue[str] = asyncio.Queue()
        asker = Asker.for_body(self.backends, call.budget, call.body)
        asker.progress = lines.put_nowait
        yield shaper.role()
        lines.put_nowait(f"{self.label} · {self.vm.members[0]} leads")
        work = asyncio.create_task(self._run(call, asker))
        async for chunk in narrate(work, lines, shaper, self.vm.heartbeat_s):
            yield chunk
        thought = work.result()
        for chunk in wire.answer_chunks(shaper, {"content": thought.text}):
            yield chunk
        if call.include_usage:
            yield shaper.usage_chunk(usage_of(asker) or {"prompt_tokens": 0, "completion_tokens": 0,
                                                         "total_tokens": 0})
        yield shaper.extension_chunk("council", self._report(asker, thought, timer))
