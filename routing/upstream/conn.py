"""One HTTP/1.1 connection to an upstream, parsed by httptools, and the pool of them an origin has.

`Conn` is an asyncio protocol that writes a request in one call and hands the response's body over as it
arrives; `ConnPool` keeps an origin's idle connections in a deque (taking one is O(1)), at most its limit
open, and closes a connection whose response was not read to the end instead of reusing it; `Body` is a
response's body as httpx reads it. `routing/upstream/transport.py` speaks httpx's transport contract over
them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import cast

import httptools
import httpx

from routing import deadline
from routing.deadline import NEVER, Within
from routing.upstream.waiters import wake_first

HIGH_WATER = 1 << 20
"""Body bytes buffered for a slow reader before the connection stops reading."""


class Conn(asyncio.Protocol):
    """One HTTP/1.1 connection, one response at a time."""

    def __init__(self, origin: tuple[bytes, bytes, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[int] | None = None
        self._chunks: deque[bytes] = deque()
        self.on_body = self._chunks.append
        """httptools' body callback, called once per chunk of a chunked body (a stream's event each): the
        deque's own append, a C call, instead of a Python method; `data_received` does the rest once a read."""
        self._buffered = 0
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        """The body's reader, waiting for more (a bare future: an asyncio.Event's wait costs a deque and a
        future a read)."""
        self.when = NEVER
        """While a body is read with a read timeout of seconds: when the read now waiting times out (the loop's
        one deadline tick checks it; routing/deadline.py), NEVER while nobody waits."""
        self._read_timeout = 0.0
        self._loop = asyncio.get_running_loop()  # made by its loop's create_connection; asked once, not per send
        self.complete = False
        self.reusable = False
        self._error: Exception | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(httpx.RemoteProtocolError("upstream closed the connection before the response ended"))

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            self._fail(httpx.RemoteProtocolError("data from the upstream outside a response"))
            self.close()
            return
        had = len(self._chunks)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {e}"))
            self.close()
            return
        if len(self._chunks) > had:
            self._wake()
            self._buffered += len(data)  # with its framing: near enough for a high-water mark
            if self._buffered > HIGH_WATER and self.transport is not None and not self.paused:
                self.paused = True
                self.transport.pause_reading()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._head is not None and not self._head.done():
            assert self._parser is not None
            self._head.set_result(self._parser.get_status_code())

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self.complete = True
        self.reusable = self._parser.should_keep_alive()
        self._wake()

    def _wake(self) -> None:
        self.when = NEVER  # at once, not when the reader runs: a tick in this loop turn must not expire a read
        w = self._waiter  # that has what it waited for (it would leave the rest of the body without a deadline)
        if w is not None and not w.done():
            w.set_result(None)

    def expire(self) -> None:
        """The read waiting now took longer than the read timeout (called by the deadline tick)."""
        self.when = NEVER
        w = self._waiter
        if w is not None and not w.done():
            w.set_exception(httpx.ReadTimeout(f"no data from the upstream within {self._read_timeout:g}s"))

    # used by the transport
    def send(self, head: bytes, body: bytes) -> asyncio.Future[int]:
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._chunks.clear()
        self._buffered = 0
        self._waiter = None
        self.complete = self.reusable = False
        self._error = None
        self._head = self._loop.create_future()
        if self.closed or self.transport is None or self.transport.is_closing():
            self._head.set_exception(httpx.RemoteProtocolError("the pooled connection was closed"))
            return self._head
        self.transport.write(head + body)
        return self._head

    def headers(self) -> list[tuple[bytes, bytes]]:
        return self._headers

    def whole(self) -> bytes | None:
        """The body, where all of it has come (a small answer comes with its head), without a reader; None
        while more is to come, or when reading was paused for it (the reader resumes it)."""
        return None if not self.complete or self.paused else self._take()

    def _take(self) -> bytes:
        """What arrived since the last take, as one piece: a read of a stream often holds many chunks of
        its chunked encoding, and each piece costs a trip up the readers."""
        chunks = self._chunks
        out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        return out

    async def body(self, read_timeout: float | None,
                   ended: Callable[[], None] | None = None) -> AsyncGenerator[bytes, None]:
        """The body's pieces as they arrive; `ended` is called once the last has been taken.

        A read timeout of seconds (a stream's: the member's timeout) is one entry in the loop's deadlines for
        the whole body, its time pushed on as each read starts to wait: no timer, set or task lookup a read
        (a paced stream reads once a token). A shorter one (tests, checks) is each read's exact timer."""
        loop = self._loop
        deadlines = None
        if read_timeout is not None and read_timeout >= deadline.COARSE:
            deadlines = deadline.of(loop)
            self._read_timeout = read_timeout
            deadlines.add(self)
        try:
            while True:
                if self._chunks:
                    chunk = self._take()
                    if self.paused and self.transport is not None and not self.closed:
                        self.paused = False
                        self.transport.resume_reading()
                    yield chunk
                    continue
                if self.complete:
                    if ended is not None:
                        ended()
                    return
                if self._error is not None:
                    raise self._error
                waiter = self._waiter = loop.create_future()
                if deadlines is not None:
                    self.when = loop.time() + self._read_timeout
                    try:
                        await waiter
                    finally:
                        self.when = NEVER
                elif read_timeout is None:  # the caller's deadline bounds the exchange
                    await waiter
                else:
                    try:
                        async with Within(read_timeout):
                            await waiter
                    except TimeoutError:
                        raise httpx.ReadTimeout(f"no data from the upstream within {read_timeout}s") from None
        finally:
            self._waiter = None
            if deadlines is not None:
                deadlines.discard(self)

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnPool:
    """The connections to one origin; `max_connections` at most, idle ones reused newest first."""

    def __init__(self, limit: int, keepalive_s: float) -> None:
        self.limit = limit
        self.keepalive_s = keepalive_s
        self.idle: deque[Conn] = deque()
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def take_idle(self) -> Conn | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                return conn
            self.discard(conn)
        return None

    async def acquire(self, timeout: float | None) -> Conn | None:
        """Once `take` found neither: wait for an idle connection, or for room to open one (None, then counted
        as open)."""
        ready = False
        async with asyncio.timeout(timeout):
            while not ready:
                await self._turn()
                conn, ready = self.take()
        return conn

    def take(self) -> tuple[Conn | None, bool]:
        """An idle connection, or room to open one (counted as open now); (None, False) when neither."""
        conn = self.take_idle()
        if conn is not None:
            return conn, True
        if self.open < self.limit:
            self.open += 1
            return None, True
        return None, False

    async def _turn(self) -> None:
        """Until a connection comes back or one closes."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.wake()  # woken, then timed out or cancelled: the turn goes to the next one
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def release(self, conn: Conn) -> None:
        """Back to the idle ones where its response is complete and it reads (a body left unread that paused
        reading would leave the next response unread too); else closed."""
        if conn.reusable and conn.complete and not conn.closed and not conn.paused:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
            self.wake()
        else:
            self.discard(conn)

    def discard(self, conn: Conn) -> None:
        conn.close()
        self.vacate()

    def vacate(self) -> None:
        """One connection fewer (closed, or never opened): the next waiter may open one."""
        self.open -= 1
        self.wake()

    def wake(self) -> None:
        wake_first(self.waiters)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class Body(httpx.AsyncByteStream):
    def __init__(self, conn: Conn, pool: ConnPool, read_timeout: float | None) -> None:
        self._conn = conn
        self._pool = pool
        self._read_timeout = read_timeout
        self._released = False

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        """The connection's own reader, no layer around it (one a token of a stream): it gives the connection
        back once the body has ended; a reader that stops early closes it (then `aclose`)."""
        return self._conn.body(self._read_timeout, self._release)

    async def read(self) -> bytes:
        """All of it, then the connection back to its pool (one generator layer fewer than iterating)."""
        try:
            whole = self._conn.whole()
            if whole is not None:
                return whole
            parts = [piece async for piece in self._conn.body(self._read_timeout)]
        finally:
            self._release()  # closed instead when the body was not read to the end
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn)  # closed instead when the response was not read to the end

    async def aclose(self) -> None:
        self._release()
