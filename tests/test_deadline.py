"""A member call's coarse deadline keeps `asyncio.timeout`'s contract: TimeoutError out of the block once
the time has passed (a TICK late at most), the caller's own cancellations passed on untouched, and a
deadline that did not expire leaves nothing armed."""

from __future__ import annotations

import asyncio
import time

import pytest

from routing import deadline
from routing.deadline import Within


@pytest.fixture(autouse=True)
def coarse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadline, "COARSE", 0.0)  # every deadline takes the coarse path here
    monkeypatch.setattr(deadline, "TICK", 0.05)


async def test_a_deadline_that_passes_raises_timeout_error_a_tick_late_at_most() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Within(0.2):
            await asyncio.sleep(5)
    assert 0.2 <= time.monotonic() - start < 0.2 + 0.05 + 0.1


async def test_a_deadline_not_reached_leaves_nothing_armed_and_the_value_through() -> None:
    async def quick() -> int:
        async with Within(10):
            await asyncio.sleep(0.01)
            return 42

    assert await asyncio.gather(*(quick() for _ in range(50))) == [42] * 50
    assert not deadline._loops[asyncio.get_running_loop()].armed


async def test_the_caller_s_own_cancellation_stays_a_cancellation() -> None:
    async def inside() -> None:
        async with Within(10):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(inside())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_each_raise_their_own() -> None:
    with pytest.raises(TimeoutError):
        async with Within(10):
            async with Within(0.1):
                await asyncio.sleep(5)
            pytest.fail("the inner deadline's TimeoutError comes out of the inner block")
    seen: list[str] = []
    with pytest.raises(TimeoutError):
        async with Within(0.1):
            try:
                async with Within(10):
                    await asyncio.sleep(5)
            except asyncio.CancelledError:
                seen.append("cancelled")  # the outer deadline's: the inner block sees a cancellation
                raise
    assert seen == ["cancelled"]


async def test_a_member_past_its_coarse_deadline_fails_as_a_timeout() -> None:
    """Through the backend: an upstream that never answers is a MemberTimeout (504), as with an exact one."""
    from routing.config import BackendConfig
    from routing.errors import MemberTimeout
    from routing.request import Request
    from routing.settings import ServerConfig
    from routing.upstream.backends import OpenAIBackend
    from routing.upstream.clients import client_for

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()  # reads, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = BackendConfig(url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=0.3)
    client = client_for(cfg, ServerConfig())
    try:
        start = time.monotonic()
        with pytest.raises(MemberTimeout):
            await OpenAIBackend("slow", cfg, client).complete(Request.of({"messages": [
                {"role": "user", "content": "hi"}]}))
        assert time.monotonic() - start < 0.3 + 0.05 + 0.2
    finally:
        await client.aclose()
        server.close()


async def test_a_block_that_swallowed_the_deadline_s_cancellation_leaves_the_task_uncancelled() -> None:
    """As with asyncio.timeout: the deadline's cancellation is taken back when its block ends, even one that
    caught it, so the task's later cancellations (a client that leaves) are told apart as before."""
    async with Within(0.1):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_entry_whose_expiry_fails_does_not_stop_the_others() -> None:
    """The tick expires every late entry and goes on ticking even when one entry's `expire` raises (a
    connection's refusal that fails to write, say): the loop's exception handler hears of it."""
    loop = asyncio.get_running_loop()
    heard: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: heard.append(context))
    expired: list[str] = []

    class Entry:
        def __init__(self, name: str, fails: bool) -> None:
            self.name, self.fails, self.when = name, fails, loop.time() + 0.05

        def expire(self) -> None:
            expired.append(self.name)
            if self.fails:
                raise RuntimeError("boom")

    try:
        deadlines = deadline.of(loop)
        deadlines.add(Entry("a", True))
        deadlines.add(Entry("b", True))
        await asyncio.sleep(0.2)
        later = Entry("c", False)
        later.when = loop.time() + 0.05
        deadlines.add(later)
        await asyncio.sleep(0.2)
    finally:
        loop.set_exception_handler(None)
    assert sorted(expired) == ["a", "b", "c"] and len(heard) == 2
    assert not deadlines.armed


async def test_a_read_that_got_its_data_is_not_expired_by_a_tick_of_the_same_turn() -> None:
    """A stream's body is one entry; its time is set when a read starts to wait, and set back to NEVER as the
    data arrives (not when the reader next runs), so a tick in between cannot take the entry away and leave
    the rest of the body without a read timeout."""
    from routing.upstream.conn import Conn

    class Wire(asyncio.Transport):
        def write(self, data: object) -> None:
            pass

        def is_closing(self) -> bool:
            return False

    loop = asyncio.get_running_loop()
    conn = Conn((b"http", b"up.test", 80))
    conn.connection_made(Wire())
    head = conn.send(b"GET / HTTP/1.1\r\n\r\n", b"")
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert await head == 200
    pieces = conn.body(30.0)  # a stream's read timeout: the one-entry path
    reading = asyncio.ensure_future(anext(pieces))
    await asyncio.sleep(0)
    armed = deadline.of(loop).armed
    assert conn in armed and conn.when != deadline.NEVER  # waiting
    conn.data_received(b"5\r\nhello\r\n")
    assert conn.when == deadline.NEVER  # before the reader runs
    assert await reading == b"hello"
    assert conn in armed  # the next read is still timed
    conn.data_received(b"0\r\n\r\n")
    assert [p async for p in pieces] == []
    assert conn not in armed


async def test_inside_an_enclosing_wait_a_later_deadline_is_not_armed_an_earlier_one_is() -> None:
    """`fan_out` sets when it gives up on its calls: a call's deadline that falls surely after it can never end
    the call first and arms nothing; one before it still raises the call's own TimeoutError."""
    armed: list[int] = []

    async def call(seconds: float) -> None:
        async with Within(seconds):
            deadlines = deadline._loops.get(asyncio.get_running_loop())
            armed.append(len(deadlines.armed) if deadlines is not None else 0)
            await asyncio.sleep(1)

    token = deadline.ENCLOSING.set(time.monotonic() + 0.5)
    try:
        later = asyncio.ensure_future(call(0.5 + deadline.SURELY_LATER + 0.1))
        earlier = asyncio.ensure_future(call(0.2))
    finally:
        deadline.ENCLOSING.reset(token)
    await asyncio.sleep(0.05)
    assert armed == [0, 1]  # the later one armed nothing, the earlier one itself
    later.cancel()  # as the enclosing wait does at its deadline
    with pytest.raises(asyncio.CancelledError):
        await later
    with pytest.raises(TimeoutError):
        await earlier
