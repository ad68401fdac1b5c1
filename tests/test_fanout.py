"""fan_out, the council's way of asking everyone at once: arrivals in the order they came (those of one
turn in config order), a stop as soon as the rule says so, a deadline for the rest, bugs raised."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from routing.errors import MemberFailure
from routing.fanout import fan_out


def after(seconds: float, value: Any = None, exc: BaseException | None = None
          ) -> Callable[[], Coroutine[Any, Any, Any]]:
    async def call() -> Any:
        await asyncio.sleep(seconds)
        if exc is not None:
            raise exc
        return value
    return call


async def test_arrivals_of_one_turn_count_in_config_order_and_failures_are_outcomes() -> None:
    run = await fan_out({"b": after(0, "B"), "a": after(0, "A"), "c": after(0.05, exc=MemberFailure("c", "down"))},
                        5)
    assert [(o.member, o.arrival) for o in sorted(run.outcomes.values(), key=lambda o: o.arrival)] == [
        ("b", 0), ("a", 1), ("c", 2)]
    assert run.outcomes["c"].failure is not None and not run.deadline_hit and not run.stopped_early


async def test_enough_stops_the_rest_which_are_cancelled() -> None:
    cancelled: list[str] = []

    def slow(name: str) -> Callable[[], Coroutine[Any, Any, Any]]:
        async def call() -> Any:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
        return call

    run = await fan_out({"a": after(0, "A"), "b": slow("b"), "c": slow("c")}, 5,
                        lambda done, pending: "a" in done)
    assert run.stopped_early and sorted(cancelled) == ["b", "c"]
    assert {n: o.stopped for n, o in run.outcomes.items()} == {"a": None, "b": "cancelled", "c": "cancelled"}


async def test_the_deadline_keeps_what_came_and_marks_the_rest_timed_out() -> None:
    run = await fan_out({"a": after(0, "A"), "b": after(5)}, 0.2)
    assert run.deadline_hit and run.outcomes["a"].result == "A" and run.outcomes["b"].stopped == "timeout"


@pytest.mark.parametrize("bug", [ValueError("bug"), TimeoutError()])
async def test_a_member_s_unexpected_exception_is_raised_even_a_timeout_error(bug: BaseException) -> None:
    """A member's own TimeoutError (its backend turns a real one into MemberTimeout) is a bug, not the
    council's deadline."""
    with pytest.raises(type(bug)):
        await fan_out({"a": after(0, exc=bug), "b": after(5)}, 10)
