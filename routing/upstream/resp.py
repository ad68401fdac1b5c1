"""A small pipelined Redis client for the fleet's hot path: GPU slots are taken and freed on every guarded
member call, two commands each.

redis-py's asyncio client costs 110-150 us of CPU per command here (measured in BENCHMARKS.md, "The fleet"),
which made a pass-through request behind shared GPU slots cost 1.85x one with slots in process. This client
speaks RESP2 over one connection, pipelines whatever is asked at once (replies come back in order, so each
waiter is a future in a FIFO), and costs a tenth of that. It knows what the fleet sends: commands with
string, bytes or number arguments, and replies of every RESP2 type. Anything richer (the response cache,
rate limits) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

Arg = str | bytes | int | float


class RedisError(Exception):
    """An error reply (`-ERR ...`), or the connection lost."""


def _encode(args: tuple[Arg, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buf = b""
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionResetError("Redis closed the connection")
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(RedisError(str(self.lost)))

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        pos = 0
        while self.waiting:
            parsed = _parse(self.buf, pos)
            if parsed is None:
                break
            value, pos = parsed
            fut = self.waiting.popleft()
            if not fut.done():
                if isinstance(value, RedisError):
                    fut.set_exception(value)
                else:
                    fut.set_result(value)
        self.buf = self.buf[pos:]


def _parse(buf: bytes, pos: int) -> tuple[Any, int] | None:
    """One reply from `buf` at `pos`: (value, next position), or None while it is incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    nxt = end + 2
    if kind == b":":
        return int(line), nxt
    if kind == b"+":
        return line.decode(), nxt
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), nxt
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            return None
        return buf[nxt:nxt + n], nxt + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, nxt
        items = []
        for _ in range(n):
            parsed = _parse(buf, nxt)
            if parsed is None:
                return None
            item, nxt = parsed
            items.append(item)
        return items, nxt
    raise RedisError(f"unexpected reply from Redis: {buf[pos:pos + 40]!r}")


class Redis:
    """One connection, opened on first use and again after it is lost; `timeout_s` bounds every reply."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None
        self._opening: asyncio.Lock | None = None
        self._scripts: dict[str, str] = {}

    async def _connect(self) -> _Protocol:
        parts = urlsplit(self.url)
        loop = asyncio.get_running_loop()
        if parts.scheme == "unix":
            _, proto = await loop.create_unix_connection(_Protocol, parts.path)
        else:
            tls = ssl.create_default_context() if parts.scheme == "rediss" else None
            _, proto = await loop.create_connection(_Protocol, parts.hostname or "127.0.0.1", parts.port or 6379,
                                                    ssl=tls)
        setup: list[tuple[Arg, ...]] = []
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            setup.append(("AUTH", user, unquote(parts.password)) if user else ("AUTH", unquote(parts.password)))
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        if db and db != "0":
            setup.append(("SELECT", db))
        for cmd in setup:
            await self._send(proto, cmd)
        return proto

    async def _conn(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._proto is None or self._proto.lost is not None:
                async with asyncio.timeout(self.timeout_s):
                    self._proto = await self._connect()
            return self._proto

    async def _send(self, proto: _Protocol, *cmds: tuple[Arg, ...]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in cmds]
        proto.waiting.extend(futs)
        assert proto.transport is not None
        proto.transport.write(b"".join(_encode(c) for c in cmds))
        async with asyncio.timeout(self.timeout_s):
            if len(futs) == 1:
                return [await futs[0]]
            done = await asyncio.gather(*futs, return_exceptions=True)
        for d in done:
            if isinstance(d, BaseException):
                raise d
        return done

    async def execute(self, *args: Arg) -> Any:
        """One command's reply; an error reply raises RedisError."""
        return (await self.pipeline([args]))[0]

    async def pipeline(self, cmds: list[tuple[Arg, ...]]) -> list[Any]:
        """Several commands sent at once, their replies in order."""
        proto = await self._conn()
        try:
            return await self._send(proto, *cmds)
        except TimeoutError:
            self._drop(proto)  # a reply that comes late would be taken as the next command's
            raise

    async def script(self, body: str, keys: list[str], args: list[Arg]) -> Any:
        """EVALSHA, loading the script the first time and whenever Redis lost it (a restart)."""
        sha = self._scripts.get(body) or hashlib.sha1(body.encode()).hexdigest()
        self._scripts[body] = sha
        cmd: tuple[Arg, ...] = ("EVALSHA", sha, len(keys), *keys, *args)
        try:
            return await self.execute(*cmd)
        except RedisError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        loaded = await self.execute("SCRIPT", "LOAD", body)
        sha = self._scripts[body] = loaded.decode() if isinstance(loaded, bytes) else str(loaded)
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    def _drop(self, proto: _Protocol) -> None:
        if proto.transport is not None:
            proto.transport.close()
        if self._proto is proto:
            self._proto = None

    async def aclose(self) -> None:
        if self._proto is not None:
            with contextlib.suppress(Exception):
                self._drop(self._proto)
