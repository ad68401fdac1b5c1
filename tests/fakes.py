"""In-process backends for strategy tests: scripted answers, delays and failures; a history of what happened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from proxy.dialects.chat import ChatWriter, completion
from routing.config import BackendConfig
from routing.core import Event, Reply, Result
from routing.errors import MemberFailure, MemberTimeout
from routing.request import Request
from routing.upstream import answers
from routing.upstream.guard import Guard


class FakeBackend:
    def __init__(self, name: str, answer: str = "42", *, delay: float = 0.0, fail: str | None = None,
                 weight: float = 1.0, tool_calls: list[dict[str, Any]] | None = None) -> None:
        self.name = name
        self.model = f"{name}-model"
        self.cfg = BackendConfig(url="http://fake.invalid/v1", model=self.model, weight=weight)
        self.answer, self.delay, self.fail, self.tool_calls = answer, delay, fail, tool_calls
        self.history: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.guard = Guard(name, self.cfg)

    async def _wait(self) -> None:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.history.append("cancelled")
            raise

    async def complete(self, req: Request, model: str | None = None, notes: dict[str, Any] | None = None) -> Reply:
        """The answer as any backend gives it: the upstream's chat.completion, checked and typed at the wire."""
        return answers.reply(self.name, await self.respond(req.chat(), model))

    async def stream(self, req: Request, model: str | None = None, notes: dict[str, Any] | None = None,
                     raw: bool = False) -> AsyncIterator[Event]:
        """The answer word by word, as an upstream's chunks checked and typed at the wire."""
        resp = await self.respond(req.chat(), model)
        text = resp["choices"][0]["message"]["content"] or ""
        for word in text.split(" "):
            for e in answers.events(self.name, {"choices": [{"index": 0, "delta": {"content": word + " "}}]}):
                yield e
        for e in answers.events(self.name, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                                            "usage": resp["usage"]}):
            yield e

    async def respond(self, body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        """What the upstream server answers (a chat.completion)."""
        self.history.append("request")
        self.bodies.append(body)
        await self._wait()
        if self.fail == "timeout":
            raise MemberTimeout(self.name, "no answer within 1s")
        if self.fail:
            raise MemberFailure(self.name, self.fail)
        self.history.append("done")
        msg: dict[str, Any] = {"role": "assistant", "content": None if self.tool_calls else self.answer}
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return {"choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if self.tool_calls else "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


class ScriptedBackend(FakeBackend):
    """Answers from a script: a list consumed in order (the last one repeats), or a function of the body."""

    def __init__(self, name: str, script: list[str] | Any, *, price_in: float = 0.0, price_out: float = 0.0,
                 url: str = "http://fake.invalid/v1", fail_at: set[int] | None = None) -> None:
        super().__init__(name)
        self.cfg = BackendConfig(url=url, model=self.model, price_in=price_in, price_out=price_out)
        self.guard = Guard(name, self.cfg)
        self.script = script
        self.fail_at = fail_at or set()

    async def respond(self, body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        n = len(self.bodies)
        self.history.append("request")
        self.bodies.append(body)
        await self._wait()
        if n in self.fail_at:
            raise MemberFailure(self.name, "scripted failure")
        if callable(self.script):
            text = self.script(body)
        else:
            text = self.script[min(n, len(self.script) - 1)]
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}


def chat(result: Result) -> dict[str, Any]:
    """A strategy's answer as a chat completions client gets it."""
    return completion(result, id="chatcmpl-test", created=1, model="test")


async def chat_stream(events: AsyncIterator[Event], include_usage: bool = True) -> AsyncIterator[dict[str, Any]]:
    """A strategy's events as the chat.completion.chunk objects a client reads (the error envelope too)."""
    writer = ChatWriter(id="chatcmpl-test", created=1, model="test", include_usage=include_usage)
    try:
        async for e in events:
            for frame in writer.event(e).split(b"\n\n"):
                if frame:
                    yield msgspec.json.decode(frame.removeprefix(b"data: "))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
