"""A client that goes away cancels what it started: once, within a loop turn, streamed or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable
from typing import Any, TypeVar

from litestar import Request
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Message, Receive, Send

from routing.errors import ShenronError
from routing.fanout import stop

T = TypeVar("T")
MAX_PENDING = 256
"""Frames a stream buffers for a client that reads slower than the upstream writes."""
CLIENT_LEFT = "shenron: the client disconnected"
"""The message of the one cancellation `watched` delivers, told apart from the server's own."""


LEFT = "shenron.left"
"""The scope key of a future that `shenron serve`'s protocol resolves when the client's connection is lost
(proxy/sockets.py). A callback on it tells what a task waiting on `receive` would, without a task per
request (about 3 % of a pass-through's CPU); without it (another server, a test client) a task waits."""


def left_of(scope: Any) -> asyncio.Future[None] | None:
    """The scope's LEFT future, where the server set one."""
    left: asyncio.Future[None] | None = scope.get(LEFT)
    return left


class ClientDisconnected(ShenronError):
    """The client closed its connection before the answer was sent (nginx's 499; nobody reads it)."""

    type = "client_disconnected"
    code = "client_disconnected"

    def __init__(self) -> None:
        super().__init__("The client closed the connection before the answer was sent.")


async def _disconnected(receive: Receive) -> None:
    """Returns when the server says the client left (after the body, `receive` waits for exactly that)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def watched(work: Awaitable[T], receive: Receive, left: asyncio.Future[None] | None = None) -> T:
    """`work`'s result, or ClientDisconnected once the client has left and `work` was cancelled.

    Litestar reads nothing more after the body, so without this a non-streamed answer (or a stream's
    first chunk) keeps every member generating for a client that is gone. `work` runs in the
    caller's task; the news comes from `left` (see LEFT), or else from a watcher task on `receive`,
    and cancels the caller once.
    """
    caller = asyncio.current_task()
    assert caller is not None
    settled = False

    def gone(w: asyncio.Future[None]) -> None:
        if not settled and not w.cancelled() and w.exception() is None:
            caller.cancel(CLIENT_LEFT)

    watcher = None
    if left is not None:
        left.add_done_callback(gone)
    else:
        watcher = asyncio.ensure_future(_disconnected(receive))
        watcher.add_done_callback(gone)
    try:
        return await work
    except asyncio.CancelledError as e:
        if e.args == (CLIENT_LEFT,) and caller.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        settled = True  # from here on a late disconnect cancels nothing: the answer is settled
        if watcher is not None:
            watcher.cancel()  # it only waits on `receive`: nothing to clean up, so nothing to wait for
        else:
            assert left is not None
            left.remove_done_callback(gone)


async def relay(iterator: AsyncIterable[bytes | str], send: Send, receive: Receive, encoding: str = "utf-8",
                left: asyncio.Future[None] | None = None, head: Message | None = None) -> None:
    """Send the events, those that are ready together in one body message, until the client leaves.

    Plain asyncio instead of Litestar's anyio task group: its cancel scope re-cancels the stream on
    every step of cleanup, and a cleanup cancelled twice leaks the upstream connections it closes.
    A producer task turns the iterator into frames; an upstream read often holds several events,
    and one `send` (one syscall) for all of them is most of what a streamed chunk costs. At most
    MAX_PENDING frames wait for a slow client. A disconnect wakes the sender, which stops the
    producer exactly once on its way out. Both ways in (Litestar's and the fast route) send this way.
    `head`, the response's start, is sent in the loop turn of the first frames: `shenron serve`'s
    protocol then writes them in one `send`, and the client's first event comes with the head.
    """
    frames: list[bytes] = []
    ready, room = asyncio.Event(), asyncio.Event()
    finished = False

    async def produce() -> None:
        nonlocal finished
        try:
            async for chunk in iterator:
                frames.append(chunk if isinstance(chunk, bytes) else chunk.encode(encoding))
                ready.set()
                if len(frames) >= MAX_PENDING:
                    room.clear()
                    await room.wait()
        finally:
            finished = True
            ready.set()

    def wake(_: asyncio.Future[None]) -> None:
        ready.set()

    producer = asyncio.ensure_future(produce())
    watcher = left if left is not None else asyncio.ensure_future(_disconnected(receive))
    watcher.add_done_callback(wake)
    try:
        while True:
            await ready.wait()
            ready.clear()
            if watcher.done():
                return  # the client left: the finally below cancels the producer, once
            if head is not None:
                await send(head)
                head = None
            if frames:
                body = b"".join(frames)
                frames.clear()
                room.set()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if finished and not frames:
                break
        producer.result()  # an error of the iterator's is raised here
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if watcher is left:
            watcher.remove_done_callback(wake)
        else:  # it only waits on `receive`: nothing to clean up, so nothing to wait for
            watcher.cancel()
        await stop({producer})  # done already unless the client left or sending failed


class _ASGIEventStream(ASGIStreamingResponse):
    """Litestar's streaming response, sent by `relay`: the head with the first frames."""

    __slots__ = ("_head",)

    async def start_response(self, send: Send) -> None:
        self._head: Message = {"type": "http.response.start", "status": self.status_code,
                               "headers": self.encode_headers()}

    async def send_body(self, send: Send, receive: Receive) -> None:
        await relay(self.iterator, send, receive, self.encoding, head=self._head)


class EventStream(Stream):
    """A server-sent event stream whose iterator is cancelled exactly once when the client leaves."""

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        iterator = self.iterator
        assert isinstance(iterator, AsyncIterable)
        return _ASGIEventStream(iterator=iterator, content_length=0, headers=self.headers,
                                media_type=str(self.media_type), status_code=self.status_code or 200,
                                encoding=self.encoding)
