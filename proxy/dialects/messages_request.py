"""Anthropic's Messages request as a chat completions body: `system` (and system-role messages before the
conversation) first, later system-role messages in place as reminders, `tool_use` blocks as tool calls, each
`tool_result` as a tool message (and its images in a user message after them)."""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.dialects import images_after
from routing.errors import InvalidRequest
from routing.request import Json

_encode = msgspec.json.Encoder().encode


def _bad(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, b in enumerate(content):
            if not isinstance(b, dict) or not isinstance(b.get("text", ""), str):
                raise _bad(f"Invalid value for '{where}[{i}]': expected a text block.", f"{where}[{i}]")
            if b.get("type") == "text":
                parts.append(b.get("text", ""))
        return "\n".join(parts)
    if content is None:
        return ""
    raise _bad(f"Invalid type for '{where}': expected a string or an array of content blocks.", where)


def _image(block: Json, where: str) -> Json:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad(f"Missing required parameter: '{where}.source'.", f"{where}.source")
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
    elif src.get("type") == "url" and isinstance(src.get("url"), str):
        url = src["url"]
    else:
        raise _bad(f"Invalid value for '{where}.source.type': expected 'base64' or 'url'.", f"{where}.source.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: Json, where: str) -> tuple[Json, list[Json]]:
    """The tool message, and the images the result holds (Claude Code's Read of a picture): chat tool messages
    carry text only, so the images follow in a user message (`images_after`) instead of being dropped."""
    if not isinstance(block.get("tool_use_id"), str):
        raise _bad(f"Missing required parameter: '{where}.tool_use_id'.", f"{where}.tool_use_id")
    content = block.get("content")
    images: list[Json] = []
    if isinstance(content, list):
        text = "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        images = [_image(b, f"{where}.content[{k}]") for k, b in enumerate(content)
                  if isinstance(b, dict) and b.get("type") == "image"]
    else:
        text = _text_of(content, f"{where}.content")
    if images and not text:
        text = f"(the result is {len(images)} image(s), in the next message)"
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}, images


def _message(m: Any, i: int) -> list[Json]:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _bad(f"Invalid type for '{where}': expected an object.", where)
    role = m.get("role")
    if role == "system":  # Claude Code sends these; `to_chat` puts leading ones on top, keeps later ones in place
        return [{"role": "system", "content": _text_of(m.get("content"), f"{where}.content")}]
    if role not in ("user", "assistant"):
        raise _bad(f"Invalid value for '{where}.role': {role!r}. Supported values are: 'user', 'assistant' and "
                   "'system'.", f"{where}.role")
    content = m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"Invalid type for '{where}.content': expected a string or an array of content blocks.",
                   f"{where}.content")
    parts: list[Json] = []
    tools: list[Json] = []
    pictures: list[tuple[str, list[Json]]] = []
    calls: list[Json] = []
    thinking: list[str] = []
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":  # the common blocks first, their path formatted only for an error
            if not isinstance(b.get("text"), str):
                raise _bad(f"Invalid type for '{where}.content[{j}].text': expected a string.",
                           f"{where}.content[{j}].text")
            parts.append({"type": "text", "text": b["text"]})
            continue
        if kind == "tool_use" and role == "assistant":
            if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                at = f"{where}.content[{j}]"
                raise _bad(f"Missing required parameter: '{at}.id' and '{at}.name'.", at)
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": _encode(b.get("input") or {}).decode()}})
            continue
        at = f"{where}.content[{j}]"
        if not isinstance(b, dict) or not isinstance(kind, str):
            raise _bad(f"Invalid type for '{at}': expected a content block with a string 'type'.", at)
        if kind == "image":
            parts.append(_image(b, at))
        elif kind == "document":
            src = b.get("source") or {}
            if src.get("type") != "text" or not isinstance(src.get("data"), str):
                raise _bad(f"Invalid value for '{at}.source': only text documents can be sent to these models.",
                           f"{at}.source")
            parts.append({"type": "text", "text": src["data"]})
        elif kind == "tool_result" and role == "user":
            tool, images = _tool_result(b, at)
            tools.append(tool)
            if images:
                pictures.append((tool["tool_call_id"], images))
        elif kind in ("thinking", "redacted_thinking"):
            if isinstance(b.get("thinking"), str):
                thinking.append(b["thinking"])
        else:
            raise _bad(f"Invalid value for '{at}.type': {kind!r} is not a block a {role} message can hold here.",
                       f"{at}.type")
    # tool results answer the previous turn: they come first (then their images, if any)
    out: list[Json] = [*tools, *images_after(pictures)] if pictures else tools
    if role == "assistant":
        msg: Json = {"role": "assistant", "content": "".join([p.get("text", "") for p in parts]) or None}
        if calls:
            msg["tool_calls"] = calls
        if thinking:
            msg["reasoning_content"] = "\n".join(thinking)
        out.append(msg)
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join([p["text"] for p in parts]) if only_text else parts})
    return out


def _tools(tools: Any) -> list[Json]:
    if not isinstance(tools, list):
        raise _bad("Invalid type for 'tools': expected an array.", "tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise _bad(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        if t.get("type") not in (None, "custom") and "input_schema" not in t:
            raise _bad(f"Invalid value for 'tools[{i}].type': {t.get('type')!r} is a tool Anthropic runs on its "
                       "own servers; the models behind this proxy can only call tools you define with an "
                       "input_schema.", f"tools[{i}].type")
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"Missing required parameter: 'tools[{i}].input_schema'.", f"tools[{i}].input_schema")
        fn: Json = {"name": t["name"], "parameters": schema}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    if not isinstance(choice, dict):
        raise _bad("Invalid type for 'tool_choice': expected an object.", "tool_choice")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad("Invalid value for 'tool_choice.type': expected 'auto', 'any', 'tool' (with a name) or 'none'.",
               "tool_choice.type")


USED = frozenset({"model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k", "stream",
                  "stop_sequences", "tools", "tool_choice", "metadata", "shenron"})
"""Request fields that reach the models; anything else (thinking, context_management, output_config,
service_tier, ...) is Anthropic's own: left out, and named in `council.ignored`."""


def ignored(body: Json) -> list[str]:
    return sorted(k for k in body if k not in USED)


def noted(council: Any, body: Json) -> Any:
    left = ignored(body)
    return {**council, "ignored": left} if isinstance(council, dict) and left else council


def to_chat(body: Json) -> Json:
    """A Messages request as a chat completions body (InvalidRequest naming the field when it is wrong)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _bad("Missing required parameter: 'max_tokens'.", "max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad("Invalid value for 'max_tokens': expected an integer >= 1.", "max_tokens")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty array of message objects.", "messages")
    system: list[str] = []
    if body.get("system") is not None:
        system.append(_text_of(body["system"], "system"))
    messages: list[Json] = []
    for i, m in enumerate(raw):
        for msg in _message(m, i):
            if msg["role"] != "system":
                messages.append(msg)
            elif not messages:  # before the conversation: the system prompt's, at the top
                system.append(msg["content"])
            else:  # later (Claude Code's notes that a file changed): kept where it came, so the prefix before it is
                # unchanged for upstream prompt caches, as a reminder (no human wrote it: no risk words, no new ask)
                messages.append({"role": "user", "content": f"<system-reminder>{msg['content']}</system-reminder>"})
    if not messages:
        raise _bad("'messages' must contain at least one user or assistant message.", "messages")
    if any(system):
        messages.insert(0, {"role": "system", "content": "\n\n".join(t for t in system if t)})
    out: Json = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for key in ("temperature", "top_p", "top_k", "stream"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("Invalid type for 'stop_sequences': expected an array of strings.", "stop_sequences")
        out["stop"] = stop
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["tool_choice"], parallel = _tool_choice(body["tool_choice"])
        if parallel is not None:
            out["parallel_tool_calls"] = parallel
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        out["user"] = meta["user_id"]
    if out.get("stream"):
        out["stream_options"] = {"include_usage": True}
    if isinstance(body.get("shenron"), dict):
        out["shenron"] = body["shenron"]
    return out
