"""Stopping without dropping anything: what a replica does between SIGTERM and its exit.

A load balancer needs a moment to notice that a replica is going away. On SIGTERM the replica answers
`/ready` with 503 at once and keeps serving for `[server] drain-s`, closing each client connection after
its response (so a balancer's kept-alive connections go elsewhere instead of racing the shutdown).
Then the ASGI server's own shutdown runs: the listener closes, what is in flight finishes (streams too,
up to `drain-timeout-s`), and the app's lifespan ends, which flushes the ledger and frees the replica's
GPU slots. A second SIGTERM, or Ctrl-C, skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("shenron")


class Drain:
    def __init__(self, drain_s: float = 0.0) -> None:
        self.drain_s = drain_s
        self.since: float | None = None
        """When SIGTERM came; None while serving as usual."""
        self._task: asyncio.Task[None] | None = None
        self._previous: Any = None

    @property
    def draining(self) -> bool:
        return self.since is not None

    def install(self) -> None:
        """Take SIGTERM from the ASGI server (it gets it back, later, to stop). Inside the app's lifespan,
        so every worker process drains on its own."""
        if threading.current_thread() is not threading.main_thread():
            return  # a test client's thread: no signals here
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return  # not run by a server that stops on SIGTERM: nothing to hand over to
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.begin)
        except (NotImplementedError, RuntimeError, ValueError):
            return
        self._previous = previous

    def uninstall(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def begin(self) -> None:
        if self.draining:  # a second SIGTERM: stop now
            self._stop()
            return
        self.since = time.monotonic()
        log.warning("SIGTERM: draining for %gs (/ready answers 503), then finishing what is in flight", self.drain_s)
        self._task = asyncio.get_running_loop().create_task(self._after(self.drain_s))

    async def _after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._stop()

    def _stop(self) -> None:
        stop: Callable[[int, Any], Any] | None = self._previous if callable(self._previous) else None
        if stop is not None:
            stop(signal.SIGTERM, None)  # the server's own graceful shutdown

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """While draining, every response closes its connection after it."""
        async def closing(scope: Scope, receive: Receive, send: Send) -> None:
            if not self.draining or str(scope["type"]) != "http":
                await app(scope, receive, send)
                return

            async def sent(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
                await send(message)

            await app(scope, receive, sent)

        return closing
