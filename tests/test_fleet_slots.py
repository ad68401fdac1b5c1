"""GPU slots held across replicas, in process against Redis: max-concurrent across 2 and 4 replicas, arrival
order, leases of a dead replica, a client that leaves the queue, a Redis that blinks, and a busy replica that
reuses its slots yet lets another in."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from routing.upstream.fleet import Fleet, SharedPool
from tests.services import own_redis, redis_prefix, redis_url, wait_port  # noqa: F401

pytestmark = pytest.mark.integration


class Gpu:
    """Counts what is running on it at once, as a GPU's memory would."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    @contextlib.asynccontextmanager
    async def busy(self, pool: SharedPool, seconds: float) -> AsyncIterator[int]:
        async with pool.slot() as waited:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(seconds)
                yield waited
            finally:
                self.now -= 1


async def _replicas(url: str, prefix: str, n: int, max_concurrent: int, lease_s: float = 30) -> list[SharedPool]:
    pools = []
    for _ in range(n):
        fleet = Fleet(url, prefix)
        pools.append(SharedPool("gpu0", max_concurrent, fleet, lease_s))
    for _ in range(2):  # the second round counts every replica the first one registered
        for p in pools:
            await p.fleet.heartbeat(10_000)
    return pools


async def _close(pools: list[SharedPool]) -> None:
    for p in pools:
        await p.fleet.close()


async def test_max_concurrent_holds_across_replicas(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    for n in (2, 4):
        pools = await _replicas(redis_url, f"{redis_prefix}{n}:", n, max_concurrent=2)
        gpu = Gpu()

        async def one(pool: SharedPool, gpu: Gpu = gpu) -> None:
            async with gpu.busy(pool, 0.05):
                pass

        try:
            await asyncio.wait_for(asyncio.gather(*(one(pools[i % n]) for i in range(12))), 30)
        finally:
            await _close(pools)
        assert gpu.peak == 2, f"{n} replicas put {gpu.peak} requests at once on a GPU of max-concurrent 2"
        assert pools[0].fleet.replicas == n


async def test_waiters_are_served_in_arrival_order_across_replicas(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    a, b = await _replicas(redis_url, redis_prefix, 2, max_concurrent=1)
    order: list[int] = []
    try:
        async with a.slot():
            async def wait(pool: SharedPool, i: int) -> None:
                async with pool.slot():
                    order.append(i)

            tasks = []
            for i in range(6):
                tasks.append(asyncio.create_task(wait((a, b)[i % 2], i)))
                await asyncio.sleep(0.03)  # each has queued before the next arrives
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    finally:
        await _close([a, b])
    assert order == list(range(6))


async def test_a_dead_replicas_slots_come_back_when_its_leases_run_out(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    dead, alive = await _replicas(redis_url, redis_prefix, 2, max_concurrent=2, lease_s=1.0)
    held = [dead.slot(), dead.slot()]
    for h in held:
        await h.__aenter__()  # and never leaves: the replica was killed with both slots
    start = time.monotonic()
    try:
        async with alive.slot() as waited:
            took = time.monotonic() - start
    finally:
        await alive.fleet.close()
    assert 0.5 < took < 5, took
    assert waited >= 500


async def test_a_client_that_leaves_while_waiting_leaves_the_queue(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    a, b = await _replicas(redis_url, redis_prefix, 2, max_concurrent=1)
    try:
        async with a.slot():
            waiter = asyncio.create_task(b.slot().__aenter__())
            await asyncio.sleep(0.2)
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            assert await a.fleet.r.execute("ZCARD", a.keys[1]) == 0, "a cancelled waiter would block the queue"
        async with b.slot() as waited:
            assert waited < 1000
    finally:
        await _close([a, b])


async def test_redis_blinking_fails_nothing_and_keeps_to_a_share(
        own_redis: tuple[str, list[subprocess.Popen[bytes]]]) -> None:  # noqa: F811
    url, procs = own_redis
    a, b = await _replicas(url, "blink:", 2, max_concurrent=4)
    gpu = Gpu()
    procs[0].kill()
    procs[0].wait()

    async def one() -> int:
        async with gpu.busy(a, 0.05) as waited:
            return waited

    try:
        done = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(6))), 30)
        assert len(done) == 6, "every request is served while Redis is down"
        assert not a.fleet.online and a.fleet.last_error
        assert gpu.peak == 2, "one of two replicas keeps to half of max-concurrent 4 while Redis is down"
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL))
        wait_port(port)
        await a.fleet.heartbeat(10_000)
        assert a.fleet.online, "back to shared slots once Redis answers"
        async with a.slot():
            assert await a.fleet.r.execute("ZCARD", a.keys[0]) == 1
    finally:
        await _close([a, b])


async def test_a_busy_replica_reusing_its_slots_still_lets_another_in(redis_url: str,  # noqa: F811
                                                                      redis_prefix: str) -> None:  # noqa: F811
    """A replica keeps a freed slot for its own next request while nobody else waits (no Redis round trip);
    once another replica waits, the slot goes back through Redis within a check interval."""
    busy, other = await _replicas(redis_url, redis_prefix, 2, max_concurrent=1)
    stop = asyncio.Event()
    served = 0

    async def steady() -> None:
        nonlocal served
        while not stop.is_set():
            async with busy.slot():
                served += 1
                await asyncio.sleep(0.005)

    task = asyncio.create_task(steady())
    try:
        await asyncio.sleep(0.3)
        trips = busy.fleet.round_trips
        await asyncio.sleep(0.3)
        assert served > 20 and busy.fleet.round_trips - trips <= 5, "uncontended, slots are reused locally"
        start = time.monotonic()
        async with other.slot():
            waited = time.monotonic() - start
            assert busy.inflight == 0, "never both on a GPU of max-concurrent 1"
        assert waited < 1.0, f"the other replica waited {waited:.2f}s behind a busy one"
    finally:
        stop.set()
        await task
        await _close([busy, other])
