"""The fast route: the hot requests answered by a raw ASGI handler in front of Litestar.

`POST /v1/chat/completions` and `POST /v1/responses` (and `POST /v1/messages` where no Anthropic backend
could take it as it is) are what clients send all day. Litestar's request machinery (building its
Request, parsing the handler's signature, its Response objects) cost about a fifth of a pass-through's
CPU (BENCHMARKS.md). Here the body is read from `receive` straight into bytes and the answer written
with `send`, and everything between is the same function Litestar's handlers call (`serve.respond`):
the key, the tier, the limits, the cache, the strategy, the ledger, the metrics, the access log fields,
cancellation when the client leaves, and errors in each dialect's envelope (`errors.rendered`). Every
other path, and every request while CORS is configured, goes on to Litestar.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from litestar import Litestar
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ASGIApp

from proxy import errors, serve
from proxy.dialects import Dialect
from proxy.dialects.chat import CHAT
from proxy.dialects.messages import MESSAGES
from proxy.dialects.responses import RESPONSES
from proxy.streaming import ClientDisconnected, left_of, relay

JSON_HEADERS = [(b"content-type", b"application/json")]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
"""ASGI, loosely typed: the messages here are built and read by hand."""
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
               *((k.encode(), v.encode()) for k, v in serve.SSE_HEADERS.items())]


class FastRoute:
    def __init__(self, app: Litestar, max_body_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.routes: dict[str, Dialect] = {"/v1/chat/completions": CHAT, "/v1/responses": RESPONSES,
                                           "/v1/messages": MESSAGES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dialect = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if dialect is None or (dialect is MESSAGES and "anthropic" in self.app.state.router.kinds):
            await self.app(scope, receive, send)  # type: ignore[arg-type]  # a native Anthropic request: Litestar's
            return
        headers = _headers(scope)
        left = left_of(scope)

        async def body() -> bytes:
            chunks: list[bytes] = []
            size = 0
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                raise RequestEntityTooLarge
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            return b"".join(chunks)

        try:
            out = await serve.respond(self.app.state, headers, body, receive,  # type: ignore[arg-type]
                                      scope.setdefault("shenron", {}), dialect, left)
        except Exception as e:  # as Litestar's exception handler answers: the same function
            status, content, extra = errors.rendered(e, scope["path"])
            await _whole(send, status, content, [*JSON_HEADERS, *((k.encode(), v.encode()) for k, v in extra.items())])
            return
        if out.events is None:
            await _whole(send, 200, out.body, JSON_HEADERS)
            return
        await relay(out.events, send, receive, left=left,  # type: ignore[arg-type]
                    head={"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})


def _headers(scope: Scope) -> Mapping[str, str]:
    """Request headers by lower-case name (the first of repeated ones, as Litestar's `get` gives)."""
    out: dict[str, str] = {}
    for k, v in scope["headers"]:
        out.setdefault(k.decode("latin-1"), v.decode("latin-1"))
    return out


async def _whole(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def wrap(app: Litestar, max_body_bytes: int, enabled: bool) -> ASGIApp:
    return cast(ASGIApp, FastRoute(app, max_body_bytes)) if enabled else app
