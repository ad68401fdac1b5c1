"""`shenron usage` arithmetic: groups, totals, cost split, percentiles, --since."""

from __future__ import annotations

import pytest

from proxy.store import KeyRecord, LedgerRow, MemberUse
from proxy.usage import percentile, render, since, summarize


def row(model: str, key: str | None, latency: int, status: int = 200,
        members: list[MemberUse] | None = None) -> LedgerRow:
    if members is None:
        members = [MemberUse("goku", "ok", latency, 10, 5, 0.0, False)]
    cost = sum(m.cost_usd for m in members)
    cloud = sum(m.cost_usd for m in members if m.cloud)
    return LedgerRow(ts=1.0, request_id="r", key_id=key, model=model, strategy="single", status=status,
                     latency_ms=latency, prompt_tokens=sum(m.prompt_tokens for m in members),
                     completion_tokens=sum(m.completion_tokens for m in members), cost_usd=cost,
                     cloud_cost_usd=cloud, members=members)


ROWS = [
    row("ultra-instinct", "key_a", 100),
    row("ultra-instinct", "key_a", 300),
    row("full-council", "key_b", 900, members=[MemberUse("goku", "ok", 800, 10, 5), MemberUse(
        "gpt", "ok", 900, 100, 50, 0.002, True), MemberUse("krillin", "timeout", 900)]),
    row("full-council", None, 50, status=429, members=[]),
]
KEYS = {"key_a": KeyRecord("key_a", "acme", "pro", "sk-shenron-abc", 0.0)}


def test_by_model_sums_and_totals() -> None:
    lines = {ln.group: ln.as_dict() for ln in summarize(ROWS, "model", KEYS)}
    assert lines["ultra-instinct"]["requests"] == 2
    assert lines["ultra-instinct"]["prompt_tokens"] == 20
    assert lines["full-council"]["errors"] == 1
    assert lines["full-council"]["cloud_cost_usd"] == pytest.approx(0.002)
    assert lines["TOTAL"]["requests"] == 4
    assert lines["TOTAL"]["prompt_tokens"] == 20 + 110


def test_by_key_names_keys_and_keyless_requests() -> None:
    groups = [ln.group for ln in summarize(ROWS, "key", KEYS)]
    assert groups[0] == "acme (key_a)"
    assert "key_b" in groups and "(no key)" in groups


def test_by_member_splits_requests_into_calls() -> None:
    lines = {ln.group: ln.as_dict() for ln in summarize(ROWS, "member", KEYS)}
    assert lines["goku"]["requests"] == 3
    assert lines["krillin"]["errors"] == 1
    assert lines["gpt"]["cloud_cost_usd"] == pytest.approx(0.002) and lines["gpt"]["local_cost_usd"] == 0


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 95) == 0
    assert percentile([100, 300], 50) == 100
    assert percentile(list(range(1, 101)), 95) == 95


def test_since_accepts_durations_and_dates() -> None:
    assert since("7d", now=1_000_000) == 1_000_000 - 7 * 86400
    assert since("30m", now=1000) == 1000 - 1800
    assert since("2026-11-01") == 1793491200
    with pytest.raises(ValueError, match="expected a duration"):
        since("last week")


def test_formats() -> None:
    lines = summarize(ROWS, "model", KEYS)
    assert render(lines, "csv", "model").splitlines()[0].startswith("group,requests,errors")
    assert '"requests": 4' in render(lines, "json", "model")
    table = render(lines, "table", "model").splitlines()
    assert table[0].split()[:2] == ["model", "requests"] and table[-1].startswith("TOTAL")


def test_by_session_counts_a_cascade_s_escalated_turns() -> None:
    import msgspec

    turns = [msgspec.structs.replace(row("cascade", "key_a", 100), session="s_1", escalated=e)
             for e in (False, True, True, False)]
    other = msgspec.structs.replace(row("ultra-instinct", "key_a", 100), session="s_2")
    lines = {ln.group: ln.as_dict() for ln in summarize([*turns, other], "session", KEYS)}
    assert (lines["s_1"]["requests"], lines["s_1"]["escalations"]) == (4, 2)
    assert lines["s_2"]["escalations"] == 0 and lines["TOTAL"]["escalations"] == 2
    assert "escalated" in render(summarize(turns, "session", KEYS), "table", "session").splitlines()[0]
