"""OpenAI response shapes as Shenron sends them, whatever the upstream sent.

llama.cpp's servers and others skip parts of the contract (no role chunk, no
usage chunk, `role: null` in deltas, no `refusal`); these functions put every
response in the published shape, with one `id`/`created`/`model` throughout.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

Json = dict[str, Any]


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def _clean_message(msg: Any) -> Json:
    out: Json = {k: v for k, v in (msg or {}).items() if v is not None} if isinstance(msg, dict) else {}
    out.setdefault("role", "assistant")
    out.setdefault("content", None)
    out.setdefault("refusal", None)
    return out


def completion(upstream: Json, *, id: str, created: int, model: str) -> Json:
    """A chat.completion in the published shape (choices always carry finish_reason and logprobs)."""
    choices = []
    for i, c in enumerate(upstream.get("choices") or ()):
        c = c if isinstance(c, dict) else {}
        choices.append({
            "index": c.get("index", i),
            "message": _clean_message(c.get("message")),
            "logprobs": c.get("logprobs"),
            "finish_reason": c.get("finish_reason") or "stop",
        })
    out: Json = {"id": id, "object": "chat.completion", "created": created, "model": model, "choices": choices}
    if upstream.get("system_fingerprint"):
        out["system_fingerprint"] = upstream["system_fingerprint"]
    usage = upstream.get("usage")
    if isinstance(usage, dict):
        out["usage"] = usage_of(usage)
    return out


def usage_of(usage: Json) -> Json:
    p = int(usage.get("prompt_tokens") or 0)
    c = int(usage.get("completion_tokens") or 0)
    out = {**usage, "prompt_tokens": p, "completion_tokens": c, "total_tokens": int(usage.get("total_tokens") or p + c)}
    return {k: v for k, v in out.items() if v is not None}


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for servers that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def prompt_text(body: Json) -> str:
    parts: list[str] = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def last_user_text(body: Json) -> str:
    """The text of the last user message: the question a vote's claims are read against."""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class ChunkShaper:
    """Turns upstream chunks into a stream that honours OpenAI's contract.

    Role chunk first, one id/created/model, a finish chunk per choice, and usage held
    back for one `choices: []` chunk at the end (only when the client asked for it).
    """

    def __init__(self, *, id: str, created: int, model: str) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.role_sent = False
        self.finished: set[int] = set()
        self.started: set[int] = set()
        self.usage: Json | None = None
        self.content_chunks = 0

    def _chunk(self, choices: list[Json]) -> Json:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": choices}

    def role(self) -> Json:
        self.role_sent = True
        self.started.add(0)
        return self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}])

    def heartbeat(self) -> Json:
        """An empty-content delta: every common client renders nothing for it."""
        return self._chunk([{"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": None}])

    def shape(self, upstream: Json) -> list[Json]:
        """The chunks to send for one upstream chunk (possibly none, possibly a role chunk first)."""
        if isinstance(upstream.get("usage"), dict):
            self.usage = usage_of(upstream["usage"])
        out: list[Json] = []
        choices = []
        for c in upstream.get("choices") or ():
            if not isinstance(c, dict):
                continue
            index = int(c.get("index") or 0)
            delta = {k: v for k, v in (c.get("delta") or {}).items() if v is not None}
            if index in self.finished:
                continue
            if not self.role_sent and index == 0 and "role" not in delta:
                out.append(self.role())
            if index == 0:
                self.role_sent = True
            if index not in self.started:
                self.started.add(index)
                delta.setdefault("role", "assistant")
            else:
                delta.pop("role", None)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.content_chunks += 1
            reason = c.get("finish_reason")
            if reason:
                self.finished.add(index)
            choices.append({"index": index, "delta": delta, "logprobs": c.get("logprobs"),
                            "finish_reason": reason or None})
        if choices:
            out.append(self._chunk(choices))
        return out

    def close(self) -> list[Json]:
        """Finish chunks for choices the upstream left open."""
        if not self.role_sent:
            return [self.role(), self.finish(0)]
        open_ = sorted(self.started - self.finished) if self.started else ([0] if 0 not in self.finished else [])
        return [self.finish(i) for i in open_]

    def finish(self, index: int, reason: str = "stop") -> Json:
        self.finished.add(index)
        return self._chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}])

    def usage_chunk(self, usage: Json) -> Json:
        return {**self._chunk([]), "usage": usage}

    def extension_chunk(self, key: str, value: Json) -> Json:
        return {**self._chunk([]), key: value}

    def measured_usage(self, body: Json) -> tuple[Json, bool]:
        """The upstream's usage, or an estimate (and True) when it reported none."""
        if self.usage:
            return self.usage, False
        p = estimate_tokens(prompt_text(body))
        c = self.content_chunks
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}, True


PIECE = 48
"""Characters per content chunk when a whole answer is replayed as a stream."""


def answer_chunks(shaper: ChunkShaper, message: Json, finish: str = "stop") -> list[Json]:
    """A whole assistant message as stream chunks, then its finish: text in pieces, or each tool call
    with index, id and name first and its arguments after (as OpenAI streams them)."""
    out: list[Json] = []
    tool_calls = message.get("tool_calls") or ()
    if tool_calls:
        for i, tc in enumerate(tool_calls):
            fn = tc.get("function") or {}
            head = {"index": i, "id": tc.get("id") or f"call_{i}", "type": "function",
                    "function": {"name": fn.get("name"), "arguments": ""}}
            for delta in ({"tool_calls": [head]},
                          {"tool_calls": [{"index": i, "function": {"arguments": fn.get("arguments") or ""}}]}):
                out += shaper.shape({"choices": [{"index": 0, "delta": delta}]})
        out.append(shaper.finish(0, "tool_calls"))
        return out
    text = message.get("content") or ""
    for start in range(0, len(text), PIECE):
        out += shaper.shape({"choices": [{"index": 0, "delta": {"content": text[start:start + PIECE]}}]})
    out.append(shaper.finish(0, finish))
    return out
