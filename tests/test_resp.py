"""The fleet's Redis client: replies of every RESP2 type, however the bytes are split, in order; errors as
errors; a script Redis forgot (a restart) loaded again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from routing.upstream import resp
from tests.services import redis_prefix, redis_url  # noqa: F401

REPLIES = (b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n:1\r\n$0\r\n\r\n*2\r\n+a\r\n-ERR inner\r\n"
           b"-NOSCRIPT No matching script\r\n*-1\r\n")
WANT: list[Any] = ["OK", 42, b"hello", None, [1, b"", ["a", "ERR inner"]], "NOSCRIPT No matching script", None]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, len(REPLIES)])
async def test_replies_are_read_in_order_however_they_arrive(chunk: int) -> None:
    proto = resp._Protocol()
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in WANT]
    proto.waiting.extend(futs)
    for i in range(0, len(REPLIES), chunk):
        proto.data_received(REPLIES[i:i + chunk])
    got: list[Any] = []
    for f in futs:
        e = f.exception()
        got.append(str(e) if e else f.result())
    got[4][2][1] = str(got[4][2][1])  # an error inside an array is a value, not a raise
    assert got == WANT
    assert proto.buf == b""


async def test_a_lost_connection_fails_what_waits() -> None:
    proto = resp._Protocol()
    fut = asyncio.get_running_loop().create_future()
    proto.waiting.append(fut)
    proto.connection_lost(None)
    with pytest.raises(resp.RedisError):
        await fut


async def test_against_redis_pipelines_and_reloads_a_forgotten_script(redis_url: str,  # noqa: F811
                                                                      redis_prefix: str) -> None:  # noqa: F811
    r = resp.Redis(redis_url)
    key = redis_prefix + "k"
    try:
        assert await r.pipeline([("SET", key, "v", "PX", 5000), ("GET", key), ("DEL", key)]) == ["OK", b"v", 1]
        with pytest.raises(resp.RedisError, match="wrong number of arguments"):
            await r.execute("GET")
        body = "return ARGV[1] .. KEYS[1]"
        r._scripts[body] = "0" * 40  # as if Redis had restarted and lost it
        assert await r.script(body, [key], ["x"]) == ("x" + key).encode()
        assert await r.execute("PING") == "PONG", "the connection is still in step after errors"
    finally:
        await r.aclose()
