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

T = TypeVar("T")
CLIENT_LEFT = "shenron: the client disconnected"
"""The message of the one cancellation `watched` delivers, told apart from the server's own."""


LEFT = "shenron.left"
"""The scope key of a future that `shenron serve`'s protocol resolves when the client's connection is lost
(proxy/sockets.py). A callback on it tells what a task waiting on `receive` would, without a task per
request (about 3 % of a pass-through's CPU); without it (another server, a test client) a task waits."""


class Last(bytes):
    """A stream's last frames: `relay` sends them as the response's last message (uvicorn writes the chunked
    body's end with them, one write, not two)."""

    __slots__ = ()


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
    """Send `head` (the response's start) with the first frame, then each frame as it comes, until the
    iterator ends or the client leaves.

    One task, the caller's: a frame is sent in the loop turn its upstream read arrived in (a producer
    task and a sender task cost two more loop turns and a task switch per token of a paced stream).
    `shenron serve`'s protocol joins the head with the first frame into one `send`. A slow client holds
    the stream back at `send` (the server's flow control), so nothing piles up here. The client leaving
    cancels the stream once (`watched`), and the iterator is closed here, not by the garbage collector.
    Plain asyncio instead of Litestar's anyio task group: its cancel scope re-cancels the stream on
    every step of cleanup, and a cleanup cancelled twice leaks the upstream connections it closes.
    Both ways in (Litestar's and the fast route) send this way.
    """
    chunks = aiter(iterator)

    async def frames() -> None:
        start = head
        ended = False
        async for chunk in chunks:
            if start is not None:
                await send(start)
                start = None
            if not chunk:  # an event that says nothing in this dialect (usage the client did not ask for)
                continue
            ended = type(chunk) is Last  # the iterator still runs to its end: its cleanup is its own
            await send({"type": "http.response.body", "body": chunk if isinstance(chunk, bytes)
                        else chunk.encode(encoding), "more_body": not ended})
        if start is not None:
            await send(start)
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    try:
        await watched(frames(), receive, left)
    except ClientDisconnected:
        return  # nobody reads an answer now: the stream was cancelled, and accounted for as the client's
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()  # a stream stopped by a failed send: closed now (done already otherwise)


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
