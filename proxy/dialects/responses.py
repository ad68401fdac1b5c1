"""OpenAI's Responses API (`POST /v1/responses`), as Codex CLI, the SDKs' `responses.create`, the
Vercel AI SDK and LangChain speak it.

The request is converted in `responses_request`; `previous_response_id` puts the stored
conversation before it. The engine's answer becomes a `response` whose
`output` holds a reasoning item, a message and function calls; streamed, the published
semantic events in order (each with its `sequence_number`), with SSE comments as heartbeats
while a council deliberates, which every SSE parser skips.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from proxy.dialects import Context
from proxy.dialects.responses_request import USED, Tools, bad, new_id, to_chat
from proxy.requests import decode, read_translated
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
from routing.request import Json
from routing.strategies import Call
from routing.tokens import ZERO, Usage

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

def usage_of(u: Usage) -> Json:
    p, c = u.prompt_tokens, u.completion_tokens
    return {"input_tokens": p, "input_tokens_details": {"cached_tokens": u.cached_tokens,
                                                          "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": c, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": p + c}


def _call_item(call_id: str | None, name: str | None, args: str, tools: Tools, status: str = "completed") -> Json:
    name = name or ""
    call_id = call_id or new_id("call")
    if name in tools.custom:
        try:
            decoded = _decode(args or "{}")
        except msgspec.DecodeError:
            decoded = {"input": args}
        text = decoded.get("input", "") if isinstance(decoded, dict) else str(decoded)
        return {"type": "custom_tool_call", "id": new_id("ctc"), "call_id": call_id, "name": name,
                "input": text if isinstance(text, str) else _encode(text).decode(), "status": status}
    item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id, "name": name, "arguments": args,
            "status": status}
    if name in tools.namespace:
        item["namespace"] = tools.namespace[name]
    return item


def _message_item(text: str, status: str = "completed", id: str | None = None) -> Json:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" \
        else []
    return {"type": "message", "id": id or new_id("msg"), "status": status, "role": "assistant", "content": content}


def _reasoning_item(text: str, id: str | None = None) -> Json:
    return {"type": "reasoning", "id": id or new_id("rs"), "summary": [{"type": "summary_text", "text": text}]}


class Turn:
    """One response's shell: what the request asked, echoed on the response as the API does."""

    def __init__(self, body: Json, tools: Tools) -> None:
        self.id = new_id("resp")
        self.created = int(time.time())
        self.body = body
        self.tools = tools
        self._shell: Json | None = None

    def council(self, council: Json | None) -> Json | None:
        """Our report, with the built-in tools the request named that no model here could use, and the
        request fields that reach no model (OpenAI's own: `include`, `prompt_cache_key`, ...)."""
        if council is not None and self.tools.ignored:
            council = {**council, "ignored_tools": sorted(set(self.tools.ignored))}
        left = sorted(k for k in self.body if k not in USED)
        if council is not None and left:
            council = {**council, "ignored": left}
        return council

    def _echoed(self) -> Json:
        """The response's fields that echo the request, in the API's order (`status` and `output` to fill): the
        same for every response of the turn (a stream writes three), so worked out once."""
        b = self.body
        text = b.get("text") if isinstance(b.get("text"), dict) else {"format": {"type": "text"}}
        reasoning = b.get("reasoning") if isinstance(b.get("reasoning"), dict) else None
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": None,
            "background": False, "error": None, "incomplete_details": None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": None, "model": b.get("model"), "output": None,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": (reasoning or {}).get("summary")},
            "service_tier": "default", "store": b.get("store", True), "temperature": b.get("temperature", 1.0),
            "text": text, "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [],
            "top_logprobs": b.get("top_logprobs", 0), "top_p": b.get("top_p", 1.0), "truncation": "disabled",
            "metadata": b.get("metadata") or {},
        }

    def response(self, status: str, output: list[Json], usage: Json | None = None, **more: Any) -> Json:
        b = self.body
        if self._shell is None:
            self._shell = self._echoed()
        out = self._shell.copy()  # its keys in their order, `status` and `output` in their places
        out["status"], out["output"] = status, output
        if usage is not None:
            out["usage"] = usage
        if isinstance(b.get("user"), str):
            out["user"] = b["user"]
        if status == "completed" or status == "incomplete":
            out["completed_at"] = int(time.time())
        out.update(more)
        return out


def to_response(result: Result, turn: Turn) -> Json:
    """The engine's answer as a `response` object, our `council` beside its fields."""
    a = result.reply.answer
    output: list[Json] = []
    if a.reasoning:
        output.append(_reasoning_item(a.reasoning))
    if a.text is not None and (a.text or not a.tool_calls):
        output.append(_message_item(a.text))
    output += [_call_item(tc.id, tc.name, tc.arguments, turn.tools) for tc in a.tool_calls]
    if not output:
        output.append(_message_item(""))
    more: Json = {}
    status = "completed"
    if a.finish_reason == "length":
        status, more["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    more["council"] = turn.council(result.report.as_json())
    return turn.response(status, output, usage_of(result.reply.usage or ZERO), **more)


def assistant_message(response: Json) -> Json:
    """What a stored response said, as the chat message the next turn builds on."""
    msg: Json = {"role": "assistant", "content": None}
    for item in response.get("output") or ():
        if item.get("type") == "message":
            msg["content"] = (msg["content"] or "") + "".join(c.get("text", "") for c in item.get("content") or ())
        elif item.get("type") in ("function_call", "custom_tool_call"):
            args = item.get("arguments") if item["type"] == "function_call" else \
                _encode({"input": item.get("input", "")}).decode()
            msg.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": args}})
    return msg


def _sse(event: Json) -> bytes:
    name: str = event["type"]
    return b"event: " + name.encode() + b"\ndata: " + _encode(event) + b"\n\n"


class ResponsesWriter:
    """Engine events as the Responses API's semantic events: an output item per reasoning, text and tool
    call, each opened, filled and closed in order; `response.completed` carries the whole response."""

    def __init__(self, turn: Turn, ctx: Context) -> None:
        self.turn = turn
        self.ctx = ctx
        self.seq = 0
        self.output: list[Json] = []
        self.open: Json | None = None
        """The item being streamed: {"kind", "item", "text"|"args", "index"}."""
        self.calls: dict[int, Json] = {}
        self.usage: Usage | None = None
        self.council: Json | None = None
        self.finish: str | None = None
        self.content_chunks = 0

    def _ev(self, type: str, **fields: Any) -> bytes:
        event = {"type": type, "sequence_number": self.seq, **fields}
        self.seq += 1
        return _sse(event)

    def start(self) -> bytes:
        shell = self.turn.response("in_progress", [])
        return self._ev("response.created", response=shell) + self._ev("response.in_progress", response=shell)

    def _close(self) -> bytes:
        o, self.open = self.open, None
        if o is None:
            return b""
        idx, item = o["index"], o["item"]
        if o["kind"] == "text":
            part = {"type": "output_text", "text": o["text"], "annotations": [], "logprobs": []}
            done = _message_item(o["text"], id=item["id"])
            out = (self._ev("response.output_text.done", item_id=item["id"], output_index=idx, content_index=0,
                            text=o["text"], logprobs=[])
                   + self._ev("response.content_part.done", item_id=item["id"], output_index=idx, content_index=0,
                              part=part))
        elif o["kind"] == "reasoning":
            part = {"type": "summary_text", "text": o["text"]}
            done = _reasoning_item(o["text"], id=item["id"])
            out = (self._ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=idx,
                            summary_index=0, text=o["text"])
                   + self._ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=idx,
                              summary_index=0, part=part))
        else:
            done = {**item, "status": "completed"}
            if item["type"] == "custom_tool_call":
                done = _call_item(item["call_id"], item["name"], o["args"], self.turn.tools)
                done["id"] = item["id"]
                out = self._ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=idx,
                               input=done["input"])
            else:
                done["arguments"] = o["args"]
                out = self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                               name=item["name"], arguments=o["args"])
        self.output.append(done)
        return out + self._ev("response.output_item.done", output_index=idx, item=done)

    def _begin(self, kind: str, item: Json, **state: Any) -> bytes:
        out = self._close()
        idx = len(self.output)
        self.open = {"kind": kind, "item": item, "index": idx, **state}
        return out + self._ev("response.output_item.added", output_index=idx, item=item)

    def event(self, e: Event) -> bytes:
        if isinstance(e, (TextDelta, ReasoningDelta, ToolCallDelta, Finish)) and e.choice != 0:
            return b""
        if isinstance(e, ReasoningDelta):
            return self._reasoning(e.text) if e.text else b""
        if isinstance(e, TextDelta):
            return self._text(e.text) if e.text else b""
        if isinstance(e, ToolCallDelta):
            return self._call(e)
        if isinstance(e, Finish):
            self.finish = e.reason
        elif isinstance(e, UsageEvent):
            self.usage = e.usage
        elif isinstance(e, Report):
            self.council = e.report.as_json()
        elif isinstance(e, Heartbeat):
            return b": keep-alive\n\n"  # a council is still deliberating
        return b""

    def _reasoning(self, thought: str) -> bytes:
        out = b""
        if self.open is None or self.open["kind"] != "reasoning":
            item = {"type": "reasoning", "id": new_id("rs"), "summary": []}
            out += self._begin("reasoning", item, text="")
            out += self._ev("response.reasoning_summary_part.added", item_id=item["id"],
                            output_index=self.open["index"], summary_index=0,  # type: ignore[index]
                            part={"type": "summary_text", "text": ""})
        o = self.open
        assert o is not None
        o["text"] += thought
        return out + self._ev("response.reasoning_summary_text.delta", item_id=o["item"]["id"],
                              output_index=o["index"], summary_index=0, delta=thought)

    def _text(self, text: str) -> bytes:
        out = b""
        self.content_chunks += 1
        if self.open is None or self.open["kind"] != "text":
            item = _message_item("", status="in_progress")
            out += self._begin("text", item, text="")
            out += self._ev("response.content_part.added", item_id=item["id"],
                            output_index=self.open["index"], content_index=0,  # type: ignore[index]
                            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        o = self.open
        assert o is not None
        o["text"] += text
        return out + self._ev("response.output_text.delta", item_id=o["item"]["id"], output_index=o["index"],
                              content_index=0, delta=text, logprobs=[])

    def _call(self, e: ToolCallDelta) -> bytes:
        out = b""
        if e.index not in self.calls:
            item = _call_item(e.id, e.name, "", self.turn.tools, status="in_progress")
            if item["type"] == "custom_tool_call":
                item["input"] = ""
            out += self._begin(f"call{e.index}", item, args="")
            self.calls[e.index] = self.open  # type: ignore[assignment]
        o = self.calls[e.index]
        if e.arguments:
            if o is not self.open:
                raise RuntimeError("tool call arguments arrived after another output item began")
            o["args"] += e.arguments
            if o["item"]["type"] == "function_call":
                out += self._ev("response.function_call_arguments.delta", item_id=o["item"]["id"],
                                output_index=o["index"], delta=e.arguments)
        return out

    def failed(self, status: int, envelope: Json) -> bytes:
        err = envelope.get("error") or {}
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        out = self._close()
        final = self.turn.response("failed", self.output, None,
                                   error={"code": code, "message": err.get("message") or "error"})
        if self.council is not None:
            final["council"] = self.turn.council(self.council)
        self.ctx.final = final
        return out + self._ev("response.failed", response=final)

    def end(self) -> bytes:
        out = self._close()
        if self.ctx.final is not None and self.ctx.final.get("status") == "failed":
            return out
        usage = self.usage or Usage(0, self.content_chunks, self.content_chunks)
        more: Json = {}
        status = "completed"
        if self.finish == "length":
            status, more["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
        if self.council is not None:
            more["council"] = self.turn.council(self.council)
        if not self.output:
            self.output.append(_message_item(""))
        final = self.turn.response(status, self.output, usage_of(usage), **more)
        self.ctx.final = final
        return out + self._ev("response.completed", response=final)


class Responses:
    name = "responses"

    async def read(self, raw: bytes, ctx: Context) -> Call:
        body = ctx.body = decode(raw)
        if ctx.state.router.cfg.store.keep_responses == "never":
            body["store"] = False  # the operator keeps no conversations: the answer says so, and nothing is kept
        history: list[Json] = []
        prev = body.get("previous_response_id")
        if prev is not None:
            if not isinstance(prev, str):
                raise bad("Invalid type for 'previous_response_id': expected a string.", "previous_response_id",
                           "invalid_type")
            stored = await ctx.state.store.get_response(prev, ctx.key_id, time.time())
            if stored is None:
                raise bad(f"Previous response with id '{prev}' not found. It may never have been stored "
                           "(`store: false`), belong to another key, or have expired.", "previous_response_id",
                           "previous_response_not_found")
            history = _decode(stored)["messages"]
        chat, conversation, tools = to_chat(body, history)
        ctx.extra = {"turn": Turn(body, tools), "conversation": conversation}
        return read_translated(chat)

    def answer(self, result: Result, ctx: Context) -> Json:
        return to_response(result, ctx.extra["turn"])

    def writer(self, ctx: Context) -> ResponsesWriter:
        return ResponsesWriter(ctx.extra["turn"], ctx)

    async def finished(self, ctx: Context) -> None:
        """Keep the answer and its conversation for `previous_response_id`, unless the client said `store: false`."""
        final = ctx.final
        if final is None or ctx.body.get("store") is False:
            return
        messages = [*ctx.extra["conversation"], assistant_message(final)]
        cfg = ctx.state.router.cfg
        ttl = cfg.server.responses_ttl_s or cfg.store.keep_responses_days * 86400
        await ctx.state.store.put_response(final["id"], ctx.key_id, time.time() + ttl,
                                           _encode({"messages": messages, "response": final}).decode())


RESPONSES = Responses()

