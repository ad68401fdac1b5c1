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
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from routing.upstream import resp
from routing.upstream.waiters import wake_first

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
    return {1, redis.call('ZCARD', waiters)}
  end
end
if not redis.call('ZSCORE', waiters, token) then redis.call('ZADD', waiters, redis.call('INCR', seq), token) end
redis.call('ZADD', wlease, now + wait, token)
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, lease * 2) end
return {0, redis.call('ZCARD', waiters)}
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
LINGER_S = 0.05
"""How long a freed slot is kept for this replica's next request while no other replica waits."""
CHECK_S = 0.1
"""While slots are reused, how often to ask whether another replica waits (the most it waits extra)."""


class Fleet:
    """This replica's link to the others: its id, how many replicas it sees, and whether Redis answers."""

    def __init__(self, url: str, prefix: str) -> None:
        self.r = resp.Redis(url, timeout_s=1.0)
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
        self.report: Callable[[], dict[str, Any]] | None = None
        """This replica's load per virtual model, published on every heartbeat."""
        self.loads: dict[str, dict[str, Any]] = {}
        """The other live replicas' last published loads: replica id -> model -> {inflight, ms}."""
        self.background: set[asyncio.Task[None]] = set()
        """Frees of idle slots under way (kept: the loop holds tasks weakly)."""

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def failed(self, e: BaseException) -> None:
        """Redis did not answer: keep to local shares from now until a heartbeat gets through."""
        self.last_error = f"{type(e).__name__}: {e}"[:200]
        for pool in self.pools:
            pool.forget_idle()
        if self.online:
            self.online = False
            self.offline_since = time.time()
            log.warning("fleet: Redis unreachable (%s); GPU slots fall back to this replica's share of %d "
                        "replica(s) until it answers", self.last_error, self.replicas)

    async def claim_probes(self, names: list[str], ttl_ms: int) -> tuple[set[str], dict[str, str]]:
        """Which of these this replica probes this round (the first to ask does, for `ttl_ms`), and which
        another replica has found failing (name: why). One round trip."""
        if not names:
            return set(), {}
        self.round_trips += 1
        replies = await self.r.pipeline([*(("SET", self.key("probe", n), self.replica, "NX", "PX", ttl_ms)
                                           for n in names), ("MGET", *(self.key("down", n) for n in names))])
        mine = {n for n, got in zip(names, replies, strict=False) if got}
        downs = replies[len(names)] if names else []
        return mine, {n: _text(d) for n, d in zip(names, downs, strict=True) if d is not None}

    async def share_probes(self, results: dict[str, Any], others: list[str], opened: dict[str, str], ttl_ms: int,
                           open_ms: int) -> dict[str, Any]:
        """Publish this replica's probe results and the breakers it opened; read the others' results. One
        round trip."""
        cmds: list[tuple[resp.Arg, ...]] = [("SET", self.key("health", n), _encode(r), "PX", ttl_ms)
                                             for n, r in results.items()]
        cmds += [("SET", self.key("down", n), why[:300], "PX", open_ms) for n, why in opened.items()]
        if others:
            cmds.append(("MGET", *(self.key("health", n) for n in others)))
        if not cmds:
            return {}
        self.round_trips += 1
        replies = await self.r.pipeline(cmds)
        found = replies[-1] if others else []
        return {n: _decode(raw) for n, raw in zip(others, found, strict=True) if raw is not None}

    async def heartbeat(self, ttl_ms: int) -> None:
        """Say this replica is alive, count the others, and renew the leases it holds."""
        try:
            self.round_trips += 1
            alive = await self.r.script(_ALIVE, [self.key("replicas")], [self.replica, ttl_ms])
            self.replicas = max(1, int(alive))
            for pool in self.pools:
                if pool.held:
                    self.round_trips += 1
                    await self.r.script(_RENEW, [pool.keys[0]], [pool.lease_ms, *pool.held])
            if self.report is not None:
                await self._exchange_loads(ttl_ms, self.report())
        except Exception as e:  # any Redis failure: connection, timeout, a script error
            self.failed(e)
            return
        if not self.online:
            log.warning("fleet: Redis answers again after %.0fs; GPU slots are shared again",
                        time.time() - (self.offline_since or time.time()))
            self.online, self.offline_since, self.last_error = True, None, None

    async def _exchange_loads(self, ttl_ms: int, mine: dict[str, Any]) -> None:
        """Publish this replica's load and read the others' (one round trip). An entry older than three
        heartbeats is a replica that stopped: ignored, and removed."""
        now = time.time()
        key = self.key("load")
        self.round_trips += 1
        _, _, raw = await self.r.pipeline([("HSET", key, self.replica, _encode({"t": now, "models": mine})),
                                           ("PEXPIRE", key, ttl_ms * 10), ("HGETALL", key)])
        loads: dict[str, dict[str, Any]] = {}
        stale = []
        for field, value in zip(raw[::2], raw[1::2], strict=True):
            rid = _text(field)
            entry = _decode(value)
            if rid == self.replica:
                continue
            if now - float(entry.get("t", 0)) > ttl_ms / 1000:
                stale.append(rid)
                continue
            loads[rid] = entry.get("models") or {}
        self.loads = loads
        if stale:
            await self.r.execute("HDEL", key, *stale)

    def elsewhere(self, model: str) -> tuple[int, list[float]]:
        """`model`'s requests in flight and recent latencies on the other replicas, as they last said."""
        if not self.online or not self.loads:
            return 0, []
        inflight, ms = 0, list[float]()
        for models in self.loads.values():
            m = models.get(model)
            if m:
                inflight += int(m.get("inflight", 0))
                ms += m.get("ms") or []
        return inflight, ms

    def interval_s(self) -> float:
        leases = [p.lease_ms for p in self.pools] or [30_000]
        return max(0.2, min(1.0, min(leases) / 3000))

    async def run_forever(self) -> None:
        while True:
            await self.heartbeat(int(self.interval_s() * 3000))
            await asyncio.sleep(self.interval_s())

    async def close(self) -> None:
        """Free what this replica holds at once instead of when its leases run out."""
        await asyncio.gather(*self.background, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                for pool in self.pools:
                    if pool.held:
                        await self.r.execute("ZREM", pool.keys[0], *pool.held)
                await self.r.execute("ZREM", self.key("replicas"), self.replica)
        with contextlib.suppress(Exception):
            await self.r.aclose()


class SharedPool:
    """A GPU's `max-concurrent` held across every replica: the same `slot()` as the in-process `Pool`.

    Taking a slot from Redis and freeing it again are two round trips, about 50 us of CPU each on this
    machine, mostly the kernel's (BENCHMARKS.md, "The fleet"). So a slot this replica frees while no other
    replica waits for the GPU is kept for `LINGER_S` and handed to this replica's next request without
    asking Redis; it is still a leased slot in Redis all along, so max-concurrent holds. Whether another
    replica waits is read from every take and checked at least every `CHECK_S` while slots are reused; once
    one does, slots go back through Redis, in arrival order.
    """

    def __init__(self, name: str, max_concurrent: int | None, fleet: Fleet, lease_s: float = 30.0) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.fleet = fleet
        self.lease_ms = int(lease_s * 1000)
        gpu = "{" + fleet.key("gpu", name) + "}"  # one hash slot, for Redis Cluster
        self.keys = [gpu + ":holders", gpu + ":waiters", gpu + ":waiting", gpu + ":seq"]
        self.held: set[str] = set()
        """Slots this replica holds in Redis: in use, or idle for reuse."""
        self.idle: deque[tuple[str, float]] = deque()
        """Held slots no request uses now, with when they were freed."""
        self.contended = True
        """Whether another replica may be waiting for this GPU; until a take says otherwise, assume so."""
        self.checked = 0.0
        self.inflight = 0
        """Requests this replica runs on the GPU now, by Redis's slots or by its local share."""
        self.waiting = 0
        self._local: deque[asyncio.Future[None]] = deque()
        self._ids = itertools.count()
        self._sweep: asyncio.TimerHandle | None = None
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
        self.waiting += 1
        try:
            token = await self._take()
        finally:
            self.waiting -= 1
        self.inflight += 1
        try:
            yield int((time.perf_counter() - start) * 1000)
        finally:
            self.inflight -= 1
            if token is not None:
                await self._give_back(token)
            self._wake()

    def _reusable(self) -> str | None:
        if not self.idle or self.contended or not self.fleet.online:
            return None
        return self.idle.popleft()[0]

    async def _take(self) -> str | None:
        """Wait for a slot: Redis's while it answers (its token), else this replica's share (None)."""
        limit = self.max_concurrent or 1
        pause = 0.005
        token: str | None = None
        try:
            while True:
                if self.idle and time.monotonic() - self.checked > CHECK_S:
                    await self._check()
                if (reused := self._reusable()) is not None:
                    return reused
                if self.fleet.online:
                    token = token or f"{self.fleet.replica}:{next(self._ids)}"
                    try:
                        self.fleet.round_trips += 1
                        got, waiters = await self.fleet.r.script(_ACQUIRE, self.keys,
                                                                 [token, self.lease_ms, WAITER_TTL_MS, limit])
                    except Exception as e:
                        self.fleet.failed(e)  # which forgets every pool's idle slots
                        continue
                    self._seen(int(waiters))
                    if got:
                        self.held.add(token)
                        return token
                elif self.inflight < self.share():
                    return None
                await self._sleep(pause)
                pause = min(pause * 2, 0.1)
        except asyncio.CancelledError:
            if token is not None:  # the client left while waiting: leave the queue now, not when it expires
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.fleet.r.execute("ZREM", self.keys[1], token))
            raise

    def _seen(self, waiters: int) -> None:
        self.checked = time.monotonic()
        self.contended = waiters > 0
        if self.contended and self.idle:
            self._free_idle(0.0)

    async def _check(self) -> None:
        """Whether anyone waits for this GPU now (one round trip, at most every CHECK_S while reusing)."""
        try:
            self.fleet.round_trips += 1
            self._seen(int(await self.fleet.r.execute("ZCARD", self.keys[1])))
        except Exception as e:
            self.fleet.failed(e)

    async def _give_back(self, token: str) -> None:
        if self.fleet.online and not self.contended and LINGER_S > 0:
            self.idle.append((token, time.monotonic()))
            if self._sweep is None:
                self._sweep = asyncio.get_running_loop().call_later(LINGER_S, self._free_idle, LINGER_S)
            return
        self.held.discard(token)
        await self._free([token])

    def _free_idle(self, older_than: float) -> None:
        """Free idle slots unused for `older_than` seconds; look again later while some are left."""
        self._sweep = None
        now = time.monotonic()
        tokens = []
        while self.idle and now - self.idle[0][1] >= older_than:
            tokens.append(self.idle.popleft()[0])
        if tokens:
            self.held.difference_update(tokens)
            freeing = asyncio.get_running_loop().create_task(self._free(tokens))
            self.fleet.background.add(freeing)
            freeing.add_done_callback(self.fleet.background.discard)
        if self.idle:
            self._sweep = asyncio.get_running_loop().call_later(LINGER_S, self._free_idle, LINGER_S)

    def forget_idle(self) -> None:
        """Redis went away: idle slots are not ours to hand out; their leases run out by themselves."""
        for token, _ in self.idle:
            self.held.discard(token)
        self.idle.clear()

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
        wake_first(self._local)

    async def _free(self, tokens: list[str]) -> None:
        if not self.fleet.online:
            return  # their leases run out by themselves
        try:
            self.fleet.round_trips += 1
            await asyncio.shield(self.fleet.r.execute("ZREM", self.keys[0], *tokens))
        except Exception as e:
            self.fleet.failed(e)
