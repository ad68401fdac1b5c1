"""Answers to identical deterministic requests, kept for a virtual model's `cache-ttl-s`.

Only requests whose answer is meant to repeat are cached: temperature 0 or a seed,
one choice. The key covers everything in the body that can change the answer.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import msgspec
from cachetools import TTLCache

from proxy.auth import Principal

Json = dict[str, Any]
IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store"})
"""Body fields that do not change the answer."""
_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder().decode


def deterministic(body: Json) -> bool:
    if body.get("n") not in (None, 1):
        return False
    return body.get("temperature") == 0 or body.get("seed") is not None


def scope(p: Principal) -> str:
    """Whose answers a cached answer may be served to: the key's own, or its tier's with `shared-cache`
    (one key must not learn what another asked); everyone's while auth is off."""
    if p.key_id is None:
        return ""
    return f"tier:{p.tier_name}" if p.tier is not None and p.tier.shared_cache else f"key:{p.key_id}"


def key(model: str, body: Json, scope: str = "") -> str:
    canon = _encode({**{k: v for k, v in body.items() if k not in IGNORED}, "model": model, "_scope": scope})
    return hashlib.sha256(canon).hexdigest()


class Cache(Protocol):
    async def get(self, k: str) -> Json | None: ...
    async def put(self, k: str, value: Json, ttl_s: float) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, maxsize: int = 4096) -> None:
        self._by_ttl: dict[float, TTLCache[str, bytes]] = {}
        self.maxsize = maxsize

    async def get(self, k: str) -> Json | None:
        for c in self._by_ttl.values():
            raw = c.get(k)
            if raw is not None:
                return _decode(raw)  # type: ignore[no-any-return]
        return None

    async def put(self, k: str, value: Json, ttl_s: float) -> None:
        c = self._by_ttl.get(ttl_s)
        if c is None:
            c = self._by_ttl[ttl_s] = TTLCache(self.maxsize, ttl_s)
        c[k] = _encode(value)

    async def close(self) -> None:
        return None


class RedisCache:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        self.r = redis.from_url(url)
        self.prefix = prefix + "cache:"

    async def get(self, k: str) -> Json | None:
        raw = await self.r.get(self.prefix + k)
        return _decode(raw) if raw else None

    async def put(self, k: str, value: Json, ttl_s: float) -> None:
        await self.r.set(self.prefix + k, _encode(value), px=max(1, int(ttl_s * 1000)))

    async def close(self) -> None:
        await self.r.aclose()


def as_chunks(resp: Json, include_usage: bool) -> list[Json]:
    """A cached chat.completion replayed as a stream: role, content, finish, usage, council."""
    base = {"id": resp["id"], "object": "chat.completion.chunk", "created": resp["created"], "model": resp["model"]}
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    if msg.get("content"):
        out.append({**base, "choices": [{"index": 0, "delta": {"content": msg["content"]}, "finish_reason": None}]})
    for i, tc in enumerate(msg.get("tool_calls") or []):
        out.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{**tc, "index": i}]},
                                         "finish_reason": None}]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}]})
    if include_usage and resp.get("usage"):
        out.append({**base, "choices": [], "usage": resp["usage"]})
    if resp.get("council"):
        out.append({**base, "choices": [], "council": resp["council"]})
    return out


def from_chunks(chunks: list[Json]) -> Json | None:
    """Reassemble a streamed answer so that it can be cached; None when it cannot be (an error, tool calls)."""
    text: list[str] = []
    finish, usage, council, head = None, None, None, None
    for c in chunks:
        if "error" in c:
            return None
        head = head or c
        for ch in c.get("choices") or []:
            d = ch.get("delta") or {}
            if d.get("tool_calls"):
                return None
            if d.get("content"):
                text.append(d["content"])
            finish = ch.get("finish_reason") or finish
        usage = c.get("usage") or usage
        council = c.get("council") or council
    if head is None or finish is None:
        return None
    out: Json = {"id": head["id"], "object": "chat.completion", "created": head["created"], "model": head["model"],
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                              "finish_reason": finish}]}
    if usage:
        out["usage"] = usage
    if council:
        out["council"] = council
    return out
