"""Chat request bodies: decoded once, checked where a mistake would confuse a backend.

Everything the client sent is kept and forwarded, unknown fields too (vendor extras
arrive through `extra_body`); only Shenron's own `shenron` object is taken out.

A chat client's body is read by `read_chat`: its messages straight into typed structs by msgspec (in C, one
pass), the rest as JSON; a body that does not fit that shape exactly (an unknown key in a message, a
wrong type, no messages) is read the general way, field by field, which says what is wrong. Both ways give
the same request (tests/test_body_checks.py holds them equal), so only the cost differs: a coding agent's
64 KB turn (bench/agent_turn.py) took 0.2 ms of Python to read and write upstream the general way, 0.11 so.
Every body's nesting (MAX_DEPTH) is checked by msgspec as it decodes, where it nests no deeper than SHALLOW.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from routing import wire
from routing.errors import InvalidRequest
from routing.request import CalledTool, ContentPart, Json, Message, Request
from routing.strategies import Call

_decode = msgspec.json.Decoder().decode

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays a body may have (a JSON schema in `tools` needs far less)."""
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> None:
    v = body.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise _bad(f"Invalid value for '{key}': expected a number between {lo:g} and {hi:g}, got {_short(v)}.", key)


def _positive_int(body: dict[str, Any], key: str) -> None:
    v = body.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise _bad(f"Invalid value for '{key}': expected an integer >= 1, got {_short(v)}.", key)


def _parts(parts: list[Any], where: str) -> None:
    for j, p in enumerate(parts):  # (a part's path is spelt only for its error: a long conversation has many)
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise _bad(f"Invalid type for '{where}[{j}]': expected a content part object with a string 'type'.",
                       f"{where}[{j}]", "invalid_type")
        if p["type"] == "text" and not isinstance(p.get("text"), str):
            raise _bad(f"Invalid type for '{where}[{j}].text': expected a string.", f"{where}[{j}].text",
                       "invalid_type")
        if p["type"] == "image_url" and not isinstance(p.get("image_url"), (dict, str)):
            raise _bad(f"Invalid type for '{where}[{j}].image_url': expected an object.", f"{where}[{j}].image_url",
                       "invalid_type")


def _tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise _bad(f"Invalid type for '{where}': expected an array.", where, "invalid_type")
    for j, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"Invalid value for '{where}[{j}]': expected a tool call with 'function.name'.",
                       f"{where}[{j}]", "invalid_type")
        if not isinstance(fn.get("arguments", ""), str):
            raise _bad(f"Invalid type for '{where}[{j}].function.arguments': expected a string of JSON.",
                       f"{where}[{j}].function.arguments", "invalid_type")


def _messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _bad("'messages' must be an array of message objects.", "messages", "invalid_type")
    if not messages:
        raise _bad("'messages' must contain at least one message.", "messages", "empty_array")
    for i, m in enumerate(messages):  # (a message's path is spelt only for its error)
        if not isinstance(m, dict):
            raise _bad(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]", "invalid_type")
        role = m.get("role")
        if role is None:
            raise _bad(f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role",
                       "missing_required_parameter")
        if not isinstance(role, str) or role not in ROLES:
            raise _bad(f"Invalid value for 'messages[{i}].role': {_short(role)}. Supported values are: "
                       + ", ".join(sorted(ROLES)) + ".", f"messages[{i}].role")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(f"Invalid type for 'messages[{i}].content': expected a string or an array of content "
                       "parts.", f"messages[{i}].content", "invalid_type")
        if content is None and role in ("user", "system", "developer"):
            raise _bad(f"Missing required parameter: 'messages[{i}].content'.", f"messages[{i}].content",
                       "missing_required_parameter")
        if isinstance(content, list):
            _parts(content, f"messages[{i}].content")
        for key in ("name", "tool_call_id", "reasoning_content"):
            if m.get(key) is not None and not isinstance(m[key], str):
                raise _bad(f"Invalid type for 'messages[{i}].{key}': expected a string.", f"messages[{i}].{key}",
                           "invalid_type")
        if m.get("tool_calls") is not None:
            _tool_calls(m["tool_calls"], f"messages[{i}].tool_calls")


def _tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise _bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("type", "function"), str):
            raise _bad(f"Invalid type for '{where}': expected a tool object.", where, "invalid_type")
        fn = t.get("function")
        if t.get("type", "function") == "function" and (not isinstance(fn, dict)
                                                      or not isinstance(fn.get("name"), str)):
            raise _bad(f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name",
                       "missing_required_parameter")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _depth(value: Any, limit: int) -> bool:
    """True when `value` (decoded JSON) nests containers deeper than `limit`: one level at a time, the
    containers of each level gathered into a list (no recursion to exhaust, and no tuple per child: a
    coding agent's 55 KB turn is walked in 80 us instead of 250 us)."""
    level = [value]
    for _ in range(limit):
        below: list[Any] = []
        add = below.append
        for v in level:
            for c in v.values() if type(v) is dict else v:
                if type(c) is dict or type(c) is list:
                    add(c)
        if not below:
            return False
        level = below
    return True


_TYPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("stop", (str, list), "a string or an array of strings"), ("seed", (int,), "an integer"),
    ("logprobs", (bool,), "a boolean"), ("user", (str,), "a string"), ("metadata", (dict,), "an object"),
    ("response_format", (dict,), "an object"), ("tool_choice", (str, dict), "a string or an object"),
    ("parallel_tool_calls", (bool,), "a boolean"), ("logit_bias", (dict,), "an object"),
    ("reasoning_effort", (str,), "a string"), ("modalities", (list,), "an array"),
)
_TYPED = frozenset({"top_logprobs", *(key for key, _, _ in _TYPES)})


def _types(body: dict[str, Any]) -> None:
    """The optional fields a backend would choke on, each with the type OpenAI documents."""
    if body.keys().isdisjoint(_TYPED):
        return
    for key, kinds, name in _TYPES:
        v = body.get(key)
        if v is not None and (not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds)):
            raise _bad(f"Invalid type for '{key}': expected {name}, got {_short(v)}.", key, "invalid_type")
    stop = body.get("stop")
    if isinstance(stop, list) and not all(isinstance(x, str) for x in stop):
        raise _bad("Invalid type for 'stop': expected an array of strings.", "stop", "invalid_type")
    rf = body.get("response_format")
    if isinstance(rf, dict) and not isinstance(rf.get("type"), str):
        raise _bad("Missing required parameter: 'response_format.type'.", "response_format.type",
                   "missing_required_parameter")
    top = body.get("top_logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20):
        raise _bad(f"Invalid value for 'top_logprobs': expected an integer between 0 and 20, got {_short(top)}.",
                   "top_logprobs")


SHALLOW = 12
"""Nesting that msgspec checks as it decodes, in C: a body whose containers sit at most SHALLOW - 1 levels below
it (nearly all: a coding agent's tool schemas reach about eight) needs no walk for MAX_DEPTH (`_depth`)."""


@functools.cache
def _shallow() -> tuple[Callable[[bytes], Any], Callable[[bytes], dict[str, Any]]]:
    """Decoders of a body's field and of a body (an object) whose containers are at most SHALLOW - 1 levels below
    the body: a ValidationError for deeper ones (and for numbers out of a double's range), which are then read
    the general way. A type per level; built on first use (about 30 ms; each level more doubles it)."""
    kind: Any = None | bool | int | float | str
    for _ in range(SHALLOW - 1):
        kind = None | bool | int | float | str | list[kind] | dict[str, kind]
    return msgspec.json.Decoder(kind).decode, msgspec.json.Decoder(dict[str, kind]).decode


def _maybe_deep(raw: bytes) -> bool:
    """Whether a body could nest MAX_DEPTH deep at all (a small one with fewer brackets cannot)."""
    return len(raw) > 8192 or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH


def warm() -> None:
    """Build what the first request would otherwise wait for (`_shallow`'s decoders)."""
    _shallow()


def decode(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or InvalidRequest saying why not (every dialect's first step)."""
    try:
        return _shallow()[1](raw)  # an object, and shallow: nothing to walk (else read and said below)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        body = _decode(raw)
    except msgspec.DecodeError as e:
        raise _bad(f"We could not parse the JSON body of your request ({e}). Send valid JSON.", None,
                   "invalid_json") from None
    except RecursionError:
        body = None
    if body is None or (isinstance(body, dict) and _maybe_deep(raw) and _depth(body, MAX_DEPTH)):
        raise _bad(f"The JSON body nests objects and arrays more than {MAX_DEPTH} deep.", None, "too_deep")
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None, "invalid_type")
    return body


def parse_chat(raw: bytes) -> Call:
    """Decode and check a /v1/chat/completions body; raises InvalidRequest naming the field."""
    return read_chat(raw)[1]


def read_chat(raw: bytes) -> tuple[Json, Call]:
    """A chat completions body as the client sent it (its messages left out where they were read typed) and
    its Call; InvalidRequest naming the field, as `call_of(decode(raw))` says it."""
    typed = _typed(raw)
    if typed is None:
        body = decode(raw)
        return body, call_of(body)
    body, messages, said = typed
    return body, _read_call(body, messages, said)


def _read_call(body: dict[str, Any], messages: list[Message], said: bytes) -> Call:
    """The Call of a body whose messages were read typed, their JSON (`said`) kept for the wire."""
    call = call_of(body, messages)
    call.request.said(said)
    return call


class _Function(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    arguments: str = ""


class _ToolCall(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str | UnsetType = UNSET
    type: str = "function"
    function: _Function


class _Part(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    text: str | UnsetType = UNSET
    image_url: dict[str, Any] | UnsetType = UNSET


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = None
    name: str | UnsetType = UNSET
    tool_calls: list[_ToolCall] | UnsetType = UNSET
    tool_call_id: str | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET


# The shapes above are the chat API's, so their JSON is what `Message.chat()` writes: a field that is absent
# (UNSET) is left out, as a None one is there. An explicit null where `chat()` would leave the key out, an
# empty tool call type (`chat()` writes "function") and any key of a message's own are not read typed.
_top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_typed_messages = msgspec.json.Decoder(list[_Message]).decode
_encode_typed = msgspec.json.Encoder().encode
_SPOKEN = frozenset({"user", "system", "developer"})
"""Roles whose message must have content."""
IMAGE_DEPTH = 5
"""How deep a message part's `image_url` object sits in a body (body, messages, message, content, part)."""


def _typed(raw: bytes) -> tuple[Json, list[Message], bytes] | None:
    """The body without its messages, its messages, and their JSON as `Message.chat()` writes it, when they
    are what `_messages` passes and `Message.of` reads with nothing kept aside; else None."""
    try:
        top = _top(raw)
        typed = _typed_messages(top.pop("messages"))
        if not typed:
            return None
        field = _shallow()[0]
        try:
            body = {k: field(v) for k, v in top.items()}
            walk = False
        except msgspec.ValidationError:  # a field nesting deeper than SHALLOW (or a number out of range)
            body = {k: _decode(v) for k, v in top.items()}
            walk = True
    except (msgspec.DecodeError, KeyError, RecursionError):  # (a ValidationError is a DecodeError)
        return None
    messages = _read_typed(typed, raw)
    if messages is None:
        return None
    if walk and _maybe_deep(raw) and _depth(body, MAX_DEPTH):
        return None
    return body, messages, _encode_typed(typed)


def _read_typed(typed: list[_Message], raw: bytes) -> list[Message] | None:
    """Typed messages as the engine's, where they pass what `_messages` checks and `Message.of` keeps all of
    them; else None. Where the body (`raw`; empty: checked elsewhere) could nest too deep, each image is
    walked: asked at the first image only (counting a body's brackets is a loop a byte, 3.5 us for 4 KB,
    and most bodies have no image)."""
    deep: bool | None = None
    messages = []
    for m in typed:
        content: Any = m.content
        if content is None:
            if m.role in _SPOKEN:
                return None
        elif type(content) is list:
            for p in content:
                if (p.text is UNSET and p.type == "text") or (p.image_url is UNSET and p.type == "image_url"):
                    return None
                if p.image_url is not UNSET:
                    if deep is None:
                        deep = _maybe_deep(raw)
                    if deep and _depth(p.image_url, MAX_DEPTH - IMAGE_DEPTH):
                        return None
            content = [ContentPart(p.type, None if p.text is UNSET else p.text,
                                   None if p.image_url is UNSET else p.image_url) for p in content]
        calls = None
        if m.tool_calls is not UNSET:
            calls = []
            for c in m.tool_calls:
                if not c.type:
                    return None
                calls.append(CalledTool(None if c.id is UNSET else c.id, c.function.name, c.function.arguments,
                                        c.type))
        messages.append(Message(m.role, content, None if m.name is UNSET else m.name, calls,
                                None if m.tool_call_id is UNSET else m.tool_call_id,
                                None if m.reasoning_content is UNSET else m.reasoning_content))
    return messages


def read_translated(body: dict[str, Any]) -> Call:
    """A chat body a dialect translated (Python objects, not bytes) as `call_of(body)` reads it: its messages
    converted typed by msgspec, in C, where they fit the chat shape exactly (a coding agent's turn in the
    Messages or Responses dialect: forty messages checked field by field cost more than its translation), else
    checked field by field. The original body's depth was checked as it was decoded, as `call_of` assumes."""
    messages = body.get("messages")
    if type(messages) is not list or not messages:
        return call_of(body)
    try:
        typed = msgspec.convert(messages, list[_Message])
    except msgspec.ValidationError:
        return call_of(body)
    read = _read_typed(typed, b"")  # translated: its depth was checked as the dialect's body was read
    return call_of(body) if read is None else _read_call(body, read, _encode_typed(typed))


def call_of(body: dict[str, Any], messages: list[Message] | None = None) -> Call:
    """Check a chat completions body (a client's, or one a dialect translated) and make it a Call (`messages`:
    its messages already read and checked by `read_chat`, and not in `body`)."""
    model = body.get("model")
    if model is None:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _bad("Invalid type for 'model': expected a non-empty string.", "model", "invalid_type")
    if messages is None:
        _messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad(f"Invalid type for 'stream': expected a boolean, got {_short(stream)}.", "stream", "invalid_type")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict)
                                or not isinstance(options.get("include_usage", False), (bool, type(None)))):
        raise _bad("Invalid type for 'stream_options': expected an object with a boolean 'include_usage'.",
                   "stream_options", "invalid_type")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for key in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, key)
    if body.get("tools") is not None:
        _tools(body["tools"])
    _types(body)
    extras = body.pop("shenron", None)
    if extras is not None and not isinstance(extras, dict):
        raise _bad("Invalid type for 'shenron': expected an object.", "shenron", "invalid_type")
    extras = {k: v for k, v in (extras or {}).items() if not k.startswith("_")}  # internal markers stay internal
    return Call(request=Request.of(body, messages), model=model, stream=bool(stream),
                include_usage=bool(options and options.get("include_usage")),
                id=wire.new_id(), created=wire.now(), extras=extras)
