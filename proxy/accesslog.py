"""One JSON line per HTTP request, without prompts or keys (debug logging adds the request body)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable
from typing import Any, TextIO

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("shenron.access")
_encode = msgspec.json.Encoder().encode


class _Lines:
    """The access log's destination: the lines of one loop turn written together at its end.

    Through `logging` a line cost a LogRecord, a handler lock and a flush (a write syscall) per request,
    about a twentieth of a pass-through's CPU. The logger `shenron.access` still says whether the
    log is on and at which level; this only writes.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines: list[bytes] = []
        self.soon = False

    def add(self, fields: dict[str, Any]) -> None:
        self.lines.append(_encode(fields) + b"\n")
        if self.soon:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self.soon = True
        except RuntimeError:  # no loop (start-up, tests): at once
            self.flush()

    def flush(self) -> None:
        self.soon = False
        if not self.lines:
            return
        data, self.lines = b"".join(self.lines), []
        try:
            self.stream.buffer.write(data)
            self.stream.flush()
        except (OSError, ValueError) as e:  # a full disk or a closed stderr must not fail requests
            logging.getLogger("shenron").warning("access log not written: %s", e)


_sink: list[_Lines] = []
"""This process's destination, once `setup` chose it (as `logging` keeps its handlers per process)."""


def setup(destination: str, debug: bool = False) -> None:
    """`-`: stderr; `off`: nothing; anything else: a file, appended to. `debug` adds request bodies."""
    log.propagate = False
    log.handlers.clear()
    _sink.clear()
    if destination == "off":
        log.disabled = True
        return
    log.disabled = False
    _sink.append(_Lines(sys.stderr if destination == "-" else open(destination, "a", encoding="utf-8")))
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def line(fields: dict[str, Any]) -> None:
    """One access-log line (the middleware's, and the socket guard's for requests it refused)."""
    if _sink and log.isEnabledFor(logging.INFO):
        _sink[0].add(fields)


def middleware(app: ASGIApp) -> ASGIApp:
    """Logs every HTTP request, served or not: it wraps the whole app, not only its routes."""
    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http" or not log.isEnabledFor(logging.INFO):
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        fields: dict[str, Any] = {}
        scope["shenron"] = fields  # type: ignore[typeddict-unknown-key]
        debug = log.isEnabledFor(logging.DEBUG)

        async def recv() -> Any:
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                fields.setdefault("body", message["body"].decode("utf-8", "replace")[:65536])
            return message

        def sent(message: Any) -> Awaitable[None]:  # not a coroutine of its own: uvicorn's `send` is awaited
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await app(scope, recv if debug else receive, sent)
        finally:
            client = scope.get("client")
            line({"ts": round(time.time(), 3), "method": scope.get("method"), "path": scope["path"],
                  "status": status, "ms": round((time.perf_counter() - start) * 1000, 1),
                  "client": client[0] if client else None, **{k: v for k, v in fields.items() if v is not None}})

    return logged
