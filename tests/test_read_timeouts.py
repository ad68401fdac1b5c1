"""Read timeouts of Shenron's own transport: checked by the loop's one deadline tick (routing/deadline.py),
a stream's body one entry for its whole life, against the misbehaving server of tests/test_transport.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from routing import deadline
from tests.test_transport import Server, client, server

__all__ = ["server"]  # the fixture, used by name


async def test_a_long_read_timeout_still_ends_a_stalled_answer_on_time(server: Server) -> None:
    """A read timeout of seconds is checked by the loop's one deadline timer (routing/deadline.py), not a timer
    per read: a body that stops halfway still ends in ReadTimeout, at most a tick late."""
    async with client() as c:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"http://127.0.0.1:{server.port}/hang-body", timeout=httpx.Timeout(2.2))
        assert 2.2 <= loop.time() - started < 2.2 + 0.1 + 0.5


async def test_a_stream_s_read_timeout_counts_only_the_wait_for_the_upstream(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """One deadline entry for a whole body (not a timer a read): a reader slower than the read timeout between
    pieces is not the upstream's stall, a stall is, and nothing stays armed once the body is read."""
    monkeypatch.setattr(deadline, "COARSE", 0.0)  # every read timeout takes the one-entry path here
    monkeypatch.setattr(deadline, "TICK", 0.02)
    async with client() as c:
        async with c.stream("GET", f"http://127.0.0.1:{server.port}/sse", timeout=httpx.Timeout(0.15)) as r:
            got = []
            async for piece in r.aiter_raw():
                got.append(piece)
                await asyncio.sleep(0.3)  # the client's time, twice the read timeout
        assert b"".join(got) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert not deadline.of(asyncio.get_running_loop()).armed
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"http://127.0.0.1:{server.port}/hang-body", timeout=httpx.Timeout(0.15))
        assert 0.15 <= loop.time() - started < 0.15 + 0.02 + 0.3
        assert not deadline.of(loop).armed
