"""What the replicas of one deployment agree on, through Redis: GPU slots as leased semaphores, and who
is alive.

With `[store] redis-url` set, `[gpus.X] max-concurrent` holds across every replica: a slot is a member of
a sorted set scored by its lease's expiry, taken and freed by a Lua script that reads Redis's own clock
(no replica's clock matters). Waiters queue in arrival order in a second set; a replica that dies frees
its slots when their leases run out (`[gpus.X] lease-s`) and its waiters sooner. While Redis does not
answer, each replica keeps to its share of each GPU (max-concurrent over the replicas it last saw), says
so, and goes back to Redis when it answers again: no request fails because Redis blinked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec

log = logging.getLogger("shenron")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

_ACQUIRE = """
local holders, waiters, wlease, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, lease, wait, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
for _, w in ipairs(redis.call('ZRANGEBYSCORE', wlease, '-inf', now)) do redis.call('ZREM', waiters, w) end
redis.call('ZREMRANGEBYSCORE', wlease, '-inf', now)
local free = limit - redis.call('ZCARD', holders)
if free > 0 then
  local rank = redis.call('ZRANK', waiters, token)
  if not rank then rank = redis.call('ZCARD', waiters) end
  if rank < free then
    redis.call('ZREM', waiters, token)
    redis.call('ZREM', wlease, token)
    redis.call('ZADD', holders, now + lease, token)
    redis.call('PEXPIRE', holders, lease * 2)
    return 1
  end
end
if not redis.call('ZSCORE', waiters, token) then redis.call('ZADD', waiters, redis.call('INCR', seq), token) end
redis.call('ZADD', wlease, now + wait, token)
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, lease * 2) end
return 0
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
"""

_ALIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

WAITER_TTL_MS = 2000
"""A waiter that stops asking (its replica died) leaves the queue after this long."""


class Fleet:
    """This replica's link to the others: its id, how many replicas it sees, and whether Redis answers."""

    def __init__(self, url: str, prefix: str, client: Any = None) -> None:
        import redis.asyncio as redis

        self.r = client if client is not None else redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.prefix = prefix
        self.replica = uuid.uuid4().hex[:12]
        self.online = True
        self.replicas = 1
        """Replicas alive at the last heartbeat, this one included: the fallback shares slots by it."""
        self.offline_since: float | None = None
        self.last_error: str | None = None
        self.round_trips = 0
        """Redis calls made for slots and heartbeats, for the benchmark and /metrics."""
        self.pools: list[SharedPool] = []
        self._acquire = self.r.register_script(_ACQUIRE)
        self._renew = self.r.register_script(_RENEW)
        self._alive = self.r.register_script(_ALIVE)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def failed(self, e: BaseException) -> None:
        """Redis did not answer: keep to local shares from now until a heartbeat gets through."""
        self.last_error = f"{type(e).__name__}: {e}"[:200]
        if self.online:
            self.online = False
            self.offline_since = time.time()
            log.warning("fleet: Redis unreachable (%s); GPU slots fall back to this replica's share of %d "
                        "replica(s) until it answers", self.last_error, self.replicas)

    async def claim_probes(self, names: list[str], ttl_ms: int) -> tuple[set[str], dict[str, str]]:
        """Which of these this replica probes this round (the first to ask does, for `ttl_ms`), and which
        another replica has found failing (name: why). One round trip."""
        self.round_trips += 1
        async with self.r.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.set(self.key("probe", n), self.replica, nx=True, px=ttl_ms)
            if names:
                pipe.mget([self.key("down", n) for n in names])
            replies = await pipe.execute()
        mine = {n for n, got in zip(names, replies, strict=False) if got}
        downs = replies[len(names)] if names else []
        return mine, {n: _text(d) for n, d in zip(names, downs, strict=True) if d is not None}

    async def share_probes(self, results: dict[str, Any], others: list[str], opened: dict[str, str], ttl_ms: int,
                           open_ms: int) -> dict[str, Any]:
        """Publish this replica's probe results and the breakers it opened; read the others' results. One
        round trip."""
        self.round_trips += 1
        async with self.r.pipeline(transaction=False) as pipe:
            for n, r in results.items():
                pipe.set(self.key("health", n), _encode(r), px=ttl_ms)
            for n, why in opened.items():
                pipe.set(self.key("down", n), why[:300], px=open_ms)
            if others:
                pipe.mget([self.key("health", n) for n in others])
            replies = await pipe.execute()
        found = replies[-1] if others else []
        return {n: _decode(raw) for n, raw in zip(others, found, strict=True) if raw is not None}

    async def heartbeat(self, ttl_ms: int) -> None:
        """Say this replica is alive, count the others, and renew the leases it holds."""
        try:
            self.round_trips += 1
            self.replicas = max(1, int(await self._alive(keys=[self.key("replicas")], args=[self.replica, ttl_ms])))
            for pool in self.pools:
                if pool.held:
                    self.round_trips += 1
                    await self._renew(keys=[pool.keys[0]], args=[pool.lease_ms, *pool.held])
        except Exception as e:  # any Redis failure: connection, timeout, a script error
            self.failed(e)
            return
        if not self.online:
            log.warning("fleet: Redis answers again after %.0fs; GPU slots are shared again",
                        time.time() - (self.offline_since or time.time()))
            self.online, self.offline_since, self.last_error = True, None, None

    def interval_s(self) -> float:
        leases = [p.lease_ms for p in self.pools] or [30_000]
        return max(0.2, min(1.0, min(leases) / 3000))

    async def run_forever(self) -> None:
        while True:
            await self.heartbeat(int(self.interval_s() * 3000))
            await asyncio.sleep(self.interval_s())

    async def close(self) -> None:
        """Free what this replica holds at once instead of when its leases run out."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                for pool in self.pools:
                    if pool.held:
                        await self.r.zrem(pool.keys[0], *pool.held)
                await self.r.zrem(self.key("replicas"), self.replica)
        with contextlib.suppress(Exception):
            await self.r.aclose()


class SharedPool:
    """A GPU's `max-concurrent` held across every replica: the same `slot()` as the in-process `Pool`."""

    def __init__(self, name: str, max_concurrent: int | None, fleet: Fleet, lease_s: float = 30.0) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.fleet = fleet
        self.lease_ms = int(lease_s * 1000)
        gpu = "{" + fleet.key("gpu", name) + "}"  # one hash slot, for Redis Cluster
        self.keys = [gpu + ":holders", gpu + ":waiters", gpu + ":waiting", gpu + ":seq"]
        self.held: set[str] = set()
        self.inflight = 0
        """Requests this replica runs on the GPU now, by Redis's slots or by its local share."""
        self.waiting = 0
        self._local: deque[asyncio.Future[None]] = deque()
        self._ids = itertools.count()
        fleet.pools.append(self)

    @property
    def queued(self) -> int:
        return self.waiting

    def share(self) -> int:
        """This replica's slots while Redis does not answer."""
        return max(1, (self.max_concurrent or 1) // max(1, self.fleet.replicas))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold a slot; yields the milliseconds spent waiting for it."""
        if self.max_concurrent is None:
            yield 0
            return
        start = time.perf_counter()
        token = f"{self.fleet.replica}:{next(self._ids)}"
        self.waiting += 1
        try:
            shared = await self._take(token)
        finally:
            self.waiting -= 1
        self.inflight += 1
        try:
            yield int((time.perf_counter() - start) * 1000)
        finally:
            self.inflight -= 1
            if shared:
                self.held.discard(token)
                await self._free(token)
            self._wake()

    async def _take(self, token: str) -> bool:
        """Wait for a slot: Redis's while it answers (True), else this replica's share (False)."""
        limit = self.max_concurrent or 1
        pause = 0.005
        queued = False
        try:
            while True:
                if self.fleet.online:
                    try:
                        self.fleet.round_trips += 1
                        got = await self.fleet._acquire(keys=self.keys,
                                                        args=[token, self.lease_ms, WAITER_TTL_MS, limit])
                    except Exception as e:
                        self.fleet.failed(e)
                        continue
                    queued = True
                    if got:
                        self.held.add(token)
                        return True
                elif self.inflight < self.share():
                    return False
                await self._sleep(pause)
                pause = min(pause * 2, 0.1)
        except asyncio.CancelledError:
            if queued:  # the client left while waiting: leave the queue now, not when the entry expires
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.fleet.r.zrem(self.keys[1], token))
            raise

    async def _sleep(self, seconds: float) -> None:
        """Until a slot of this replica's is freed, or `seconds`: others' frees are seen by asking again."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._local.append(fut)
        try:
            await asyncio.wait((fut,), timeout=seconds)
        finally:
            with contextlib.suppress(ValueError):
                self._local.remove(fut)

    def _wake(self) -> None:
        while self._local:
            fut = self._local.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def _free(self, token: str) -> None:
        if not self.fleet.online:
            return  # its lease runs out by itself
        try:
            self.fleet.round_trips += 1
            await asyncio.shield(self.fleet.r.zrem(self.keys[0], token))
        except Exception as e:
            self.fleet.failed(e)
