"""Ask every member at once; stop as soon as a pure rule says the rest are not needed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from routing.deadline import ENCLOSING, Within
from routing.errors import MemberFailure
from routing.report import Timer

T = TypeVar("T")


async def stop(tasks: Collection[asyncio.Future[Any]]) -> None:
    """Cancel each unfinished task exactly once and wait until their cleanup has run.

    `asyncio.gather` is not used here: when the caller is cancelled again while it waits (anyio's
    cancel scopes re-deliver cancellation on every step), gather passes that second cancellation on
    to the tasks, into httpcore's shielded close, and the connection stays ACTIVE in the pool for
    good. Here a second cancellation of the caller only ends the wait: the tasks, cancelled once,
    finish their cleanup on their own.
    """
    pending = {t for t in tasks if not t.done()}
    for t in pending:
        t.cancel()
    try:
        if pending:
            await asyncio.wait(pending)
    finally:
        for t in tasks:
            if t.done() and not t.cancelled():
                t.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


class Outcome(msgspec.Struct, Generic[T]):
    """How one member ended: a result, a failure, or `cancelled` / `timeout` when it was stopped (a struct: one
    a member, made in C)."""

    member: str
    latency_ms: int
    arrival: int
    """0 for the first member to finish; members finishing together count in config order."""
    result: T | None = None
    failure: MemberFailure | None = None
    stopped: str | None = None


class FanOut(msgspec.Struct, Generic[T]):
    outcomes: dict[str, Outcome[T]] = msgspec.field(default_factory=dict)
    deadline_hit: bool = False
    stopped_early: bool = False


async def fan_out(
    calls: Mapping[str, Callable[[], Coroutine[Any, Any, T]]],
    timeout_s: float,
    enough: Callable[[dict[str, Outcome[T]], set[str]], bool] = lambda done, pending: False,
) -> FanOut[T]:
    """Run every call concurrently within `timeout_s`.

    After each arrival `enough(outcomes so far, names still pending)` decides whether to stop;
    the members still running are then cancelled, which closes their upstream connections.
    Every member ends with an Outcome; unexpected exceptions (bugs) propagate.
    """
    timer = Timer()
    order = {name: i for i, name in enumerate(calls)}
    loop = asyncio.get_running_loop()  # once: Python 3.11 asks the OS for the pid on every call of it
    gives_up = ENCLOSING.set(time.monotonic() + timeout_s)  # in the calls' context: `Within` reads it
    try:
        tasks: dict[asyncio.Task[T], str] = {loop.create_task(call()): name for name, call in calls.items()}
    finally:
        ENCLOSING.reset(gives_up)
    pending = set(tasks)
    result: FanOut[T] = FanOut()
    # One callback a task and one deadline for the whole wait, not `asyncio.wait` after every arrival (a
    # callback on every pending task and a timer, each time)
    arrived: list[asyncio.Task[T]] = []
    ready = asyncio.Event()

    def landed(task: asyncio.Task[T]) -> None:
        arrived.append(task)
        ready.set()

    for task in tasks:
        task.add_done_callback(landed)
    within = Within(timeout_s)
    try:
        async with within:
            while pending:
                await ready.wait()
                ready.clear()
                done = sorted(arrived, key=lambda t: order[tasks[t]])
                arrived.clear()
                for task in done:
                    pending.discard(task)
                    name = tasks[task]
                    exc = task.exception()
                    if exc is not None and not isinstance(exc, MemberFailure):
                        raise exc
                    result.outcomes[name] = Outcome(name, timer.ms(), len(result.outcomes),
                                                    result=None if exc else task.result(), failure=exc)
                if pending and enough(result.outcomes, {tasks[t] for t in pending}):
                    result.stopped_early = True
                    break
            else:
                return result
    except TimeoutError:
        if not within.expired():
            raise  # a member's own, not the deadline's: a bug, as any other unexpected exception
        result.deadline_hit = True
    finally:
        await stop(pending)
    stopped = "cancelled" if result.stopped_early else "timeout"
    for task in pending:
        result.outcomes[tasks[task]] = Outcome(tasks[task], timer.ms(), len(result.outcomes), stopped=stopped)
    return result


def ordered(outcomes: dict[str, Outcome[Any]], names: list[str]) -> list[Outcome[Any]]:
    return [outcomes[n] for n in names if n in outcomes]
