"""Answers to identical deterministic requests, kept for a virtual model's `cache-ttl-s`.

Only requests whose answer is meant to repeat are cached: temperature 0 or a seed,
one choice. The key covers everything in the body that can change the answer.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import msgspec
from cachetools import TTLCache

from proxy.auth import Principal
from proxy.limits import REDIS_DOWN, Blink
from routing.core import Collector, Event, Reply, Result
from routing.request import Request

IGNORED = frozenset({"user", "metadata", "store"})
"""The client's fields that do not change the answer (how it is delivered is not in the request at all)."""
_encode = msgspec.json.Encoder(order="sorted").encode
_result = msgspec.json.Decoder(Result).decode
_encode_result = msgspec.json.Encoder().encode


def deterministic(req: Request) -> bool:
    if req.n not in (None, 1):
        return False
    return req.temperature == 0 or req.seed is not None


def scope(p: Principal) -> str:
    """Whose answers a cached answer may be served to: the key's own, or its tier's with `shared-cache`
    (one key must not learn what another asked); everyone's while auth is off."""
    if p.key_id is None:
        return ""
    return f"tier:{p.tier_name}" if p.tier is not None and p.tier.shared_cache else f"key:{p.key_id}"


def key(model: str, req: Request, scope: str = "") -> str:
    kept = msgspec.structs.replace(req, extra={k: v for k, v in req.extra.items() if k not in IGNORED}, session=None)
    return hashlib.sha256(_encode({"request": kept, "model": model, "_scope": scope})).hexdigest()


class Cache(Protocol):
    async def get(self, k: str) -> Result | None: ...
    async def put(self, k: str, value: Result, ttl_s: float) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, maxsize: int = 4096) -> None:
        self._by_ttl: dict[float, TTLCache[str, bytes]] = {}
        self.maxsize = maxsize

    async def get(self, k: str) -> Result | None:
        for c in self._by_ttl.values():
            raw = c.get(k)
            if raw is not None:
                return loaded(raw)
        return None

    async def put(self, k: str, value: Result, ttl_s: float) -> None:
        c = self._by_ttl.get(ttl_s)
        if c is None:
            c = self._by_ttl[ttl_s] = TTLCache(self.maxsize, ttl_s)
        c[k] = _encode_result(value)

    async def close(self) -> None:
        return None


class RedisCache:
    """Answers kept in Redis, for every replica."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        self.r = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.prefix = prefix + "cache:"
        self.down = Blink("cached answers (every lookup a miss)")

    async def get(self, k: str) -> Result | None:
        """A miss while Redis does not answer: the request is served, not failed."""
        if self.down.skipping():
            return None
        try:
            raw = await self.r.get(self.prefix + k)
        except REDIS_DOWN as e:
            self.down.failed(e)
            return None
        self.down.answered()
        return loaded(raw) if raw else None

    async def put(self, k: str, value: Result, ttl_s: float) -> None:
        if self.down.skipping():
            return
        try:
            await self.r.set(self.prefix + k, _encode_result(value), px=max(1, int(ttl_s * 1000)))
        except REDIS_DOWN as e:
            self.down.failed(e)

    async def close(self) -> None:
        await self.r.aclose()


def loaded(raw: bytes | str) -> Result | None:
    """A kept answer, or None when it cannot be read as one (kept by an older version, say): a miss."""
    try:
        return _result(raw)
    except msgspec.ValidationError:
        return None


def kept(events: list[Event]) -> Result | None:
    """A streamed answer reassembled so that it can be kept; None when it cannot be (no report, tool calls)."""
    c = Collector()
    for e in events:
        c.add(e)
    answers = c.answers()
    if c.report is None or any(a.tool_calls for a in answers) or not c.finish:
        return None
    return Result(Reply(answers, c.usage), c.report)
