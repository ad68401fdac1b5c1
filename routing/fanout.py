"""Ask every member at once; stop as soon as a pure rule says the rest are not needed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from routing.errors import MemberFailure
from routing.report import Timer

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """How one member ended: a result, a failure, or `cancelled` / `timeout` when it was stopped."""

    member: str
    latency_ms: int
    arrival: int
    """0 for the first member to finish; members finishing together count in config order."""
    result: T | None = None
    failure: MemberFailure | None = None
    stopped: str | None = None


@dataclass
class FanOut(Generic[T]):
    outcomes: dict[str, Outcome[T]] = field(default_factory=dict)
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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    timer = Timer()
    order = {name: i for i, name in enumerate(calls)}
    tasks: dict[asyncio.Task[T], str] = {asyncio.create_task(call()): name for name, call in calls.items()}
    pending = set(tasks)
    result: FanOut[T] = FanOut()
    try:
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                result.deadline_hit = True
                break
            done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: order[tasks[t]]):
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
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    stopped = "cancelled" if result.stopped_early else "timeout"
    for task in pending:
        result.outcomes[tasks[task]] = Outcome(tasks[task], timer.ms(), len(result.outcomes), stopped=stopped)
    return result


def ordered(outcomes: dict[str, Outcome[Any]], names: list[str]) -> list[Outcome[Any]]:
    return [outcomes[n] for n in names if n in outcomes]
