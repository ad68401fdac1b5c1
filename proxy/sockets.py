"""Limits at the socket, below the ASGI app: header size, slow clients, concurrent connections.

uvicorn's httptools protocol has none of these (a 32 MB header was answered 200, and hundreds of
slow-header connections were held open for ever), so `shenron serve` runs this subclass of it.
Each refusal is written in OpenAI's error envelope and access-logged like any other request.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy import accesslog
from proxy.streaming import LEFT
from routing import deadline
from routing.deadline import NEVER

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def refusal(status: int, message: str, code: str) -> bytes:
    body = msgspec.json.encode({"error": {"message": message, "type": "invalid_request_error" if status < 500
                                          else "service_unavailable", "param": None, "code": code}})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status], len(body)) + body)


class Coalesced:
    """A connection's transport as uvicorn's protocol and its request cycles see it. A response's head waits
    for the next write of its loop turn and leaves with it at once (its body, or a stream's first frame:
    uvicorn writes them apart), and what that turn writes after them leaves in one `send` at its end: a
    quick upstream's whole stream, read at once, becomes several frames (its text, its finish, its usage,
    `[DONE]`: each an ASGI message) and two sends, not one per pair. The client still gets the first frame
    before the rest is made. A write in a turn that began with no head (a paced stream's token, one a read)
    leaves at once: holding it would cost a loop turn more per token, for nothing to join. On loopback a
    send is about as much CPU as the rest of a small response's bytes. What waits is what one turn wrote,
    for at most that turn."""

    __slots__ = ("_held", "_loop", "_paired", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        """What waits for the turn's second write or its end; None with `_paired` unset: no write this turn."""
        self._paired = False
        """This turn's first two writes have left."""

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            if self._paired:  # after the turn's pair: with the rest of the turn, at its end
                self._held = [data]
            elif data[:5] == b"HTTP/":  # a response's head: it waits for its body (or the turn's end)
                self._loop.call_soon(self.flush)
                self._held = [data]
            else:  # nothing waits in this turn (a paced stream's token): at once, no flush to schedule
                self._transport.write(data)
        elif not self._paired:
            self._held, self._paired = None, True
            self._transport.write(held[0] + data)
        else:
            held.append(data)

    def flush(self) -> None:
        self._paired = False
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # what the protocol rarely asks for (set_protocol, abort)
        return getattr(self._transport, name)


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header budget, read deadlines and a connection cap.

    - Headers (request line included) over `max_header_bytes`: 431, connection closed.
    - A request (headers and body) not read within `read_timeout_s` of the connection, or of its
      first byte on a kept-alive one: 408, closed. Checked by the loop's one deadline tick
      (routing/deadline.py: the connection is an entry whose `when` is set as a request starts, NEVER
      while none is being read; no timer made and cancelled a request), so at most a tick late. The
      time the app takes to answer is not counted; keep-alive idling is uvicorn's own timeout.
    - More than `max_connections` open at once: the newest gets a 503 and is closed.
    A request refused while an earlier one on its connection (pipelined) is still being answered gets its
    refusal after that answer, as HTTP/1.1 orders answers; nothing after it is read.
    """

    max_header_bytes = 64 * 1024
    read_timeout_s = 30.0
    max_connections = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: str | None = None
        self._raw_bytes = 0
        """Bytes of the reads before this one while the headers were incomplete."""
        self._fed = 0
        """Bytes of the read being parsed: with `_raw_bytes`, at least the size of the headers it completes."""
        self.when = NEVER
        """When the request being read is late (the deadline tick's), NEVER while none is."""
        self._deadlines: deadline.Deadlines | None = None
        self._refused = False
        self._deferred: tuple[int, str, str] | None = None
        """A refusal of a request read while an earlier one's answer was still being made: written after it."""
        self._lefts: list[tuple[Any, asyncio.Future[None]]] = []
        """Each unanswered request's LEFT future with its cycle, resolved when the connection is lost."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, Coalesced(transport, self.loop))
        self._deadlines = deadline.of(self.loop)
        self._deadlines.add(self)
        if len(self.connections) > self.max_connections:
            self._refuse(503, f"Too many connections (more than {self.max_connections}); try again shortly.",
                         "too_many_connections")
            return
        self._expect("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._deadlines is not None:
            self._deadlines.discard(self)
        super().connection_lost(exc)
        self._gone()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        reading_headers = self._reading == "headers"
        self._fed = len(data)
        super().data_received(data)
        if reading_headers and self._reading == "headers" and not self._refused:
            self._raw_bytes += len(data)  # headers still incomplete: all of it is header (a 32 MB one, say)
            if self._raw_bytes > self.max_header_bytes:
                self._too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._raw_bytes = 0
        if self._reading != "headers":
            self._expect("headers")

    def on_headers_complete(self) -> None:
        # The headers fit in what was read since the request began; only a request that large has them
        # counted (uvicorn keeps the URL and each header: no callback of ours a header)
        if self._raw_bytes + self._fed > self.max_header_bytes and self._header_bytes() > self.max_header_bytes:
            self._too_large()
            return
        self._reading = "body"  # the same deadline goes on: the whole request must arrive in time
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:  # (not refused for concurrency)
            left: asyncio.Future[None] = self.loop.create_future()
            self.scope[LEFT] = left  # type: ignore[literal-required]
            self._lefts = [(c, f) for c, f in self._lefts if not c.response_complete]  # pipelined ones stay
            self._lefts.append((self.cycle, left))

    def _header_bytes(self) -> int:
        """The request line's URL and the headers, as the budget counts them."""
        return len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    def _gone(self) -> None:
        for _, left in self._lefts:
            if not left.done():
                left.set_result(None)
        self._lefts = []

    def _expect(self, what: str) -> None:
        self._reading = what
        self.when = self.loop.time() + self.read_timeout_s

    def _disarm(self) -> None:
        self._reading = None
        self.when = NEVER

    def expire(self) -> None:
        """The deadline tick: the request being read is late."""
        self.when = NEVER
        self._too_slow()

    def _too_large(self) -> None:
        self._refuse(431, f"Request headers exceed {self.max_header_bytes // 1024} KB.", "headers_too_large")

    def _too_slow(self) -> None:
        what = self._reading or "request"
        if what == "body" and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app already answered; nothing more can be said
            return
        self._refuse(408, f"The request {what} did not arrive within {self.read_timeout_s:g}s.", "request_timeout")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deferred is not None and not self._owed():
            status, message, code = self._deferred
            self._deferred = None
            self._refuse(status, message, code)

    def _owed(self) -> bool:
        """Whether the answer of a request before the one being read is still to be written (pipelined: read
        while it was being made). HTTP/1.1 answers in the order it was asked, so a refusal waits for it."""
        cycle = self.cycle
        return self._reading == "headers" and cycle is not None and not cycle.response_complete \
            and not cycle.disconnected

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._refused = True
        if self._owed():  # the earlier answer first, then this refusal (`on_response_complete`); nothing more read
            self._deferred = (status, message, code)
            self.when = NEVER
            self.transport.pause_reading()
            return
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, message, code))
            self.transport.close()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._gone()
        try:
            method: str | None = self.parser.get_method().decode("latin-1")
        except Exception:  # httptools raises when no request line was parsed yet
            method = None
        path = self.url.split(b"?", 1)[0][:512].decode("latin-1") if getattr(self, "url", b"") else None
        accesslog.line({"ts": accesslog.now(), "method": method, "path": path, "status": status, "ms": 0,
                        "client": self.client[0] if self.client else None, "error": code})


def protocol(max_header_kb: int, read_timeout_s: float, max_connections: int) -> type[GuardedHttpTools]:
    """The protocol class for one server's settings (uvicorn instantiates it per connection)."""
    return type("ShenronHttp", (GuardedHttpTools,), {"max_header_bytes": max_header_kb * 1024,
                                                    "read_timeout_s": read_timeout_s,
                                                    "max_connections": max_connections})


def __getattr__(name: str) -> type[GuardedHttpTools]:
    """`proxy.sockets:FromEnv`, the protocol class for the settings `shenron serve` resolved: uvicorn imports
    it by name in each worker process, since a class made at run time cannot be sent to one."""
    if name != "FromEnv":
        raise AttributeError(name)
    from proxy.app import RESOLVED_ENV
    from routing.config import Config

    server = msgspec.json.decode(os.environ[RESOLVED_ENV], type=Config).server
    return protocol(server.max_header_kb, server.read_timeout_s, server.max_connections)
