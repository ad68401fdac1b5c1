"""One JSON line per HTTP request, without prompts or keys (debug logging adds the request body)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("shenron.access")
_encode = msgspec.json.Encoder().encode


def setup(destination: str, debug: bool = False) -> None:
    """`-`: stderr; `off`: nothing; anything else: a file, appended to. `debug` adds request bodies."""
    log.propagate = False
    log.handlers.clear()
    if destination == "off":
        log.disabled = True
        return
    handler = logging.StreamHandler(sys.stderr) if destination == "-" else logging.FileHandler(destination)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def line(fields: dict[str, Any]) -> None:
    """One access-log line (the middleware's, and the socket guard's for requests it refused)."""
    if log.isEnabledFor(logging.INFO):
        log.info(_encode(fields).decode())


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
            if debug and message["type"] == "http.request" and message.get("body"):
                fields.setdefault("body", message["body"].decode("utf-8", "replace")[:65536])
            return message

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, recv if debug else receive, sent)
        finally:
            client = scope.get("client")
            line({"ts": round(time.time(), 3), "method": scope.get("method"), "path": scope["path"],
                  "status": status, "ms": round((time.perf_counter() - start) * 1000, 1),
                  "client": client[0] if client else None, **{k: v for k, v in fields.items() if v is not None}})

    return logged
