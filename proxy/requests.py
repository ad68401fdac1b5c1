"""Chat request bodies: decoded once, checked where a mistake would confuse a backend.

Everything the client sent is kept and forwarded, unknown fields too (vendor extras
arrive through `extra_body`); only Shenron's own `shenron` object is taken out.
"""

from __future__ import annotations

from typing import Any

import msgspec

from routing import wire
from routing.errors import InvalidRequest
from routing.strategies import Call

_decode = msgspec.json.Decoder().decode

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> None:
    v = body.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise _bad(f"Invalid value for '{key}': expected a number between {lo:g} and {hi:g}, got {v!r}.", key)


def _positive_int(body: dict[str, Any], key: str) -> None:
    v = body.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise _bad(f"Invalid value for '{key}': expected an integer >= 1, got {v!r}.", key)


def _messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _bad("'messages' must be an array of message objects.", "messages", "invalid_type")
    if not messages:
        raise _bad("'messages' must contain at least one message.", "messages", "empty_array")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
        role = m.get("role")
        if role is None:
            raise _bad(f"Missing required parameter: '{where}.role'.", f"{where}.role", "missing_required_parameter")
        if role not in ROLES:
            raise _bad(f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                       + ", ".join(sorted(ROLES)) + ".", f"{where}.role")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(f"Invalid type for '{where}.content': expected a string or an array of content parts.",
                       f"{where}.content", "invalid_type")
        if content is None and role in ("user", "system", "developer"):
            raise _bad(f"Missing required parameter: '{where}.content'.", f"{where}.content",
                       "missing_required_parameter")


def parse_chat(raw: bytes) -> Call:
    """Decode and check a /v1/chat/completions body; raises InvalidRequest naming the field."""
    try:
        body = _decode(raw)
    except msgspec.DecodeError as e:
        raise _bad(f"We could not parse the JSON body of your request ({e}). Send valid JSON.", None,
                   "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None, "invalid_type")
    model = body.get("model")
    if model is None:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _bad("Invalid type for 'model': expected a non-empty string.", "model", "invalid_type")
    _messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad(f"Invalid type for 'stream': expected a boolean, got {stream!r}.", "stream", "invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("Invalid type for 'stream_options': expected an object.", "stream_options", "invalid_type")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for key in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, key)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    extras = body.pop("shenron", None)
    if extras is not None and not isinstance(extras, dict):
        raise _bad("Invalid type for 'shenron': expected an object.", "shenron", "invalid_type")
    return Call(body=body, model=model, stream=bool(stream),
                include_usage=bool(options and options.get("include_usage")),
                id=wire.new_id(), created=wire.now(), extras=extras or {})
