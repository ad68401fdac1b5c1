"""OpenAI's Responses API (`POST /v1/responses`), as Codex CLI, the SDKs' `responses.create`, the
Vercel AI SDK and LangChain speak it.

`input` (a string or items) and `instructions` become chat messages; `previous_response_id`
puts the stored conversation before them. The engine's answer becomes a `response` whose
`output` holds a reasoning item, a message and function calls; streamed, the published
semantic events in order (each with its `sequence_number`), with SSE comments as heartbeats
while a council deliberates, which every SSE parser skips.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec

from proxy.dialects import Context, Json
from routing.errors import InvalidRequest

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

CUSTOM_INPUT = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
"""A `custom` (free-form) tool is offered to chat models as a function of one string."""
USED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "text", "reasoning", "stream",
                  "max_output_tokens", "temperature", "top_p", "parallel_tool_calls", "top_logprobs", "user",
                  "safety_identifier", "metadata", "store", "previous_response_id", "shenron"})
"""Request fields that shape the answer or its keeping; the rest are named in `council.ignored`."""
BUILT_IN = ("web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter",
            "image_generation", "local_shell", "mcp")


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _content(content: Any, where: str) -> str | list[Json]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"Invalid type for '{where}': expected a string or an array of content parts.", where,
                   "invalid_type")
    parts: list[Json] = []
    for i, p in enumerate(content):
        at = f"{where}[{i}]"
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text", "refusal"):
            text = p.get("text", p.get("refusal"))
            if not isinstance(text, str):
                raise _bad(f"Invalid type for '{at}.text': expected a string.", f"{at}.text", "invalid_type")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = p.get("image_url")
            if not isinstance(url, str):
                raise _bad(f"Invalid value for '{at}': only images given by `image_url` (a URL or a data URL) "
                           "can be sent through this proxy.", f"{at}.image_url")
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": p.get("detail") or "auto"}})
        elif kind == "input_file" and isinstance(p.get("file_data"), str) and str(p.get("filename", "")).endswith(
                (".txt", ".md")):
            parts.append({"type": "text", "text": p["file_data"]})
        else:
            raise _bad(f"Invalid value for '{at}.type': {kind!r} is not a content part this proxy can send "
                       "(input_text, output_text, input_image with image_url).", f"{at}.type")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "\n".join(p.get("text", "") for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))
    return _encode(output).decode()


def _items(items: list[Any]) -> list[Json]:
    """Input items as chat messages: consecutive calls join one assistant message, outputs become tool messages."""
    out: list[Json] = []

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
            raise _bad(f"Invalid type for '{where}': expected an input item object.", where, "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"Invalid value for '{where}.role': {role!r}. Supported values are: 'assistant', "
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
                raise _bad(f"Missing required parameter: '{where}.call_id' and '{where}.name'.", f"{where}.call_id",
                           "missing_required_parameter")
            if kind == "function_call":
                args = item.get("arguments", "")
                if not isinstance(args, str):
                    raise _bad(f"Invalid type for '{where}.arguments': expected a string of JSON.",
                               f"{where}.arguments", "invalid_type")
            else:
                args = _encode({"input": str(item.get("input", ""))}).decode()
            msg = assistant(calls=True)
            msg.setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str):
                raise _bad(f"Missing required parameter: '{where}.call_id'.", f"{where}.call_id",
                           "missing_required_parameter")
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            continue  # a model's earlier thinking; chat models are not shown it again
        else:
            raise _bad(f"Invalid value for '{where}.type': {kind!r} is not an input item this proxy can send "
                       "(message, function_call, function_call_output, custom_tool_call, "
                       "custom_tool_call_output, reasoning).", f"{where}.type")
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
            raise _bad(f"Invalid value for '{where}': expected a tool with a 'type' of 'function', 'custom' or "
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
        raise _bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
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
    raise _bad("Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or "
               "{'type': 'function', 'name': ...}.", "tool_choice")


def _format(text: Any) -> Json | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _bad("Invalid type for 'text': expected an object.", "text", "invalid_type")
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
    raise _bad("Invalid value for 'text.format': expected a 'type' of 'text', 'json_object' or 'json_schema' "
               "(with a 'schema').", "text.format")


def to_chat(body: Json, history: list[Json]) -> tuple[Json, list[Json], Tools]:
    """A Responses request as a chat body; also the conversation to store and what the tools were."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    raw = body.get("input")
    if isinstance(raw, str):
        turn = [{"role": "user", "content": raw}]
    elif isinstance(raw, list):
        turn = _items(raw)
    elif raw is None and history:
        turn = []
    else:
        raise _bad("Missing required parameter: 'input' (a string or an array of input items).", "input",
                   "missing_required_parameter")
    conversation = history + turn
    if not conversation:
        raise _bad("'input' must contain at least one item.", "input", "empty_array")
    messages = list(conversation)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("Invalid type for 'instructions': expected a string.", "instructions", "invalid_type")
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
        raise _bad("Invalid type for 'reasoning': expected an object.", "reasoning", "invalid_type")
    if reasoning and isinstance(reasoning.get("effort"), str) and reasoning["effort"] != "none":
        out["reasoning_effort"] = reasoning["effort"]
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise _bad("Invalid type for 'metadata': expected an object.", "metadata", "invalid_type")
    if out.get("stream"):
        out["stream_options"] = {"include_usage": True}
    if isinstance(body.get("shenron"), dict):
        out["shenron"] = body["shenron"]
    return out, conversation, tools


def usage_of(usage: Any) -> Json:
    u = usage if isinstance(usage, dict) else {}
    p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    thought = int((u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {"input_tokens": p, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": c, "output_tokens_details": {"reasoning_tokens": thought}, "total_tokens": p + c}


def _call_item(tc: Json, tools: Tools, status: str = "completed") -> Json:
    fn = tc.get("function") or {}
    name, args = fn.get("name") or "", fn.get("arguments") or ""
    call_id = tc.get("id") or new_id("call")
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

    def council(self, council: Json | None) -> Json | None:
        """Our report, with the built-in tools the request named that no model here could use, and the
        request fields that reach no model (OpenAI's own: `include`, `prompt_cache_key`, ...)."""
        if council is not None and self.tools.ignored:
            council = {**council, "ignored_tools": sorted(set(self.tools.ignored))}
        left = sorted(k for k in self.body if k not in USED)
        if council is not None and left:
            council = {**council, "ignored": left}
        return council

    def response(self, status: str, output: list[Json], usage: Json | None = None, **more: Any) -> Json:
        b = self.body
        text = b.get("text") if isinstance(b.get("text"), dict) else {"format": {"type": "text"}}
        reasoning = b.get("reasoning") if isinstance(b.get("reasoning"), dict) else None
        out: Json = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": False, "error": None, "incomplete_details": None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": None, "model": b.get("model"), "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": (reasoning or {}).get("summary")},
            "service_tier": "default", "store": b.get("store", True), "temperature": b.get("temperature", 1.0),
            "text": text, "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [],
            "top_logprobs": b.get("top_logprobs", 0), "top_p": b.get("top_p", 1.0), "truncation": "disabled",
            "metadata": b.get("metadata") or {},
        }
        if usage is not None:
            out["usage"] = usage
        if isinstance(b.get("user"), str):
            out["user"] = b["user"]
        if status == "completed" or status == "incomplete":
            out["completed_at"] = int(time.time())
        out.update(more)
        return out


def to_response(out: Json, turn: Turn) -> Json:
    """A chat.completion as a `response` object, our `council` beside its fields."""
    choice = (out.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    output: list[Json] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(_reasoning_item(reasoning))
    if isinstance(msg.get("content"), str) and (msg["content"] or not msg.get("tool_calls")):
        output.append(_message_item(msg["content"]))
    output += [_call_item(tc, turn.tools) for tc in msg.get("tool_calls") or ()]
    more: Json = {}
    status = "completed"
    if choice.get("finish_reason") == "length":
        status, more["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    if "council" in out:
        more["council"] = turn.council(out["council"])
    return turn.response(status, output, usage_of(out.get("usage")), **more)


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
    """Engine chunks as the Responses API's semantic events: an output item per reasoning, text and tool
    call, each opened, filled and closed in order; `response.completed` carries the whole response."""

    def __init__(self, turn: Turn, ctx: Context) -> None:
        self.turn = turn
        self.ctx = ctx
        self.seq = 0
        self.output: list[Json] = []
        self.open: Json | None = None
        """The item being streamed: {"kind", "item", "text"|"args", "index"}."""
        self.calls: dict[int, Json] = {}
        self.usage: Json | None = None
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
                done = _call_item({"id": item["call_id"], "function": {"name": item["name"], "arguments": o["args"]}},
                                  self.turn.tools)
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

    def chunk(self, chunk: Json) -> bytes:
        out = b""
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("council"), dict):
            self.council = chunk["council"]
        said = False
        for c in chunk.get("choices") or ():
            if c.get("index", 0) != 0:
                continue
            delta = c.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                said = True
                if self.open is None or self.open["kind"] != "reasoning":
                    item = {"type": "reasoning", "id": new_id("rs"), "summary": []}
                    out += self._begin("reasoning", item, text="")
                    out += self._ev("response.reasoning_summary_part.added", item_id=item["id"],
                                    output_index=self.open["index"], summary_index=0,  # type: ignore[index]
                                    part={"type": "summary_text", "text": ""})
                o = self.open
                assert o is not None
                o["text"] += thought
                out += self._ev("response.reasoning_summary_text.delta", item_id=o["item"]["id"],
                                output_index=o["index"], summary_index=0, delta=thought)
            text = delta.get("content")
            if isinstance(text, str) and text:
                said = True
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
                out += self._ev("response.output_text.delta", item_id=o["item"]["id"], output_index=o["index"],
                                content_index=0, delta=text, logprobs=[])
            for tc in delta.get("tool_calls") or ():
                said = True
                i = int(tc.get("index") or 0)
                fn = tc.get("function") or {}
                if i not in self.calls:
                    item = _call_item({"id": tc.get("id"), "function": {"name": fn.get("name"), "arguments": ""}},
                                      self.turn.tools, status="in_progress")
                    if item["type"] == "custom_tool_call":
                        item["input"] = ""
                    out += self._begin(f"call{i}", item, args="")
                    self.calls[i] = self.open  # type: ignore[assignment]
                o = self.calls[i]
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    if o is not self.open:
                        raise RuntimeError("tool call arguments arrived after another output item began")
                    o["args"] += args
                    if o["item"]["type"] == "function_call":
                        out += self._ev("response.function_call_arguments.delta", item_id=o["item"]["id"],
                                        output_index=o["index"], delta=args)
            if c.get("finish_reason"):
                self.finish = c["finish_reason"]
        if not said and not out and "council" not in chunk and "usage" not in chunk:
            out = b": keep-alive\n\n"  # a council is still deliberating
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
        usage = self.usage or {"prompt_tokens": 0, "completion_tokens": self.content_chunks}
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

    async def prepare(self, body: Json, ctx: Context) -> Json:
        history: list[Json] = []
        prev = body.get("previous_response_id")
        if prev is not None:
            if not isinstance(prev, str):
                raise _bad("Invalid type for 'previous_response_id': expected a string.", "previous_response_id",
                           "invalid_type")
            stored = await ctx.state.store.get_response(prev, ctx.key_id, time.time())
            if stored is None:
                raise _bad(f"Previous response with id '{prev}' not found. It may never have been stored "
                           "(`store: false`), belong to another key, or have expired.", "previous_response_id",
                           "previous_response_not_found")
            history = _decode(stored)["messages"]
        chat, conversation, tools = to_chat(body, history)
        ctx.extra = {"turn": Turn(body, tools), "conversation": conversation}
        return chat

    def answer(self, out: Json, ctx: Context) -> Json:
        return to_response(out, ctx.extra["turn"])

    def writer(self, ctx: Context) -> ResponsesWriter:
        return ResponsesWriter(ctx.extra["turn"], ctx)

    async def finished(self, ctx: Context) -> None:
        """Keep the answer and its conversation for `previous_response_id`, unless the client said `store: false`."""
        final = ctx.final
        if final is None or ctx.body.get("store") is False:
            return
        messages = [*ctx.extra["conversation"], assistant_message(final)]
        ttl = ctx.state.router.cfg.server.responses_ttl_s
        await ctx.state.store.put_response(final["id"], ctx.key_id, time.time() + ttl,
                                           _encode({"messages": messages, "response": final}).decode())


RESPONSES = Responses()

