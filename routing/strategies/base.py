"""The one contract every strategy implements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from routing.core import Event, Heartbeat, ReasoningDelta, Result
from routing.decide.budget import Budget
from routing.fanout import stop
from routing.request import Json, Request
from routing.upstream.backends import Backend

T = TypeVar("T")
NESTED = "_nested"
"""Key in `Call.extras` of a call one virtual model makes to another: counted, but not recorded twice."""


@dataclass(slots=True)
class Call:
    """One request as the engine sees it: the canonical request, and how the client wants the answer."""

    request: Request
    model: str
    stream: bool
    include_usage: bool
    id: str
    created: int
    extras: Json = field(default_factory=dict)
    """Shenron's own request options (`extra_body={"shenron": {...}}`), not forwarded."""
    budget: Budget = field(default_factory=Budget)
    may: Callable[[str], bool] = field(default=lambda model: True)
    """Whether the caller's key may reach a model: every virtual model a strategy reaches on its behalf
    (a cascade's `first` and `escalate-to`, a `degrade-to`) is checked here, not only the one it named."""
    relay: bool = False
    """The client reads chat chunks and nothing keeps the stream (no cache): a member streamed to it as it
    is (`single`, pass-through) may give plain chunks as `RawChunk`s, relayed with only the id and model
    changed instead of decoded, typed and encoded again."""


class Strategy(Protocol):
    """A virtual model's behaviour.

    `complete` gives the whole answer with its report. `stream` yields the engine's events
    (`routing.core`): deltas, heartbeats while it deliberates, then the answer's usage and the
    report, last. An error raised before its first event becomes an HTTP error, one raised later
    an error event.
    """

    name: str
    label: str

    async def complete(self, call: Call) -> Result: ...

    def stream(self, call: Call) -> AsyncIterator[Event]: ...


Backends = Mapping[str, Backend]


async def narrate(work: asyncio.Task[T], lines: asyncio.Queue[str], heartbeat_s: float) -> AsyncGenerator[Event, None]:
    """While `work` runs, stream its progress lines as reasoning (rendered as thinking by Open WebUI,
    Continue, Cline, Roo, Aider, Claude Code and Codex) and a heartbeat when nothing happened for a while.

    The stream opens at once (a first heartbeat), so the client has its headers and the dialect's
    opening while the members think. The task is cancelled if the client goes away; its result is
    left on the task.
    """
    try:
        yield Heartbeat()
        while True:
            while not lines.empty():
                yield ReasoningDelta(lines.get_nowait() + "\n")
            if work.done():
                break
            getter = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({work, getter}, timeout=heartbeat_s, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield ReasoningDelta(getter.result() + "\n")
            else:
                getter.cancel()
                if not done:
                    yield Heartbeat()
    finally:
        await stop({work})


def waiting(work: asyncio.Task[T], heartbeat_s: float) -> AsyncGenerator[Event, None]:
    """Heartbeats while `work` runs (a council deliberating): `narrate` with nothing to narrate."""
    return narrate(work, asyncio.Queue(), heartbeat_s)
