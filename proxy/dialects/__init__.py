"""Dialects: the request and answer shapes clients speak, each converted at the edge.

A dialect turns its request body into the engine's request (`read`: chat's straight into it, the others
through a chat completions body), the engine's typed answer (`routing.core.Result`) into its own (`answer`), and the
engine's typed events into its own stream (`writer`). Errors reach the client in the dialect's
own envelope.
"""

from __future__ import annotations

from typing import Any, Protocol

from routing.core import Event, Result
from routing.request import Json
from routing.strategies import Call


class Writer(Protocol):
    """One streamed answer in a dialect: each engine event becomes zero or more wire frames."""

    def start(self) -> bytes: ...
    def event(self, e: Event) -> bytes: ...
    def failed(self, status: int, envelope: Json) -> bytes: ...
    def end(self) -> bytes: ...


class Dialect(Protocol):
    name: str

    async def read(self, raw: bytes, ctx: Context) -> Call:
        """The engine's request from the body's bytes, the body kept in `ctx.body` (InvalidRequest when it is
        wrong)."""
        ...

    def answer(self, result: Result, ctx: Context) -> Json: ...

    def writer(self, ctx: Context) -> Writer: ...

    async def finished(self, ctx: Context) -> None:
        """After the answer went out whole (a dialect that keeps answers keeps it here)."""
        ...


class Context:
    """What one request's dialect conversion remembers between the request and its answer."""

    __slots__ = ("body", "call", "extra", "final", "key_id", "state")

    def __init__(self, state: Any, key_id: str | None) -> None:
        self.state = state
        self.key_id = key_id
        self.body: Json = {}
        """The client's own body, as it sent it (chat's without its messages: `call` has them, read typed)."""
        self.call: Call
        """The engine's request, once `read` and checked."""
        self.extra: Json = {}
        """What the dialect keeps for itself between `read` and the answer."""
        self.final: Json | None = None
        """The dialect's whole answer, once known (streamed answers are assembled by the writer)."""


def images_after(images: list[tuple[str, list[Json]]]) -> list[Json]:
    """The images of a turn's tool results, as the user message that follows the tool messages."""
    if not images:
        return []
    parts: list[Json] = []
    for call_id, found in images:
        parts.append({"type": "text", "text": f"<system-reminder>Image(s) returned by tool call {call_id}:"
                                              "</system-reminder>"})  # the agent's, not a person's words
        parts += found
    return [{"role": "user", "content": parts}]
