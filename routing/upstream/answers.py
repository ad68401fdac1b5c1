"""What an upstream may answer: checked once, at the backend's wire, before any strategy reads it.

A member whose answer has the wrong shape has failed (its reason names what was wrong), so the
vote and the fallbacks go on with the healthy ones instead of a strategy tripping over it later.
Shapes servers really send are normalized on the way: content as an array of text parts becomes
one string, usage with missing or non-numeric counts is dropped (and estimated downstream).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeGuard

import msgspec

from routing.core import (
    Answer,
    Event,
    Finish,
    ReasoningDelta,
    Reply,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageEvent,
    finish_of,
)
from routing.errors import MemberFailure
from routing.request import Json
from routing.tokens import Usage

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
MAX_CHOICES = 128


def _text(member: str, content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif not (isinstance(p, dict) and isinstance(p.get("type"), str)):
                raise MemberFailure(member, f"malformed response: {where} has a part that is not a content part")
        return "".join(parts)
    raise MemberFailure(member, f"malformed response: {where} is a {type(content).__name__}, not text")


def _tool_calls(member: str, calls: Any, where: str, streamed: bool) -> list[Json] | None:
    if calls is None:
        return None
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise MemberFailure(member, f"malformed response: {where}.tool_calls is not an array of objects")
    for c in calls:
        fn = c.get("function")
        if fn is None and streamed:
            continue
        if not isinstance(fn, dict):
            raise MemberFailure(member, f"malformed response: {where}.tool_calls[].function is not an object")
        name, args = fn.get("name"), fn.get("arguments")
        if (name is not None or not streamed) and not isinstance(name, str):
            raise MemberFailure(member, f"malformed response: {where}.tool_calls[].function.name is not a string")
        if args is not None and not isinstance(args, str):
            fn["arguments"] = _json_text(args)
        if streamed and "index" in c and not _index(c["index"]):
            raise MemberFailure(member, f"malformed response: {where}.tool_calls[].index is not a small integer")
    return calls


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_CHOICES


def usage(raw: Any) -> Json | None:
    """Token counts as non-negative integers, or None when the upstream's are missing or not numbers; the
    `*_details` kept only where they are objects (what `Usage.of` reads in them)."""
    if not isinstance(raw, dict):
        return None
    p, c = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not _count(p) or not _count(c):
        return None
    t = raw.get("total_tokens")
    out = {k: v for k, v in raw.items()
           if v is not None and k not in USAGE_KEYS and (isinstance(v, dict) or not k.endswith("_details"))}
    return {**out, "prompt_tokens": p, "completion_tokens": c, "total_tokens": t if _count(t) else p + c}


def _count(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _finish(member: str, reason: Any, where: str) -> None:
    if reason is not None and not isinstance(reason, str):
        raise MemberFailure(member, f"malformed response: {where}.finish_reason is not a string")


def completion(member: str, raw: Any) -> Json:
    """A whole chat.completion, checked and normalized in place; raises MemberFailure."""
    if not isinstance(raw, dict):
        raise MemberFailure(member, "malformed response: not a JSON object")
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MemberFailure(member, "malformed response: no `choices`")
    for i, c in enumerate(choices[:MAX_CHOICES]):
        where = f"choices[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("message"), dict):
            raise MemberFailure(member, f"malformed response: {where}.message is not an object")
        if "index" in c and not _index(c["index"]):
            raise MemberFailure(member, f"malformed response: {where}.index is not a small integer")
        msg = c["message"]
        msg["content"] = _text(member, msg.get("content"), f"{where}.message.content")
        if not isinstance(msg.get("reasoning_content"), (str, type(None))):
            msg.pop("reasoning_content")
        _tool_calls(member, msg.get("tool_calls"), f"{where}.message", streamed=False)
        _finish(member, c.get("finish_reason"), where)
    if "usage" in raw:
        raw["usage"] = usage(raw["usage"])
        if raw["usage"] is None:
            del raw["usage"]
    return raw


def chunk(member: str, raw: Any) -> Json:
    """One streamed chat.completion.chunk, checked and normalized in place; raises MemberFailure."""
    if not isinstance(raw, dict):
        raise MemberFailure(member, "malformed stream event: not a JSON object")
    choices = raw.get("choices")
    if choices is None:
        choices = raw["choices"] = []
    if not isinstance(choices, list):
        raise MemberFailure(member, "malformed stream event: `choices` is not an array")
    for c in choices:
        if not isinstance(c, dict):
            raise MemberFailure(member, "malformed stream event: a choice is not an object")
        if not _index(c.get("index", 0)):
            raise MemberFailure(member, "malformed stream event: a choice's index is not a small integer")
        delta = c.get("delta")
        if delta is None:
            delta = c["delta"] = {}
        if not isinstance(delta, dict):
            raise MemberFailure(member, "malformed stream event: `delta` is not an object")
        if "content" in delta:
            delta["content"] = _text(member, delta["content"], "delta.content")
        for key in ("reasoning_content", "reasoning", "role"):
            if not isinstance(delta.get(key), (str, type(None))):
                delta.pop(key)
        _tool_calls(member, delta.get("tool_calls"), "delta", streamed=True)
        _finish(member, c.get("finish_reason"), "choice")
    if "usage" in raw:
        raw["usage"] = usage(raw["usage"])
        if raw["usage"] is None:
            del raw["usage"]
    return raw


# `gc=False` on the plain shapes: each is read and dropped within one check and holds only what JSON decodes to and
# others of them, so it can be in no reference cycle. Tracked, a read of 200 chunks made 600 objects for the
# cycle collector at once, which set it off: 9 % of such a stream's instructions (BENCHMARKS.md).
class _Quiet(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """What a plain delta holds besides its content: the role at most, nothing else but nulls."""

    role: Literal["assistant"] | None = None
    reasoning_content: None = None
    reasoning: None = None
    tool_calls: None = None
    function_call: None = None
    refusal: None = None


class _PlainDelta(_Quiet, kw_only=True):
    content: str


class _PlainChoice(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    delta: _PlainDelta
    index: Literal[0] = 0
    logprobs: None = None
    finish_reason: None = None


class _PlainChunk(msgspec.Struct, gc=False):
    choices: Annotated[list[_PlainChoice], msgspec.Meta(min_length=1, max_length=1)]
    usage: None = None
    error: None = None


_plain_chunk = msgspec.json.Decoder(_PlainChunk).decode


def plain(data: bytes, started: bool) -> str | None:
    """The text of a chunk a chat client may get as the upstream sent it (only its id and model changed),
    or None when it must be checked and rebuilt (`events`): one choice, index 0, a delta of string
    `content` (with the role `assistant` or none, and nothing else but nulls), no finish reason, no
    logprobs, no usage, no error. A choice's first delta must name its role (`started`: one did).
    Checked by msgspec against the shape above, in C: the one check every relayed chunk pays."""
    try:
        delta = _plain_chunk(data).choices[0].delta
    except msgspec.DecodeError:
        return None
    return delta.content if started or delta.role is not None else None


_plain_chunks = msgspec.json.Decoder(list[_PlainChunk]).decode


def plain_all(payloads: list[bytes], started: bool) -> list[str] | None:
    """The texts of a read's chunks when every one is plain (`plain`, in order, after the first of them
    has started the choice), in one decode of them all; None when any is not (then each is read alone)."""
    joined = b",".join(payloads)
    if joined.find(b"\n") >= 0:  # a payload of several `data:` lines: not relayed as one line
        return None
    try:
        chunks = _plain_chunks(b"[" + joined + b"]")
    except msgspec.DecodeError:
        return None
    if not started and chunks[0].choices[0].delta.role is None:
        return None
    return [c.choices[0].delta.content for c in chunks]


class _PlainMessage(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: None = None
    reasoning: None = None
    tool_calls: None = None


class _PlainAnswer(msgspec.Struct, gc=False):
    message: _PlainMessage
    index: Literal[0] = 0
    logprobs: None = None
    finish_reason: str | None = None


class _PlainDetails(msgspec.Struct, gc=False):
    cached_tokens: Any = None
    cache_write_tokens: Any = None
    reasoning_tokens: Any = None


_Count = Annotated[int, msgspec.Meta(ge=0)]


class _PlainUsage(msgspec.Struct, gc=False):
    """Usage whose counts are what `usage` keeps (other shapes are read field by field, by `reply`)."""

    prompt_tokens: _Count
    completion_tokens: _Count
    total_tokens: _Count | None = None
    prompt_tokens_details: _PlainDetails | None = None
    completion_tokens_details: _PlainDetails | None = None

    def read(self) -> Usage:
        """As `Usage.of(usage(...))` reads the same object."""
        p, c, t = self.prompt_tokens, self.completion_tokens, self.total_tokens
        asked, said = self.prompt_tokens_details, self.completion_tokens_details
        return Usage(p, c, t or p + c, _or_0(asked.cached_tokens) if asked else 0,
                     _or_0(said.reasoning_tokens) if said else 0, _or_0(asked.cache_write_tokens) if asked else 0)


def _or_0(v: Any) -> int:
    return v if _count(v) else 0


class _PlainEndDelta(_Quiet):
    content: Literal[""] | None = None


class _PlainEndChoice(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    finish_reason: str
    delta: _PlainEndDelta | None = None
    index: Literal[0] = 0
    logprobs: None = None


class _PlainEnd(msgspec.Struct, gc=False):
    choices: Annotated[list[_PlainEndChoice], msgspec.Meta(max_length=1)] = []
    usage: _PlainUsage | None = None
    error: msgspec.UnsetType = msgspec.UNSET
    """No `error` key at all: the stream's translator takes even a null one without choices for an error."""


_plain_end = msgspec.json.Decoder(_PlainEnd).decode


def plain_end(data: bytes) -> list[Event] | None:
    """The events `events` gives a chunk that ends a stream as servers send it (choice 0's finish reason with
    nothing more to say, and the usage, or only the usage), typed by msgspec in C; None when it is anything
    else, for `events` to check field by field."""
    try:
        c = _plain_end(data)
    except msgspec.DecodeError:
        return None
    out: list[Event] = [Finish(c.choices[0].finish_reason)] if c.choices and c.choices[0].finish_reason else []
    if c.usage is not None:
        out.append(UsageEvent(c.usage.read()))
    return out


class _PlainCompletion(msgspec.Struct, gc=False):
    choices: Annotated[list[_PlainAnswer], msgspec.Meta(min_length=1, max_length=1)]
    usage: _PlainUsage | None = None
    system_fingerprint: Any = None


_plain_completion = msgspec.json.Decoder(_PlainCompletion).decode


def plain_reply(data: bytes) -> Reply | None:
    """A whole chat.completion of one text choice (no tool calls, reasoning or logprobs), typed straight from
    its bytes by msgspec in C; None when it is anything else, for `reply` to check and type. What it gives
    is what `reply` gives for the same bytes (tests/test_answers.py): the fields `reply` ignores are
    ignored here too, and usage of another shape than `_PlainUsage` (a count that is not a non-negative
    integer, details that are not objects) is left to `reply`."""
    try:
        c = _plain_completion(data)
    except msgspec.DecodeError:
        return None
    choice = c.choices[0]
    fingerprint = c.system_fingerprint
    return Reply([Answer(text=choice.message.content, finish_reason=finish_of(choice.finish_reason, False))],
                 None if c.usage is None else c.usage.read(), fingerprint if isinstance(fingerprint, str) else None)


def _calls(calls: list[Json] | None) -> list[ToolCall]:
    return [ToolCall(str(c.get("id") or f"call_{i}"), str((c.get("function") or {}).get("name") or ""),
                     str((c.get("function") or {}).get("arguments") or ""))
            for i, c in enumerate(calls or ())]


def _logprobs(member: str, raw: Any, where: str) -> Any:
    """OpenAI's logprobs object, checked where the engine reads it (the cascade's confidence): an object whose
    `content` is a list of objects with a numeric `logprob`; null stays null."""
    if raw is None:
        return None
    content = raw.get("content") if isinstance(raw, dict) else raw
    if not isinstance(raw, dict) or not (content is None or (
            isinstance(content, list) and all(isinstance(t, dict) and isinstance(t.get("logprob", 0), (int, float))
                                              and not isinstance(t.get("logprob", 0), bool) for t in content))):
        raise MemberFailure(member, f"malformed response: {where}.logprobs is not OpenAI's logprobs object")
    return raw


def reply(member: str, raw: Any) -> Reply:
    """A whole chat.completion, checked (`completion`), as the engine's typed `Reply`."""
    resp = completion(member, raw)
    choices = []
    for i, c in enumerate(resp["choices"][:MAX_CHOICES]):
        msg = c["message"]
        thought = msg.get("reasoning_content") or msg.get("reasoning")
        choices.append(Answer(text=msg.get("content"), tool_calls=_calls(msg.get("tool_calls")),
                              reasoning=thought if isinstance(thought, str) and thought else None,
                              finish_reason=finish_of(c.get("finish_reason"), bool(msg.get("tool_calls"))),
                              logprobs=_logprobs(member, c.get("logprobs"), f"choices[{i}]"), index=c.get("index", i)))
    fingerprint = resp.get("system_fingerprint")
    return Reply(choices, Usage.of(resp.get("usage")), fingerprint if isinstance(fingerprint, str) else None)


def events(member: str, raw: Any) -> list[Event]:
    """One streamed chat.completion.chunk, checked (`chunk`), as the engine's typed events."""
    c = chunk(member, raw)
    out: list[Event] = []
    for choice in c["choices"]:
        i = choice.get("index", 0)
        d = choice["delta"]
        thought = d.get("reasoning_content") or d.get("reasoning")
        if thought:
            out.append(ReasoningDelta(thought, choice=i))
        logprobs = _logprobs(member, choice.get("logprobs"), f"choices[{i}]")
        if d.get("content") or logprobs:
            out.append(TextDelta(d.get("content") or "", logprobs=logprobs, choice=i))
        for n, tc in enumerate(d.get("tool_calls") or ()):
            fn = tc.get("function") or {}
            out.append(ToolCallDelta(tc.get("index", n), tc.get("id"), fn.get("name"), fn.get("arguments") or "",
                                     choice=i))
        if choice.get("finish_reason"):
            out.append(Finish(choice["finish_reason"], choice=i))
    if c.get("usage"):
        out.append(UsageEvent(Usage.of(c["usage"]) or Usage(0, 0, 0)))
    return out
