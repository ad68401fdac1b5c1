"""The canonical request: what every dialect's request becomes and what every backend kind writes
to its own wire.

Fields the engine reads are typed, in the order of OpenAI's chat completions reference; every
other field the client sent stays in `extra`, verbatim, and is forwarded (vendor options arrive
that way). A message keeps its content parts and tool calls as the API defines them. How the
answer is delivered (`stream`, `stream_options`) is the call's business, not the request's.
"""

from __future__ import annotations

from typing import Any

import msgspec

Json = dict[str, Any]
"""A JSON object as it arrives or leaves, before or after its typed form; the one alias of the project
(every module that holds one imports it from here)."""


_CALL_KEYS = frozenset(("id", "type", "function"))
_FUNCTION_KEYS = frozenset(("name", "arguments"))
_PART_KEYS = frozenset(("type", "text", "image_url"))
"""The keys the typed forms below read; any other a client sends is kept in their `extra`."""


class CalledTool(msgspec.Struct, omit_defaults=True):
    """A tool call an assistant turn of the conversation made (what the evidence rules and the translations
    read), its other fields kept verbatim in `extra`, and written back in the chat API's order."""

    id: str | None
    name: str
    arguments: str
    type: str = "function"
    extra: Json = {}
    function_extra: Json = {}

    @classmethod
    def of(cls, c: Json) -> CalledTool:
        """From a chat tool call already checked at the edge (`proxy.requests`: an object whose `function`
        has a string `name`)."""
        fn = c.get("function") or {}
        args = fn.get("arguments")
        extra = {} if c.keys() <= _CALL_KEYS else {k: v for k, v in c.items() if k not in _CALL_KEYS}
        fn_extra = {} if fn.keys() <= _FUNCTION_KEYS else {k: v for k, v in fn.items() if k not in _FUNCTION_KEYS}
        return cls(c["id"] if isinstance(c.get("id"), str) else None, str(fn.get("name") or ""),
                   args if isinstance(args, str) else "" if args is None else msgspec.json.encode(args).decode(),
                   str(c.get("type") or "function"), extra, fn_extra)

    def chat(self) -> Json:
        fn: Json = {"name": self.name, "arguments": self.arguments, **self.function_extra}
        out: Json = {"id": self.id} if self.id is not None else {}
        return {**out, "type": self.type, "function": fn, **self.extra}


class ContentPart(msgspec.Struct, omit_defaults=True):
    """A part of a message's content as the chat API defines them (`text`, `image_url`, `input_audio`, `file`):
    what the engine reads as fields, the rest (`cache_control`, an audio or file part's own keys) verbatim."""

    type: str
    text: str | None = None
    image_url: Json | None = None
    extra: Json = {}

    @classmethod
    def of(cls, p: Json) -> ContentPart:
        """From a part already checked at the edge (`proxy.requests`: an object with a string `type`)."""
        text, image = p.get("text"), p.get("image_url")
        extra = {} if p.keys() <= _PART_KEYS else {k: v for k, v in p.items() if k not in _PART_KEYS}
        if text is not None and not isinstance(text, str):
            extra["text"] = text
            text = None
        if image is not None and not isinstance(image, dict):
            extra["image_url"] = image
            image = None
        return cls(str(p.get("type")), text, image, extra)

    def chat(self) -> Json:
        out: Json = {"type": self.type}
        if self.text is not None:
            out["text"] = self.text
        if self.image_url is not None:
            out["image_url"] = self.image_url
        return {**out, **self.extra} if self.extra else out


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | list[ContentPart] | None = None
    """Text, or content parts (`text`, `image_url`, `input_audio`, `file`) as the chat API defines them."""
    name: str | None = None
    tool_calls: list[CalledTool] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    extra: Json = {}
    """The message's other fields, verbatim."""

    @classmethod
    def of(cls, m: Json) -> Message:
        """From a chat message already checked at the edge (`proxy.requests`)."""
        g = m.get
        extra = {} if m.keys() <= _MESSAGE_KEYS else {k: v for k, v in m.items() if k not in _MESSAGE_KEYS}
        calls, content = g("tool_calls"), g("content")
        if isinstance(content, list):
            content = [ContentPart.of(p) for p in content]
        return cls(m["role"], content, g("name"), None if calls is None else [CalledTool.of(c) for c in calls],
                   g("tool_call_id"), g("reasoning_content"), extra)

    @property
    def text(self) -> str:
        """Its text: the content string, or its text parts joined (images and the like carry none)."""
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.text is not None)
        return self.content or ""

    def chat(self) -> Json:
        content = [p.chat() for p in self.content] if isinstance(self.content, list) else self.content
        out: Json = {**self.extra, "role": self.role, "content": content} if self.extra else \
            {"role": self.role, "content": content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls is not None:
            out["tool_calls"] = [c.chat() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


_MESSAGE_KEYS = frozenset(("role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"))
DELIVERY = frozenset({"stream", "stream_options"})


class Request(msgspec.Struct, omit_defaults=True, kw_only=True, dict=True):
    """A chat request as the engine reads it. `dict=True`: an instance keeps its encoded body (`wire`) beside its
    fields; a changed request is a new instance (`msgspec.structs.replace`), which encodes its own."""

    messages: list[Message]
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    n: int | None = None
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = None
    reasoning_effort: str | None = None
    response_format: Json | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    tool_choice: str | Json | None = None
    tools: list[Json] | None = None
    top_logprobs: int | None = None
    top_p: float | None = None
    # the client's other fields, forwarded as they came
    extra: Json = {}
    session: str | None = None
    """Which conversation it belongs to (routing/session.py), for a pool's affinity; never sent upstream."""
    betas: tuple[str, ...] = ()
    """The client's `anthropic-beta` features (Claude Code's prompt caching, interleaved thinking): sent on
    to Anthropic backends with their own, never to others."""

    @classmethod
    def of(cls, body: Json, messages: list[Message] | None = None) -> Request:
        """From a chat completions body already checked at the edge; `model` and delivery are the call's
        (`messages`: the body's, already read, where it holds none)."""
        known, extra = {}, {}
        for k, v in body.items():  # the body's few keys, not every field the request could have
            if k in _FIELDS:
                if v is not None:
                    known[k] = v
            elif k not in _NOT_EXTRA:
                extra[k] = v
        known["messages"] = [Message.of(m) for m in body["messages"]] if messages is None else messages
        return cls(**known, extra=extra)

    def chat(self, messages: Any = None) -> Json:
        """The chat completions body (without `model` and delivery): the OpenAI kind's wire (`messages`: their
        JSON already written, as `wire` has it)."""
        out: Json = {**self.extra, "messages": [m.chat() for m in self.messages] if messages is None else messages}
        for key in FIELDS[1:]:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def wire(self) -> bytes:
        """`chat()` as JSON, encoded once: a council's members and a model's fallbacks send the same body."""
        out: bytes | None = self.__dict__.get("_wire")
        if out is None:
            said: bytes | None = self.__dict__.get("_said")
            out = self.__dict__["_wire"] = _encode(self.chat(None if said is None else msgspec.Raw(said)))
        return out

    def said(self, messages: bytes) -> None:
        """The messages' JSON as `chat()` writes it, known already (the edge read them typed): `wire` puts it in
        as it is. Like `wire`'s own, it is this instance's: `msgspec.structs.replace` does not carry it."""
        self.__dict__["_said"] = messages

    def plain(self, messages: list[Message], *, keep: tuple[str, ...] = ()) -> Request:
        """The request for an inner text call (a judge, a chairman, a critic): the same sampling, these
        messages, and none of what shapes the client's own answer (tools, choices, logprobs, a response
        format), except the fields named in `keep`."""
        dropped = {k: None for k in ANSWER_SHAPE if k not in keep}
        extra = {k: v for k, v in self.extra.items() if k not in LEGACY_TOOLS}
        return msgspec.structs.replace(self, messages=messages, extra=extra, **dropped)


_encode = msgspec.json.Encoder().encode
FIELDS = tuple(f for f in Request.__struct_fields__ if f not in ("extra", "session", "betas"))
_FIELDS = frozenset(FIELDS)
_NOT_EXTRA = DELIVERY | {"model"}
ANSWER_SHAPE = ("tools", "tool_choice", "parallel_tool_calls", "n", "response_format", "logprobs", "top_logprobs")
LEGACY_TOOLS = frozenset({"functions", "function_call"})


def betas_of(header: str | None) -> tuple[str, ...]:
    """`anthropic-beta: a,b` as its features, in order."""
    if not header:
        return ()
    return tuple(b.strip() for b in header.split(",") if b.strip())


def ask(text: str, **fields: Any) -> Request:
    """A one-message request (health warm-ups, `shenron check`)."""
    return Request(messages=[Message("user", text)], **fields)
