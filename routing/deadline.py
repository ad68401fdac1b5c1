"""A member call's deadline: `asyncio.timeout`'s contract, checked by one timer per event loop.

`asyncio.timeout` arms a timer of the loop's own for every call (with uvloop a libuv timer made, started,
stopped and closed in a later loop phase), about 8 us of CPU for a call that suspends, a twentieth of a
pass-through. A member's deadline is seconds away (120 by default) and is almost never reached, so
exactness to the millisecond buys nothing: here the deadlines of a loop's calls sit in one set, and one
timer, running only while the set holds any, expires those that have passed every TICK seconds. A
deadline under COARSE seconds (tests, a check's short budget) is `asyncio.timeout`'s own, exact.

Other things with a deadline that moves are entries of the same set (`Expiring`), each for its whole life
with its time set and reset in place: an upstream connection while its body is read (the read timeout of a
stream, routing/upstream/conn.py) and a client's connection while a request is read (the socket guard's
408, proxy/sockets.py). No timer is made, started or cancelled a read or a request.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from types import TracebackType
from typing import Protocol

TICK = 0.1
"""How late a coarse deadline may expire."""
COARSE = 2.0
"""Deadlines at least this far away are checked every TICK; nearer ones are exact."""


class Expiring(Protocol):
    """What the tick checks: a `Within`, or a connection whose body is being read (its `when` pushed on at
    every read, `NEVER` while nobody waits for it: one entry for a whole stream, not one a read)."""

    when: float

    def expire(self) -> None: ...


NEVER = float("inf")

ENCLOSING: ContextVar[float] = ContextVar("shenron_enclosing_deadline", default=NEVER)
"""When (`time.monotonic()`) an enclosing wait gives up on the calls it started and cancels them: `fan_out`
sets it for its members' tasks. A `Within` of one of those calls that would pass at least SURELY_LATER after
it can never be the one that ends the call, and is not armed (a council's six member calls, six deadlines
armed and disarmed for nothing). A task a call starts inherits it: one the call does not wait for (nothing in a
member call starts such a task today) must not rely on a `Within` of two seconds or more to end, and should
reset it (`ENCLOSING.set(NEVER)`) where it does."""
SURELY_LATER = 1.0
"""The margin by which a call's deadline must follow the enclosing one to be left out: the two are read from
clocks that may differ by a loop turn (the loop's cached time, the monotonic clock), and both expire up to a
TICK late."""


class Deadlines:
    """The coarse deadlines of one event loop."""

    __slots__ = ("armed", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.armed: set[Expiring] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, w: Expiring) -> None:
        self.armed.add(w)
        if self.handle is None:
            self.handle = self.loop.call_at(self.loop.time() + TICK, self._tick)

    def discard(self, w: Expiring) -> None:
        """`w` no longer has a deadline here (the timer stops at its next tick if nothing else has)."""
        self.armed.discard(w)

    def _tick(self) -> None:
        now = self.loop.time()
        try:
            for w in [w for w in self.armed if w.when <= now]:
                self.armed.discard(w)
                try:
                    w.expire()
                except Exception as e:  # one entry's failure (a refusal's write, say) must not stop the others'
                    self.loop.call_exception_handler({"message": f"a deadline's expiry failed: {w!r}",
                                                      "exception": e})
        finally:
            self.handle = self.loop.call_at(now + TICK, self._tick) if self.armed else None


_loops: dict[asyncio.AbstractEventLoop, Deadlines] = {}
"""Per running loop (a process runs one; a test suite many, each forgotten once it has no deadline)."""


def of(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The loop's coarse deadlines (made on first use)."""
    deadlines = _loops.get(loop)
    if deadlines is None:
        for old in [k for k, v in _loops.items() if not v.armed]:  # loops of the past (tests) go
            del _loops[old]
        deadlines = _loops[loop] = Deadlines(loop)
    return deadlines


class Within:
    """`async with Within(seconds):` raises TimeoutError out of the block when `seconds` passed while it ran
    (then cancelled at the await it was in), exactly as `asyncio.timeout(seconds)`, TICK late at most."""

    __slots__ = ("_cancelling", "_deadlines", "_exact", "_expired", "_task", "seconds", "when")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.when = 0.0
        self._expired = False
        self._exact: asyncio.Timeout | None = None

    async def __aenter__(self) -> Within:
        if self.seconds < COARSE:
            self._exact = asyncio.timeout(self.seconds)
            await self._exact.__aenter__()
            return self
        enclosing = ENCLOSING.get()
        if enclosing != NEVER and time.monotonic() + self.seconds >= enclosing + SURELY_LATER:
            self._deadlines = None  # the enclosing wait cancels the call first: nothing to arm
            return self
        # the loop from the task, not asked again: Python 3.11 asks the OS for the pid each time the running loop
        # is looked up (current_task looks it up once)
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self._task, self._cancelling = task, task.cancelling()
        self.when = loop.time() + self.seconds
        deadlines = of(loop)
        deadlines.add(self)
        self._deadlines = deadlines
        return self

    def expired(self) -> bool:
        """Whether this deadline passed (so a TimeoutError out of its block is its own)."""
        return self._exact.expired() if self._exact is not None else self._expired

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._exact is not None:
            await self._exact.__aexit__(typ, exc, tb)
            return
        if self._deadlines is None:
            return
        self._deadlines.discard(self)
        # as asyncio.Timeout: the cancellation this deadline made is taken back whatever ended the block
        if self._expired and self._task.uncancel() <= self._cancelling and typ is asyncio.CancelledError:
            raise TimeoutError from exc
