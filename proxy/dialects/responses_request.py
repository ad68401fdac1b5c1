"""The Responses API's request as a chat completions body: `input` items and `instructions` as messages,
function, custom and namespaced tools as functions (built-in ones left out), `text.format` as
`response_format`."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from proxy.dialects import images_after
from routing.errors import InvalidRequest
from routing.request import Json

_encode = msgspec.json.Encoder().encode


CUSTOM_INPUT = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
"""A `custom` (free-form) tool is offered to chat models as a function of one string."""
USED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "text", "reasoning", "stream",
                  "max_output_tokens", "temperature", "top_p", "parallel_tool_calls", "top_logprobs", "user",
                  "safety_identifier", "metadata", "store", "previous_response_id", "shenron"})
"""Request fields that shape the answer or its keeping; the rest are named in `council.ignored`."""
BUILT_IN = ("web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter",
            "image_generation", "local_shell", "mcp")


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


_TEXTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text", "refusal")
"""A tuple, not a set: a part's `type` may be anything a client sent, a list included."""


def _content(content: Any, where: str) -> str | list[Json]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad(f"Invalid type for '{where}': expected a string or an array of content parts.", where,
                   "invalid_type")
    parts: list[Json] = []
    for i, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in _TEXTS:
            text = p.get("text", p.get("refusal"))
            if not isinstance(text, str):
                at = f"{where}[{i}]"
                raise bad(f"Invalid type for '{at}.text': expected a string.", f"{at}.text", "invalid_type")
            parts.append({"type": "text", "text": text})
            continue
        at = f"{where}[{i}]"
        if kind == "input_image":
            url = p.get("image_url")
            if not isinstance(url, str):
                raise bad(f"Invalid value for '{at}': only images given by `image_url` (a URL or a data URL) "
                           "can be sent through this proxy.", f"{at}.image_url")
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": p.get("detail") or "auto"}})
        elif kind == "input_file" and isinstance(p.get("file_data"), str) and str(p.get("filename", "")).endswith(
                (".txt", ".md")):
            parts.append({"type": "text", "text": p["file_data"]})
        else:
            raise bad(f"Invalid value for '{at}.type': {kind!r} is not a content part this proxy can send "
                       "(input_text, output_text, input_image with image_url).", f"{at}.type")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        text = "\n".join(p.get("text", "") for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))
        images = len(_output_images(output))
        return text or (f"(the result is {images} image(s), in the next message)" if images else "")
    return _encode(output).decode()


def _output_images(output: Any) -> list[Json]:
    """The images of a function call's output (Codex's view_image), as chat image parts."""
    if not isinstance(output, list):
        return []
    return [{"type": "image_url", "image_url": {"url": p["image_url"], "detail": p.get("detail") or "auto"}}
            for p in output if isinstance(p, dict) and p.get("type") == "input_image"
            and isinstance(p.get("image_url"), str)]


def _items(items: list[Any]) -> list[Json]:
    """Input items as chat messages: consecutive calls join one assistant message, outputs become tool messages
    (and the images an output holds a user message after that turn's tool messages)."""
    out: list[Json] = []
    pictures: list[tuple[str, list[Json]]] = []

    def flush() -> None:
        out.extend(images_after(pictures))
        pictures.clear()

    def assistant(calls: bool) -> Json:
        """The assistant message this item joins: calls join the last one, text joins one without calls."""
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant" and (calls or not last.get("tool_calls")):
            return last
        msg: Json = {"role": "assistant", "content": None}
        out.append(msg)
        return msg

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad(f"Invalid type for '{where}': expected an input item object.", where, "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if pictures and kind not in ("function_call_output", "custom_tool_call_output"):
            flush()  # the images of the outputs before: after their tool messages, before what follows
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise bad(f"Invalid value for '{where}.role': {role!r}. Supported values are: 'assistant', "
                           "'developer', 'system' and 'user'.", f"{where}.role")
            content = _content(item.get("content"), f"{where}.content")
            if role == "assistant":
                msg = assistant(calls=False)
                text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
                msg["content"] = (msg["content"] or "") + text
            else:
                out.append({"role": role, "content": content})
        elif kind in ("function_call", "custom_tool_call"):
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise bad(f"Missing required parameter: '{where}.call_id' and '{where}.name'.", f"{where}.call_id",
                           "missing_required_parameter")
            if kind == "function_call":
                args = item.get("arguments", "")
                if not isinstance(args, str):
                    raise bad(f"Invalid type for '{where}.arguments': expected a string of JSON.",
                               f"{where}.arguments", "invalid_type")
            else:
                args = _encode({"input": str(item.get("input", ""))}).decode()
            msg = assistant(calls=True)
            msg.setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str):
                raise bad(f"Missing required parameter: '{where}.call_id'.", f"{where}.call_id",
                           "missing_required_parameter")
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item.get("output"))})
            if images := _output_images(item.get("output")):  # chat tool messages carry text: the images follow
                pictures.append((item["call_id"], images))
        elif kind == "reasoning":
            continue  # a model's earlier thinking; chat models are not shown it again
        else:
            raise bad(f"Invalid value for '{where}.type': {kind!r} is not an input item this proxy can send "
                       "(message, function_call, function_call_output, custom_tool_call, "
                       "custom_tool_call_output, reasoning).", f"{where}.type")
    flush()
    return out


class Tools:
    """The request's tools as chat functions, and what answers need to know to name calls the way the
    client defined them: free-form (`custom`) tools, the namespace of a namespaced one, and the built-in
    tools that were left out (they run on OpenAI's servers only; said in `council.ignored_tools`)."""

    def __init__(self) -> None:
        self.functions: list[Json] = []
        self.custom: set[str] = set()
        self.namespace: dict[str, str] = {}
        self.ignored: list[str] = []

    def add(self, t: Any, where: str, namespace: str | None = None) -> None:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind == "namespace" and isinstance(t, dict) and isinstance(t.get("tools"), list) and namespace is None:
            for j, inner in enumerate(t["tools"]):
                self.add(inner, f"{where}.tools[{j}]", str(t.get("name") or ""))
            return
        if kind in BUILT_IN:
            self.ignored.append(str(kind))
            return
        if kind not in ("function", "custom") or not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise bad(f"Invalid value for '{where}': expected a tool with a 'type' of 'function', 'custom' or "
                       "'namespace' and a 'name'.", where)
        fn: Json = {"name": t["name"]}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        if kind == "function":
            fn["parameters"] = t.get("parameters") or {"type": "object", "properties": {}}
            if t.get("strict") is not None:
                fn["strict"] = bool(t["strict"])
        else:
            fn["parameters"] = CUSTOM_INPUT
            self.custom.add(t["name"])
        if namespace:
            self.namespace[t["name"]] = namespace
        self.functions.append({"type": "function", "function": fn})


def _tools(tools: Any) -> Tools:
    if not isinstance(tools, list):
        raise bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    out = Tools()
    for i, t in enumerate(tools):
        out.add(t, f"tools[{i}]")
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and isinstance(choice.get("name"),
                                                                                               str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad("Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or "
               "{'type': 'function', 'name': ...}.", "tool_choice")


def _format(text: Any) -> Json | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise bad("Invalid type for 'text': expected an object.", "text", "invalid_type")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        schema: Json = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            schema["strict"] = bool(fmt["strict"])
        return {"type": "json_schema", "json_schema": schema}
    raise bad("Invalid value for 'text.format': expected a 'type' of 'text', 'json_object' or 'json_schema' "
               "(with a 'schema').", "text.format")


def to_chat(body: Json, history: list[Json]) -> tuple[Json, list[Json], Tools]:
    """A Responses request as a chat body; also the conversation to store and what the tools were."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    raw = body.get("input")
    if isinstance(raw, str):
        turn = [{"role": "user", "content": raw}]
    elif isinstance(raw, list):
        turn = _items(raw)
    elif raw is None and history:
        turn = []
    else:
        raise bad("Missing required parameter: 'input' (a string or an array of input items).", "input",
                   "missing_required_parameter")
    conversation = history + turn
    if not conversation:
        raise bad("'input' must contain at least one item.", "input", "empty_array")
    messages = list(conversation)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise bad("Invalid type for 'instructions': expected a string.", "instructions", "invalid_type")
        messages.insert(0, {"role": "system", "content": instructions})
    out: Json = {"model": model, "messages": messages}
    for key in ("temperature", "top_p", "stream", "parallel_tool_calls", "top_logprobs"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str):
        out["user"] = user
    tools = _tools(body["tools"]) if body.get("tools") else Tools()
    if tools.functions:
        out["tools"] = tools.functions
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = _format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise bad("Invalid type for 'reasoning': expected an object.", "reasoning", "invalid_type")
    if reasoning and isinstance(reasoning.get("effort"), str) and reasoning["effort"] != "none":
        out["reasoning_effort"] = reasoning["effort"]
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad("Invalid type for 'metadata': expected an object.", "metadata", "invalid_type")
    if out.get("stream"):
        out["stream_options"] = {"include_usage": True}
    if isinstance(body.get("shenron"), dict):
        out["shenron"] = body["shenron"]
    return out, conversation, tools
