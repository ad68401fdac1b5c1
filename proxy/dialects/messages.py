"""Anthropic's Messages API (`POST /v1/messages`), as Claude Code and the `anthropic` SDKs speak it.

The request is converted in `messages_request`; here the engine's answer becomes a `message` with content
blocks, and its chunks the published event sequence: `message_start`, per block
`content_block_start` / `content_block_delta` / `content_block_stop`, `message_delta`
(stop reason, usage, and our `council`), `message_stop`, with `ping` while a council
deliberates.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.dialects import Context
from proxy.dialects.messages_request import noted, to_chat
from proxy.requests import decode, read_translated
from routing import wire
from routing.core import (
    Event,
    Finish,
    Heartbeat,
    ReasoningDelta,
    Report,
    Result,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from routing.request import Json, Request
from routing.strategies import Call
from routing.tokens import ZERO, Usage, estimate_tokens
from routing.wire import prompt_text

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
        "content_filter": "refusal"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
               499: "api_error", 503: "overloaded_error", 529: "overloaded_error"}


def envelope(status: int, openai: Json) -> Json:
    """An OpenAI error envelope in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`."""
    err = openai.get("error") or {}
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": err.get("message") or "error"}}


def _usage(u: Usage | None) -> Json:
    """Anthropic's usage: input_tokens without the prompt cache's reads and writes, which it counts apart."""
    u = u or ZERO
    out: Json = {"input_tokens": max(0, u.prompt_tokens - u.cached_tokens - u.cache_write_tokens),
                 "output_tokens": u.completion_tokens}
    if u.cached_tokens or u.cache_write_tokens:
        out["cache_read_input_tokens"] = u.cached_tokens
        out["cache_creation_input_tokens"] = u.cache_write_tokens
    return out


def _input(raw: Any) -> Any:
    try:
        parsed = _decode(raw or "{}") if isinstance(raw, str) else raw
    except msgspec.DecodeError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def new_id() -> str:
    return wire.new_id("msg_", 96)


def to_message(result: Result, model: str, body: Json | None = None) -> Json:
    """The engine's answer as an Anthropic `message`, with our `council` beside its fields."""
    a = result.reply.answer
    content: list[Json] = []
    if a.reasoning:
        content.append({"type": "thinking", "thinking": a.reasoning, "signature": ""})
    if a.text:
        content.append({"type": "text", "text": a.text})
    for tc in a.tool_calls:
        content.append({"type": "tool_use", "id": tc.id or wire.new_id("toolu_", 64), "name": tc.name,
                        "input": _input(tc.arguments)})
    return {"id": new_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if a.tool_calls else STOP.get(a.finish_reason, "end_turn"),
            "stop_sequence": None, "usage": _usage(result.reply.usage),
            "council": noted(result.report.as_json(), body or {})}


def _event(name: str, data: Json) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode({"type": name, **data}) + b"\n\n"


class MessagesWriter:
    """Engine events as Messages stream events: one open content block at a time, as Anthropic streams."""

    def __init__(self, model: str, prompt_tokens: int, body: Json | None = None) -> None:
        self.model = model
        self.body = body or {}
        self.id = new_id()
        self.block = -1
        self.open: str | None = None
        self.tools: dict[int, int] = {}
        """Tool call index in the chat stream -> its block index."""
        self.stop = "end_turn"
        self.usage: Json = {"input_tokens": prompt_tokens, "output_tokens": 0}
        self.council: Json | None = None
        self.content_chunks = 0

    def start(self) -> bytes:
        message: Json = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": dict(self.usage)}
        return _event("message_start", {"message": message})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _event("content_block_stop", {"index": self.block})

    def _begin(self, kind: str, block: Json) -> bytes:
        out = self._close()
        self.block += 1
        self.open = kind
        return out + _event("content_block_start", {"index": self.block, "content_block": block})

    def event(self, e: Event) -> bytes:
        if isinstance(e, (TextDelta, ReasoningDelta, ToolCallDelta, Finish)) and e.choice != 0:
            return b""
        if isinstance(e, ReasoningDelta) and e.text:
            out = b"" if self.open == "thinking" else \
                self._begin("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            return out + _event("content_block_delta", {"index": self.block,
                                                        "delta": {"type": "thinking_delta", "thinking": e.text}})
        if isinstance(e, TextDelta) and e.text:
            self.content_chunks += 1
            out = b"" if self.open == "text" else self._begin("text", {"type": "text", "text": ""})
            return out + _event("content_block_delta", {"index": self.block,
                                                        "delta": {"type": "text_delta", "text": e.text}})
        if isinstance(e, ToolCallDelta):
            out = b""
            if e.index not in self.tools:
                out += self._begin(f"tool{e.index}", {"type": "tool_use",
                                                      "id": e.id or wire.new_id("toolu_", 64),
                                                      "name": e.name or "", "input": {}})
                self.tools[e.index] = self.block
            if e.arguments:
                if self.open != f"tool{e.index}":  # arguments of an earlier call: Anthropic has no way back
                    raise RuntimeError("tool call arguments arrived after another block began")
                out += _event("content_block_delta", {"index": self.block, "delta": {
                    "type": "input_json_delta", "partial_json": e.arguments}})
            return out
        if isinstance(e, Finish):
            self.stop = STOP.get(e.reason, "end_turn")
        elif isinstance(e, UsageEvent):
            self.usage = _usage(e.usage)
        elif isinstance(e, Report):
            self.council = e.report.as_json()
        elif isinstance(e, Heartbeat):
            return _event("ping", {})
        return b""

    def failed(self, status: int, envelope_: Json) -> bytes:
        return self._close() + _event("error", {"error": envelope(status, envelope_)["error"]})

    def end(self) -> bytes:
        if self.tools:
            self.stop = "tool_use"
        if not self.usage.get("output_tokens"):
            self.usage["output_tokens"] = self.content_chunks
        delta: Json = {"delta": {"stop_reason": self.stop, "stop_sequence": None}, "usage": self.usage}
        if self.council is not None:
            delta["council"] = noted(self.council, self.body)
        return self._close() + _event("message_delta", delta) + _event("message_stop", {})


class Messages:
    name = "messages"

    async def read(self, raw: bytes, ctx: Context) -> Call:
        ctx.body = decode(raw)
        return read_translated(to_chat(ctx.body))

    def answer(self, result: Result, ctx: Context) -> Json:
        return to_message(result, str(ctx.body.get("model")), ctx.body)

    def writer(self, ctx: Context) -> MessagesWriter:
        return MessagesWriter(str(ctx.body.get("model")), estimate(ctx.call.request), ctx.body)

    async def finished(self, ctx: Context) -> None:
        return None


def count_tokens(body: Json) -> int:
    """An estimate of the prompt's tokens (about four characters each): system, messages and tools."""
    return estimate(Request.of(to_chat({**body, "max_tokens": body.get("max_tokens") or 1, "stream": False})))


def estimate(req: Request) -> int:
    """`count_tokens` of the request a Messages body was read into: a stream's `message_start` says it, from the
    request already read (translating the body again for it cost a fifth of a short stream's Python)."""
    text = prompt_text(req.messages)
    if req.tools:
        text += _encode(req.tools).decode()
    for m in req.messages:
        for tc in m.tool_calls or ():
            text += tc.name + tc.arguments
    return estimate_tokens(text)


MESSAGES = Messages()
