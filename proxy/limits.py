"""Per-key limits: requests per minute, tokens per day, cloud USD per month.

Windows are calendar windows in UTC (this minute, today, this month), so every replica
agrees on them and `retry-after` is simply the time to the next one. The decisions are
pure functions; the counters live in memory (one process) or in Redis (every replica).
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from routing.settings import TierConfig

log = logging.getLogger("shenron")


class Windows(msgspec.Struct, frozen=True):
    """The windows a moment falls in (a struct: made twice a keyed request, in C)."""

    minute: int
    day: str
    month: str
    to_minute: float
    to_day: float
    to_month: float
    day_start: float
    month_start: float

    @classmethod
    def at(cls, now: float) -> Windows:
        day_start = int(now // 86400) * 86400  # Unix time has no leap seconds: a UTC day is 86,400 of them
        cal = _calendar[0]
        if cal[0] != day_start:  # a new day: its names and its month's bounds, worked out once a day
            t = time.gmtime(day_start)
            cal = _calendar[0] = (day_start, time.strftime("%Y%m%d", t), time.strftime("%Y%m", t),
                                  calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)),
                                  calendar.timegm((t.tm_year + t.tm_mon // 12, t.tm_mon % 12 + 1, 1, 0, 0, 0)))
        minute = int(now // 60)
        return cls(minute, cal[1], cal[2], (minute + 1) * 60 - now, day_start + 86400 - now, cal[4] - now,
                   day_start, cal[3])


_calendar: list[tuple[int, str, str, int, int]] = [(-1, "", "", 0, 0)]
"""The last day `Windows.at` was asked about: its start, its and its month's names, the month's start and the next
month's (a keyed request asks twice; `calendar.timegm` and `strftime` cost 300 Python opcodes a time)."""


@dataclass(frozen=True, slots=True)
class Denied:
    limit: str
    message: str
    retry_after: int


def decide(tier_name: str, tier: TierConfig, w: Windows, requests_this_minute: int, tokens_today: int,
           cloud_usd_this_month: float) -> Denied | None:
    """Whether a key over its tier's limits must wait; `requests_this_minute` includes this request."""
    rpm = tier.requests_per_minute
    if rpm is not None and requests_this_minute > rpm:
        return Denied("requests-per-minute", f"Rate limit reached: tier {tier_name!r} allows {rpm} requests per "
                      f"minute.", max(1, math.ceil(w.to_minute)))
    tpd = tier.tokens_per_day
    if tpd is not None and tokens_today >= tpd:
        return Denied("tokens-per-day", f"Token limit reached: tier {tier_name!r} allows {tpd} tokens per day "
                      f"(UTC); {tokens_today} used.", max(1, math.ceil(w.to_day)))
    budget = tier.cloud_budget_usd_per_month
    if budget is not None and budget > 0 and cloud_usd_this_month >= budget:
        return Denied("cloud-budget-usd-per-month", f"Cloud budget reached: tier {tier_name!r} allows "
                      f"${budget:g} of cloud spend per month; ${cloud_usd_this_month:.4f} spent.",
                      max(1, math.ceil(w.to_month)))
    return None


Seed = Callable[[str, float], Awaitable[tuple[int, float, float]]]
"""The ledger's (tokens, local USD, cloud USD) for a key since a time: what a counter starts from."""


class Counters(Protocol):
    async def hit(self, key_id: str, w: Windows) -> tuple[int, int, float]:
        """Count one request; return requests this minute, tokens today, cloud USD this month."""
        ...

    async def add(self, key_id: str, w: Windows, tokens: int, cloud_usd: float) -> None: ...

    async def close(self) -> None: ...


class Blink:
    """Whether a Redis that stopped answering is being left alone (for `retry_s`), and saying so once."""

    def __init__(self, what: str, retry_s: float = 1.0) -> None:
        self.what = what
        self.retry_s = retry_s
        self.since: float | None = None
        self._retry_at = 0.0

    def skipping(self) -> bool:
        return self.since is not None and time.monotonic() < self._retry_at

    def failed(self, e: BaseException) -> None:
        self._retry_at = time.monotonic() + self.retry_s
        if self.since is None:
            self.since = time.time()
            log.warning("Redis unreachable (%s: %s): %s are counted in this process until it answers",
                        type(e).__name__, e, self.what)

    def answered(self) -> None:
        if self.since is not None:
            log.warning("Redis answers again after %.0fs: %s are shared again", time.time() - self.since, self.what)
            self.since = None


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis
    except ImportError:
        return (OSError, TimeoutError)
    return (redis.RedisError, OSError, TimeoutError)


REDIS_DOWN = _redis_errors()
"""What a Redis that went away raises through redis-py."""


class MemoryCounters:
    """One process's counters; tokens and spend start from the ledger, so a restart forgets nothing."""

    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.requests: dict[tuple[str, int], int] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.spend: dict[tuple[str, str], float] = {}

    async def _seeded(self, key_id: str, w: Windows) -> None:
        if (key_id, w.day) not in self.tokens:
            tokens, _, _ = await self.seed(key_id, w.day_start)
            self.tokens.setdefault((key_id, w.day), tokens)
        if (key_id, w.month) not in self.spend:
            _, _, cloud = await self.seed(key_id, w.month_start)
            self.spend.setdefault((key_id, w.month), cloud)

    async def hit(self, key_id: str, w: Windows) -> tuple[int, int, float]:
        await self._seeded(key_id, w)
        k = (key_id, w.minute)
        n = self.requests[k] = self.requests.get(k, 0) + 1
        if len(self.requests) > 10_000:  # forget finished minutes
            self.requests = {x: c for x, c in self.requests.items() if x[1] >= w.minute}
        return n, self.tokens[(key_id, w.day)], self.spend[(key_id, w.month)]

    async def add(self, key_id: str, w: Windows, tokens: int, cloud_usd: float) -> None:
        await self._seeded(key_id, w)
        self.tokens[(key_id, w.day)] += tokens
        self.spend[(key_id, w.month)] += cloud_usd

    async def close(self) -> None:
        return None


class RedisCounters:
    """Counters in Redis: every replica pointing at one Redis enforces one limit. While Redis does not answer,
    this replica counts on its own (tokens and spend from the ledger, as MemoryCounters), asks Redis again a
    second later, and says so once each way: no request fails because Redis blinked."""

    def __init__(self, url: str, prefix: str, seed: Seed) -> None:
        import redis.asyncio as redis

        self.r = redis.from_url(url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.prefix = prefix
        self.seed = seed
        self.local = MemoryCounters(seed)
        self.down = Blink("rate limits and spend counters")

    def _keys(self, key_id: str, w: Windows) -> tuple[str, str, str]:
        p = self.prefix
        return f"{p}rpm:{key_id}:{w.minute}", f"{p}tok:{key_id}:{w.day}", f"{p}usd:{key_id}:{w.month}"

    async def _seeded(self, tok: str, usd: str, key_id: str, w: Windows) -> None:
        """Redis may have restarted empty: start today's and this month's counters from the ledger."""
        if await self.r.exists(tok, usd) == 2:
            return
        tokens, _, _ = await self.seed(key_id, w.day_start)
        _, _, cloud = await self.seed(key_id, w.month_start)
        async with self.r.pipeline(transaction=True) as p:
            p.set(tok, tokens, nx=True, ex=int(w.to_day) + 3600)
            p.set(usd, repr(cloud), nx=True, ex=int(w.to_month) + 3600)
            await p.execute()

    async def hit(self, key_id: str, w: Windows) -> tuple[int, int, float]:
        if self.down.skipping():
            return await self.local.hit(key_id, w)
        rpm, tok, usd = self._keys(key_id, w)
        try:
            await self._seeded(tok, usd, key_id, w)
            async with self.r.pipeline(transaction=True) as p:
                p.incr(rpm)
                p.expire(rpm, 120)
                p.get(tok)
                p.get(usd)
                n, _, tokens, cloud = await p.execute()
        except REDIS_DOWN as e:
            self.down.failed(e)
            return await self.local.hit(key_id, w)
        self.down.answered()
        return int(n), int(tokens or 0), float(cloud or 0.0)

    async def add(self, key_id: str, w: Windows, tokens: int, cloud_usd: float) -> None:
        await self.local.add(key_id, w, tokens, cloud_usd)  # kept here too, for when Redis is away
        if self.down.skipping():
            return
        _, tok, usd = self._keys(key_id, w)
        try:
            await self._seeded(tok, usd, key_id, w)
            async with self.r.pipeline(transaction=True) as p:
                p.incrby(tok, tokens)
                p.incrbyfloat(usd, cloud_usd)
                await p.execute()
        except REDIS_DOWN as e:
            self.down.failed(e)

    async def close(self) -> None:
        await self.r.aclose()
