"""Tier limits as pure decisions, and the counters they read (in memory, and in a real Redis)."""

from __future__ import annotations

import calendar
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.limits import MemoryCounters, RedisCounters, Windows, decide
from routing.settings import TierConfig

NOW = calendar.timegm((2026, 11, 21, 23, 59, 30))  # 30 s before midnight UTC, 10 days before December


def test_windows_are_utc_calendar_windows() -> None:
    w = Windows.at(NOW)
    assert (w.day, w.month) == ("20261121", "202611")
    assert w.to_minute == pytest.approx(30)
    assert w.to_day == pytest.approx(30)
    assert w.to_month == pytest.approx(9 * 86400 + 30)
    december = Windows.at(calendar.timegm((2026, 12, 31, 12, 0, 0)))
    assert december.to_month == pytest.approx(12 * 3600)


def _windows_from_the_calendar(now: float) -> tuple[object, ...]:
    """The windows as the calendar gives them for `now` alone (what `Windows.at` gave before it kept its day)."""
    t = time.gmtime(now)
    day_start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    month_start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    next_month = calendar.timegm((t.tm_year + t.tm_mon // 12, t.tm_mon % 12 + 1, 1, 0, 0, 0))
    minute = int(now // 60)
    return (minute, time.strftime("%Y%m%d", t), time.strftime("%Y%m", t), (minute + 1) * 60 - now,
            day_start + 86400 - now, next_month - now, day_start, month_start)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4_102_444_800) | st.sampled_from(
    [calendar.timegm((y, m, 1, 0, 0, 0)) + d for y in (2024, 2026) for m in (1, 2, 3, 12) for d in (-0.5, 0, 0.5)]),
    min_size=1, max_size=6))
def test_windows_kept_for_the_day_are_the_calendar_s(moments: list[float]) -> None:
    """`Windows.at` works a day's names and its month's bounds out once a day: asked about any moments in any
    order (back and forth across midnights, month and year ends, leap days), it says what the calendar says."""
    for now in moments:
        assert msgspec.structs.astuple(Windows.at(now)) == _windows_from_the_calendar(now)


def test_requests_per_minute_allows_the_limit_and_refuses_the_next() -> None:
    tier = TierConfig(models=["*"], requests_per_minute=3)
    w = Windows.at(NOW)
    assert decide("pro", tier, w, 3, 0, 0.0) is None
    denied = decide("pro", tier, w, 4, 0, 0.0)
    assert denied is not None
    assert denied.limit == "requests-per-minute" and denied.retry_after == 30
    assert "3 requests per minute" in denied.message and "'pro'" in denied.message


def test_tokens_per_day_waits_for_midnight_utc() -> None:
    tier = TierConfig(models=["*"], tokens_per_day=1000)
    w = Windows.at(NOW)
    assert decide("pro", tier, w, 1, 999, 0.0) is None
    denied = decide("pro", tier, w, 1, 1000, 0.0)
    assert denied is not None and denied.limit == "tokens-per-day" and denied.retry_after == 30


def test_cloud_budget_waits_for_next_month() -> None:
    tier = TierConfig(models=["*"], cloud_budget_usd_per_month=50.0)
    w = Windows.at(NOW)
    assert decide("enterprise", tier, w, 1, 10**9, 49.99) is None  # no token limit set: tokens never refuse
    denied = decide("enterprise", tier, w, 1, 0, 50.0)
    assert denied is not None and denied.limit == "cloud-budget-usd-per-month"
    assert denied.retry_after == 9 * 86400 + 30


def test_unlimited_tier_never_refuses() -> None:
    assert decide("x", TierConfig(models=["*"]), Windows.at(NOW), 10**6, 10**12, 1e9) is None


async def _ledger(key_id: str, since: float) -> tuple[int, float, float]:
    """key_old used 500 tokens and $1.25 of cloud earlier today."""
    return (500, 0.0, 1.25) if key_id == "key_old" and since <= NOW else (0, 0.0, 0.0)


async def test_memory_counters_start_from_the_ledger_and_count() -> None:
    c = MemoryCounters(_ledger)
    w = Windows.at(NOW)
    assert await c.hit("key_old", w) == (1, 500, 1.25)
    await c.add("key_old", w, 100, 0.5)
    assert await c.hit("key_old", w) == (2, 600, 1.75)
    assert await c.hit("key_new", w) == (1, 0, 0.0)
    next_minute = Windows.at(NOW + 31)  # next minute, next day: requests and tokens start again
    assert (await c.hit("key_old", next_minute))[:2] == (1, 0)


async def test_redis_counters_are_shared_between_processes(redis_url: str, redis_prefix: str) -> None:
    a = RedisCounters(redis_url, redis_prefix, _ledger)
    b = RedisCounters(redis_url, redis_prefix, _ledger)  # a second replica
    w = Windows.at(NOW)
    try:
        assert await a.hit("key_old", w) == (1, 500, 1.25)
        await b.add("key_old", w, 100, 0.5)
        n, tokens, usd = await b.hit("key_old", w)
        assert (n, tokens) == (2, 600) and usd == pytest.approx(1.75)
    finally:
        keys = [k async for k in a.r.scan_iter(redis_prefix + "*")]
        if keys:
            await a.r.delete(*keys)
        await a.close()
        await b.close()
