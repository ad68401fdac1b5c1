"""OpenAI chat completions: the engine's answers and events in the published shapes.

Whatever the upstream sent (llama.cpp's servers skip the role chunk, the usage chunk, `refusal`),
the client gets the contract: a role chunk first, one `id`/`created`/`model` throughout, a
finish chunk per choice, usage in one `choices: []` chunk at the end when it asked for it.
Fields are in the order of OpenAI's reference; ours (`council`) come after them. A chunk relayed as
the upstream sent it (`RawChunk`: plain text, checked) keeps the upstream's fields and their order,
with our `id`, `created` and `model` put in.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.dialects import Context
from proxy.requests import read_chat
from routing.core import (
    Answer,
    Event,
    Finish,
    Heartbeat,
    RawChunk,
    ReasoningDelta,
    Report,
    Result,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from routing.request import Json
from routing.strategies import Call

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def message(a: Answer) -> Json:
    out: Json = {"role": "assistant", "content": a.text, "refusal": None}
    if a.tool_calls:
        out["tool_calls"] = [{"id": tc.id, "type": "function", "function": {"name": tc.name,
                                                                             "arguments": tc.arguments}}
                             for tc in a.tool_calls]
    if a.reasoning:
        out["reasoning_content"] = a.reasoning
    return out


def completion(result: Result, *, id: str, created: int, model: str) -> Json:
    """A chat.completion: `usage` is the answer's, `council` (ours, last) says what everyone spent."""
    reply = result.reply
    out: Json = {
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": a.index, "message": message(a), "logprobs": a.logprobs,
                     "finish_reason": a.finish_reason} for a in reply.choices],
    }
    if reply.usage is not None:
        out["usage"] = reply.usage.openai()
    if reply.fingerprint:
        out["system_fingerprint"] = reply.fingerprint
    # Shenron's extension
    out["council"] = result.report.as_json()
    return out


_SPELLED = (b'"%s":%s', b'"%s": %s')
_SPELLED_NUMBER = (b'"%s":%s,', b'"%s":%s}', b'"%s": %s,', b'"%s": %s}')
"""How a chunk may spell a key and its value (a number with the byte after it)."""


class ChatWriter:
    """The engine's events as chat.completion.chunk frames."""

    def __init__(self, *, id: str, created: int, model: str, include_usage: bool) -> None:
        self.id, self.created, self.model = id, created, model
        self.include_usage = include_usage
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.broken = False
        self._swaps: tuple[bytes, ...] | None = None
        """For relayed chunks: the span of the first chunk from the first to the last of the upstream's `id`,
        `model` and `created` (what lies between is the same in every chunk of a stream: `"object"`, a
        fingerprint), then each of the three as its bytes spell them, each followed by ours; empty when they
        cannot be swapped in place (then the chunk is re-encoded)."""
        self._ends: tuple[bytes, bytes, bytes, bool] | None = None
        """Where the span opens the first relayed chunk (`{` and the span) or ends it (the span and what follows
        it): those bytes; ours in their place with the boundary between two frames, and with the read's own
        start or end; and whether they open it."""

    def _frame(self, choices: list[Json], **more: Any) -> bytes:
        chunk: Json = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model, "choices": choices, **more}
        return b"data: " + _encode(chunk) + b"\n\n"

    def _delta(self, choice: int, delta: Json, logprobs: Any = None, finish: str | None = None) -> bytes:
        if choice not in self.started:  # a choice's first delta names the role
            self.started.add(choice)
            delta = {"role": "assistant", **(delta or {"content": ""})}
        return self._frame([{"index": choice, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])

    def _close(self) -> bytes:
        """Finish chunks for the choices the upstream left open (every stream ends with one per choice)."""
        if self.started and self.started <= self.finished:  # every choice finished (the usual end): nothing
            return b""
        opened = sorted(self.started - self.finished) or [0]
        return b"".join([self.event(Finish("stop", choice=c)) for c in opened])

    def start(self) -> bytes:
        return b""

    def _relayed(self, e: RawChunk) -> bytes:
        """The upstream's frames with our id, created and model, swapped in place in all of them at once
        (each spelling is found once a frame, or the frames are re-encoded one by one)."""
        payloads = e.payloads
        s = self._swaps
        if s is None:
            s = self._swaps = self._swaps_for(payloads[0])
            self._ends = _ends_of(payloads[0], s) if s else None
        self.started.add(0)
        if self._ends is not None:
            # The span opens every payload (as vLLM, OpenAI and Ollama write a chunk: `{"id":...`), or it and
            # the same bytes after it end every payload (llama.cpp writes the choices first): ours put in their
            # place in each, with no search. A search for the span cost more than the rest of the relay's
            # reading of a read: CPython searches a needle of 100 bytes or more (a span with a model named as
            # vLLM names it) in a read of 2,500 or more with a two-way search, set up again for each piece.
            theirs, between, edge, opens = self._ends
            k = len(theirs)
            if len(payloads) == 1:  # a paced server's token
                p = payloads[0]
                if opens and p.startswith(theirs):
                    return edge + p[k:] + b"\n\n"
                if not opens and p.endswith(theirs):
                    return b"data: " + p[:-k] + edge
            elif opens:
                rest = [p[k:] for p in payloads if p.startswith(theirs)]
                if len(rest) == len(payloads):
                    return edge + between.join(rest) + b"\n\n"
            else:
                rest = [p[:-k] for p in payloads if p.endswith(theirs)]
                if len(rest) == len(payloads):
                    return b"data: " + between.join(rest) + edge
        data, n = e.data, e.count
        if s:
            # The span in one split and join, where it is the same in every frame (one search pass); else each
            # spelling in turn.
            parts = data.split(s[0])
            if len(parts) == n + 1:
                return s[1].join(parts)
            for theirs, ours in ((s[2], s[3]), (s[4], s[5]), (s[6], s[7])):
                parts = data.split(theirs)
                if len(parts) != n + 1:
                    break
                data = ours.join(parts)
            else:
                return data
            data = e.data
        out = []
        for frame in data[6:-2].split(b"\n\ndata: "):
            chunk = _decode(frame)
            chunk.update(id=self.id, object="chat.completion.chunk", created=self.created, model=self.model)
            out.append(b"data: " + _encode(chunk) + b"\n\n")
        return b"".join(out)

    def _swaps_for(self, data: bytes) -> tuple[bytes, ...]:
        """How the first relayed chunk spells its id, model and created (with the byte after a number,
        so `1700000000` is never taken for the start of `17000000001`), each with ours after it."""
        chunk = _decode(data)
        up = (chunk.get("id"), chunk.get("model"), chunk.get("created"))
        if (chunk.get("object") != "chat.completion.chunk" or not isinstance(up[0], str)
                or not isinstance(up[1], str) or type(up[2]) is not int):
            return ()
        return self._compact(data, up[0], up[1], up[2]) or self._spelled(data, up)

    def _compact(self, data: bytes, id: str, model: str, created: int) -> tuple[bytes, ...] | None:
        """`_swaps_for` where the chunk spells all three compact, as servers write (each found by the first form
        `_spelled` tries): without its loop over the spellings (a third of a short stream's relaying)."""
        f_id, f_model = b'"id":' + _encode(id), b'"model":' + _encode(model)
        f_created = b'"created":%d,' % created
        w_created = data.find(f_created)
        if w_created < 0:
            f_created = f_created[:-1] + b"}"
            w_created = data.find(f_created)
        w_id, w_model = data.find(f_id), data.find(f_model)
        if w_id < 0 or w_model < 0 or w_created < 0:
            return None
        return _spans(data, [f_id, b'"id":' + _encode(self.id), f_model, b'"model":' + _encode(self.model),
                             f_created, b'"created":%d%s' % (self.created, f_created[-1:])],
                      [w_id, w_id + len(f_id), w_model, w_model + len(f_model), w_created, w_created + len(f_created)])

    def _spelled(self, data: bytes, up: tuple[Any, Any, Any]) -> tuple[bytes, ...]:
        """`_swaps_for`, each of the three found in whichever spelling the chunk uses."""
        out: list[bytes] = []
        at: list[int] = []
        for key, theirs, ours, forms in ((b"id", up[0], self.id, _SPELLED), (b"model", up[1], self.model, _SPELLED),
                                         (b"created", up[2], self.created, _SPELLED_NUMBER)):
            value = _encode(theirs)
            for form in forms:  # compact first, as servers write
                found = form % (key, value)
                where = data.find(found)  # not `in`: see sse.py
                if where >= 0:
                    break
            else:
                return ()
            out += [found, b'"%s":%s%s' % (key, _encode(ours), found[-1:] if forms is _SPELLED_NUMBER else b"")]
            at += [where, where + len(found)]
        return _spans(data, out, at)

    def event(self, e: Event) -> bytes:
        if isinstance(e, RawChunk):
            return self._relayed(e)
        if isinstance(e, TextDelta):
            return self._delta(e.choice, {"content": e.text}, e.logprobs)
        if isinstance(e, ReasoningDelta):
            return self._delta(e.choice, {"reasoning_content": e.text})
        if isinstance(e, ToolCallDelta):
            call: Json = {"index": e.index}
            if e.id is not None:
                call["id"] = e.id
                call["type"] = "function"
            fn: Json = {"name": e.name} if e.name is not None else {}
            fn["arguments"] = e.arguments
            call["function"] = fn
            return self._delta(e.choice, {"tool_calls": [call]})
        if isinstance(e, Finish):
            if e.choice in self.finished:
                return b""
            self.finished.add(e.choice)
            return self._delta(e.choice, {}, finish=e.reason)
        if isinstance(e, Heartbeat):  # an empty-content delta: every common client renders nothing for it
            return self._delta(0, {"content": ""})
        if isinstance(e, UsageEvent):
            return self._close() + (self._frame([], usage=e.usage.openai()) if self.include_usage else b"")
        if isinstance(e, Report):
            return self._close() + self._frame([], council=e.report.as_json())
        return b""

    def failed(self, status: int, envelope: Json) -> bytes:
        self.broken = True
        return b"data: " + _encode(envelope) + b"\n\n"

    def end(self) -> bytes:
        return (b"" if self.broken else self._close()) + b"data: [DONE]\n\n"


class Chat:
    name = "chat"

    async def read(self, raw: bytes, ctx: Context) -> Call:
        ctx.body, call = read_chat(raw)  # the engine's own shape: its messages read typed, at once
        return call

    def answer(self, result: Result, ctx: Context) -> Json:
        c = ctx.call
        return completion(result, id=c.id, created=c.created, model=c.model)

    def writer(self, ctx: Context) -> ChatWriter:
        c = ctx.call
        return ChatWriter(id=c.id, created=c.created, model=c.model, include_usage=c.include_usage)

    async def finished(self, ctx: Context) -> None:
        return None


CHAT = Chat()


def _spans(data: bytes, out: list[bytes], at: list[int]) -> tuple[bytes, ...]:
    """`ChatWriter._swaps_for` from the three spellings found, each followed by ours (`out`), and where each begins
    and ends (`at`): the span from the first to the last, and ours in its place."""
    span = data[min(at):max(at)]
    return (span, span.replace(out[0], out[1]).replace(out[2], out[3]).replace(out[4], out[5]), *out)


def _ends_of(first: bytes, swaps: tuple[bytes, ...]) -> tuple[bytes, bytes, bytes, bool] | None:
    """`ChatWriter._ends` for a stream whose first relayed payload is `first`."""
    span, ours = swaps[0], swaps[1]
    if first.startswith(b"{" + span):
        return b"{" + span, b"\n\ndata: {" + ours, b"data: {" + ours, True
    at = first.find(span)
    if at < 0:
        return None
    after = first[at + len(span):]
    return span + after, ours + after + b"\n\ndata: ", ours + after + b"\n\n", False
