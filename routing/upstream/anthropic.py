"""`kind = "anthropic"`: OpenAI chat in, Anthropic's Messages API out, and the answer back as OpenAI's.

The translation both ways is pure (`to_messages`, `to_completion`, `StreamTranslator`);
`AnthropicBackend` only changes the URL, the headers and which translation runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from routing.config import BackendConfig
from routing.core import Reply
from routing.errors import MemberFailure
from routing.request import Json, Request
from routing.upstream import answers
from routing.upstream.backends import OpenAIBackend

VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires max_tokens; OpenAI clients often leave it out."""
STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
        "refusal": "content_filter", "pause_turn": "stop"}

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image(url: str) -> Json:
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": head, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[Json] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = part.get("image_url")
            out.append(_image(url.get("url", "") if isinstance(url, dict) else str(url)))
    return out


def _arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = _decode(raw or "{}")
    except msgspec.DecodeError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _tool_choice(choice: Any) -> Json | None:
    if choice in ("auto", None):
        return {"type": "auto"} if choice else None
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"type": "tool", "name": name} if name else None
    return None


def to_messages(body: Json, model: str) -> Json:
    """An OpenAI chat body as an Anthropic Messages body: system apart, roles alternating, max_tokens set."""
    system: list[str] = []
    turns: list[Json] = []

    def add(role: str, blocks: list[Json]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:  # Anthropic wants user and assistant to alternate
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for m in body.get("messages") or []:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text(m.get("content")))
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") or {}
                blocks.append({"type": "tool_use", "id": tc.get("id"), "name": fn.get("name"),
                               "input": _arguments(fn.get("arguments"))})
            add("assistant", blocks)
        elif role in ("tool", "function"):
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id") or m.get("name"),
                          "content": _text(m.get("content"))}])
        else:
            add("user", _blocks(m.get("content")))
    out: Json = {"model": model, "messages": turns,
                 "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    if body.get("temperature") is not None:
        out["temperature"] = min(1.0, float(body["temperature"]))  # Anthropic's range is 0..1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = [{"name": (t.get("function") or {}).get("name"),
                         "description": (t.get("function") or {}).get("description", ""),
                         "input_schema": (t.get("function") or {}).get("parameters") or {"type": "object"}}
                        for t in body["tools"] if isinstance(t, dict)]
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    return out


def _usage(u: Json | None) -> Json | None:
    if not isinstance(u, dict):
        return None
    p, c = u.get("input_tokens") or 0, u.get("output_tokens") or 0
    read, written = u.get("cache_read_input_tokens") or 0, u.get("cache_creation_input_tokens") or 0
    out: Json = {"prompt_tokens": p + read + written, "completion_tokens": c, "total_tokens": p + read + written + c}
    if read or written:  # Anthropic counts them apart from input_tokens; OpenAI's prompt_tokens include them
        out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
    return out


def to_completion(resp: Json) -> Json:
    """An Anthropic message as an OpenAI chat.completion."""
    text, tool_calls, reasoning = [], [], []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function",
                               "function": {"name": block.get("name"),
                                            "arguments": _encode(block.get("input") or {}).decode()}})
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
    msg: Json = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if reasoning:
        msg["reasoning_content"] = "".join(reasoning)
    out: Json = {"id": resp.get("id", ""), "object": "chat.completion", "model": resp.get("model", ""),
                 "choices": [{"index": 0, "message": msg,
                              "finish_reason": STOP.get(resp.get("stop_reason") or "", "stop")}]}
    usage = _usage(resp.get("usage"))
    if usage:
        out["usage"] = usage
    return out


class StreamTranslator:
    """Anthropic stream events to OpenAI chunks, for one stream."""

    def __init__(self, member: str) -> None:
        self.member = member
        self.prompt_tokens = 0
        self.tools: dict[int, int] = {}
        """Anthropic content-block index -> OpenAI tool_calls index."""

    @staticmethod
    def _delta(delta: Json, finish: str | None = None) -> Json:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def __call__(self, event: Json) -> list[Json] | None:
        kind = event.get("type")
        if kind == "message_start":
            self.prompt_tokens = ((event.get("message") or {}).get("usage") or {}).get("input_tokens") or 0
            return [self._delta({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []
            i = self.tools[event.get("index", 0)] = len(self.tools)
            return [self._delta({"tool_calls": [{"index": i, "id": block.get("id"), "type": "function",
                                                 "function": {"name": block.get("name"), "arguments": ""}}]})]
        if kind == "content_block_delta":
            d = event.get("delta") or {}
            if d.get("type") == "text_delta":
                return [self._delta({"content": d.get("text", "")})]
            if d.get("type") == "thinking_delta":
                return [self._delta({"reasoning_content": d.get("thinking", "")})]
            if d.get("type") == "input_json_delta":
                args = {"arguments": d.get("partial_json", "")}
                return [self._delta({"tool_calls": [{"index": self.tools.get(event.get("index", 0), 0),
                                                     "function": args}]})]
            return []
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            out = self._delta({}, STOP.get(reason or "", "stop"))
            completion = (event.get("usage") or {}).get("output_tokens") or 0
            out["usage"] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                            "total_tokens": self.prompt_tokens + completion}
            return [out]
        if kind == "message_stop":
            return None
        if kind == "error":
            err = event.get("error") or {}
            raise MemberFailure(self.member, f"error in stream: {err.get('type', 'error')}: {err.get('message', '')}")
        return []  # ping, content_block_stop, and events added later


class AnthropicBackend(OpenAIBackend):
    """Anthropic's Messages API (`url` like https://api.anthropic.com/v1, `api-key-env` for x-api-key)."""

    def __init__(self, name: str, cfg: BackendConfig, client: httpx.AsyncClient) -> None:
        super().__init__(name, cfg, client)
        base = cfg.url.rstrip("/")
        root = base if base.endswith("/v1") else base + "/v1"  # the URL works with or without /v1
        self.chat_url, self.models_url = root + "/messages", root + "/models"
        self.headers.pop("authorization", None)
        self.headers.setdefault("anthropic-version", VERSION)
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            self.headers["x-api-key"] = key

    forwards: frozenset[str] = frozenset({"/messages", "/messages/count_tokens"})
    """A Messages request goes to Anthropic as it is (no embeddings, no legacy completions there)."""

    def _forward_url(self, path: str) -> str:
        return self.chat_url.removesuffix("/messages") + path

    def _body(self, req: Request, stream: bool, model: str | None) -> tuple[bytes, dict[str, str] | None]:
        upstream = to_messages(req.chat(), model or self.model)
        upstream["stream"] = stream
        return _encode(upstream), self._betas(req.betas)

    def _betas(self, betas: tuple[str, ...]) -> dict[str, str] | None:
        """The client's anthropic-beta features merged after this backend's own, each once."""
        if not betas:
            return None
        own = [b.strip() for b in self.headers.get("anthropic-beta", "").split(",") if b.strip()]
        return {"anthropic-beta": ",".join(dict.fromkeys([*own, *betas]))}

    def _headers_with(self, betas: tuple[str, ...]) -> dict[str, str]:
        return {**self.headers, **(self._betas(betas) or {})}

    def _answer(self, content: bytes) -> Reply:
        result = _decode(content)
        if not isinstance(result, dict) or result.get("type") != "message":
            raise MemberFailure(self.name, "malformed response: not an Anthropic message")
        try:
            return answers.reply(self.name, to_completion(result))
        except (AttributeError, TypeError, ValueError) as e:  # a block or usage of the wrong shape
            raise MemberFailure(self.name, f"malformed response: {e}") from e

    relays = False
    """Its events are Anthropic's: every chunk is translated."""

    def _events(self) -> Callable[[Json], list[Json] | None]:
        translate = StreamTranslator(self.name)

        def checked(event: Json) -> list[Json] | None:
            try:
                return translate(event)
            except (AttributeError, TypeError, ValueError) as e:
                raise MemberFailure(self.name, f"malformed stream event: {e}") from e

        return checked
