"""The one contract every strategy implements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from routing.backends import Backend
from routing.budget import Budget
from routing.fanout import stop
from routing.wire import ChunkShaper

Json = dict[str, Any]
T = TypeVar("T")
NESTED = "_nested"
"""Key in `Call.extras` of a call one virtual model makes to another: counted, but not recorded twice."""


@dataclass(slots=True)
class Call:
    """One chat request as the engine sees it: the client's body, untouched, and what it asked for."""

    body: Json
    model: str
    stream: bool
    include_usage: bool
    id: str
    created: int
    extras: Json = field(default_factory=dict)
    """Shenron's own request options (`extra_body={"shenron": {...}}`), removed from `body`."""
    budget: Budget = field(default_factory=Budget)
    may: Callable[[str], bool] = field(default=lambda model: True)
    """Whether the caller's key may reach a model: every virtual model a strategy reaches on its behalf
    (a cascade's `first` and `escalate-to`, a `degrade-to`) is checked here, not only the one it named."""


class Strategy(Protocol):
    """A virtual model's behaviour.

    `complete` returns a whole chat.completion carrying `council`. `stream` yields
    chunks already in OpenAI's shape, ending with the `council` chunk; an error raised
    before its first chunk becomes an HTTP error, one raised later an error event.
    """

    name: str
    label: str

    async def complete(self, call: Call) -> Json: ...

    def stream(self, call: Call) -> AsyncIterator[Json]: ...


Backends = Mapping[str, Backend]


async def relay(
    first: Json | None, upstream: AsyncGenerator[Json, None], shaper: ChunkShaper
) -> AsyncGenerator[Json, None]:
    """Forward an upstream stream through the shaper; the upstream is closed whatever happens."""
    try:
        if first is not None:
            for chunk in shaper.shape(first):
                yield chunk
        async for piece in upstream:
            for chunk in shaper.shape(piece):
                yield chunk
    finally:
        await upstream.aclose()
    for chunk in shaper.close():
        yield chunk


async def narrate(work: asyncio.Task[T], lines: asyncio.Queue[str], shaper: ChunkShaper,
                  heartbeat_s: float) -> AsyncGenerator[Json, None]:
    """While `work` runs, stream its progress lines as `reasoning_content` (rendered as thinking by
    Open WebUI, Continue, Cline, Roo and Aider) and a heartbeat when nothing happened for a while.

    The task is cancelled if the client goes away; its result is left on the task.
    """
    def line(text: str) -> Json:
        return shaper.shape({"choices": [{"index": 0, "delta": {"reasoning_content": text + "\n"}}]})[0]

    try:
        while True:
            while not lines.empty():
                yield line(lines.get_nowait())
            if work.done():
                break
            getter = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({work, getter}, timeout=heartbeat_s, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield line(getter.result())
            else:
                getter.cancel()
                if not done:
                    yield shaper.heartbeat()
    finally:
        await stop({work})
