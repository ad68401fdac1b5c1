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
    log is on and at which level; this only writes. A file is written unbuffered, each turn's lines in one
    `write` (no text layer and buffer to flush after it); stderr through its own streams, whose writes by
    others (warnings, tracebacks) its lines must not overtake.
    """

    def __init__(self, stream: TextIO | None = None, path: str | None = None) -> None:
        self.stream = stream
        self.file = open(path, "ab", buffering=0) if path is not None else None
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
            if self.file is not None:
                view = memoryview(data)
                while view:  # a regular file takes it whole; a pipe may take part
                    written = self.file.write(view)
                    if not written:
                        raise OSError("the access log took nothing")
                    view = view[written:]
            elif self.stream is not None:
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
    _sink.append(_Lines(sys.stderr) if destination == "-" else _Lines(path=destination))
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def line(fields: dict[str, Any]) -> None:
    """One access-log line (the middleware's, and the socket guard's for requests it refused)."""
    if _sink and log.isEnabledFor(logging.INFO):
        _sink[0].add(fields)


def now() -> float:
    """A line's `ts`: the time to the millisecond, as `round(time.time(), 3)` gives but for a tie (rounded in
    binary, not through a decimal string: a third of the cost)."""
    return int(time.time() * 1000 + 0.5) / 1000


def _ms(seconds: float) -> float:
    """Milliseconds to a tenth, as `now` rounds."""
    return int(seconds * 10000 + 0.5) / 10


def middleware(app: ASGIApp) -> ASGIApp:
    """Logs every HTTP request, served or not: it wraps the whole app, not only its routes.

    The line's dict is the one the app fills (`scope["shenron"]`: the accounting adds the model, the key, the
    outcome), made with its first fields in the line's order and completed at the end: no second dict a
    request. The accounting leaves out what it does not know (no `null`s)."""
    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http" or not _sink or not log.isEnabledFor(logging.INFO):
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        client = scope.get("client")
        fields: dict[str, Any] = {"ts": 0.0, "method": scope.get("method"), "path": scope["path"], "status": 0,
                                  "ms": 0.0, "client": client[0] if client else None}
        scope["shenron"] = fields  # type: ignore[typeddict-unknown-key]

        def sent(message: Any) -> Awaitable[None]:  # not a coroutine of its own: uvicorn's `send` is awaited
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            if log.isEnabledFor(logging.DEBUG):
                await app(scope, _with_body(receive, fields), sent)
            else:
                await app(scope, receive, sent)
        finally:
            fields["ts"] = now()
            fields["status"] = status
            fields["ms"] = _ms(time.perf_counter() - start)
            if _sink:
                _sink[0].add(fields)

    return logged


def _with_body(receive: Receive, fields: dict[str, Any]) -> Receive:
    """`receive`, keeping the request's body (its first 64 KiB) in the line: debug logging."""
    async def recv() -> Any:
        message = await receive()
        if message["type"] == "http.request" and message.get("body"):
            fields.setdefault("body", message["body"].decode("utf-8", "replace")[:65536])
        return message

    return recv
