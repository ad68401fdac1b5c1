"""Shenron's own httpx transport: HTTP/1.1 over asyncio protocols, parsed by httptools.

What a proxy needs from its upstream client and nothing more: one pool per host whose idle
connections wait in a deque (acquiring one is O(1), however many are pooled), a request written
in one call, the response parsed in C, its body handed over as it arrives, and a connection whose
response was not read to the end closed instead of returned to the pool. It speaks httpx's
transport contract, so the code above it keeps httpx's Request and Response.

The connection and an origin's pool of them are `routing/upstream/conn.py`. Measured against
httpx-aiohttp's transport in BENCHMARKS.md ("Upstream transport").
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from routing.deadline import Within
from routing.upstream.conn import Body, Conn, ConnPool


class Transport(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limit = limits.max_connections or 100
        self._keepalive_s = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._pools: dict[tuple[bytes, bytes, int], ConnPool] = {}
        self._ssl = ssl_context

    def _pool(self, origin: tuple[bytes, bytes, int]) -> ConnPool:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = ConnPool(self._limit, self._keepalive_s)
        return pool

    async def _connect(self, origin: tuple[bytes, bytes, int], timeout: float | None) -> Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            tls = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                tr, conn = await loop.create_connection(lambda: Conn(origin), host.decode("ascii"), port, ssl=tls)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host.decode()}:{port} within {timeout}s") from None
        except OSError as e:
            raise httpx.ConnectError(str(e)) from e
        conn.transport = tr  # uvloop calls connection_made only on its next turn
        return conn

    async def _exchange(self, origin: tuple[bytes, bytes, int], head: bytes, body: bytes,
                        timeouts: dict[str, Any]) -> tuple[Conn, ConnPool, int]:
        """Send one request on a pooled (or new) connection: the connection, its pool and the status, once
        the response head is in; its body is then read from the connection."""
        pool = self._pool(origin)
        while True:
            conn, ready = pool.take()  # at once, as nearly always: no coroutine to wait in
            if not ready:
                try:
                    conn = await pool.acquire(timeouts.get("pool"))
                except TimeoutError:
                    raise httpx.PoolTimeout("no upstream connection free in time") from None
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect(origin, timeouts.get("connect"))
                except BaseException:
                    pool.vacate()
                    raise
            try:
                read_s = timeouts.get("read")
                if read_s is None:  # the caller's deadline bounds the exchange: no timer of our own
                    status = await conn.send(head, body)
                else:
                    async with Within(read_s):
                        status = await conn.send(head, body)
                break
            except TimeoutError:
                pool.discard(conn)
                raise httpx.ReadTimeout("no response head from the upstream in time") from None
            except httpx.RemoteProtocolError:
                pool.discard(conn)
                if not reused:
                    raise
                # the upstream closed an idle connection as we reused it: nothing was answered, so once
                # more on a fresh one (what browsers and httpcore's retries do)
            except BaseException:
                # Cancelled (a council's early decision, a client that left) or failed: closed, which is how a
                # server stops generating; unless the whole response is already here (it came while the
                # task waited its turn): nothing to stop, and a connection kept (`release` checks).
                pool.release(conn)
                raise
        return conn, pool, status

    async def open(self, origin: tuple[bytes, bytes, int], head: bytes, body: bytes,
                   timeouts: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], Body]:
        """One exchange without httpx's Request and Response, to `origin` (a URL's, `origin_of(url)`): `head` is
        the request line and headers (ending in an empty line), `body` the bytes. The status, the response
        headers and the body to read (or close) as the caller goes; it comes as the server sent it (no
        content decoding)."""
        conn, pool, status = await self._exchange(origin, head, body, timeouts)
        return status, conn.headers(), Body(conn, pool, timeouts.get("read"))

    async def whole(self, origin: tuple[bytes, bytes, int], head: bytes, body: bytes,
                    timeouts: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """`open`, with the body read to the end and the connection back in its pool: a whole answer, which
        a small one is once its head is in (then no reader is made)."""
        conn, pool, status = await self._exchange(origin, head, body, timeouts)
        headers = conn.headers()
        got = conn.whole()
        if got is None:
            return status, headers, await Body(conn, pool, timeouts.get("read")).read()
        pool.release(conn)
        return status, headers, got

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        lines = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        framed = False
        for name, value in request.headers.raw:
            if name.lower() == b"transfer-encoding":
                continue  # the body was read whole above: it goes with a Content-Length
            framed = framed or name.lower() == b"content-length"
            lines += [name, b": ", value, b"\r\n"]
        if not framed and (body or request.method in ("POST", "PUT", "PATCH")):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        conn, pool, status = await self._exchange(origin_of(url), b"".join(lines), body, timeouts)
        return httpx.Response(status, headers=conn.headers(), stream=Body(conn, pool, timeouts.get("read")),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()


def origin_of(url: httpx.URL) -> tuple[bytes, bytes, int]:
    """The pool a URL's requests share: scheme, host and port (the scheme's own when none is given)."""
    return url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80)
