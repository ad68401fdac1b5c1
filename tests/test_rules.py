"""The pure routing rules: escalation, breakers, admission, degradation."""

from __future__ import annotations

import math

import pytest

from routing.decide import rules
from routing.models import RISK_WORDS


@pytest.mark.parametrize("text, hit", [
    ("Please delete the production database", "delete"),
    ("DROP TABLE users;", "drop"),
    ("run rm -rf / for me", "rm"),
    ("update the firmware", None),         # `rm` only as a whole word
    ("what is a keyboard shortcut", None),  # `key` only as a whole word
    ("Which stocks should I buy?", "buy"),
    ("Explain photosynthesis", None),
])
def test_risk_words_are_whole_words_in_any_case(text: str, hit: str | None) -> None:
    assert rules.risk_word(rules.word_hashes(text), RISK_WORDS) == hit


def test_word_hashes_do_not_keep_the_prompt() -> None:
    hashes = rules.word_hashes("my secret plan")
    assert all(len(h) == 12 for h in hashes) and "secret" not in " ".join(hashes)


def test_escalation_order_and_reasons() -> None:
    words = rules.word_hashes("deploy it")
    assert rules.escalate_before(True, words, RISK_WORDS) == ("asked", "the client asked for validation")
    assert rules.escalate_before(False, words, RISK_WORDS)[0] == "risk-word"  # type: ignore[index]
    assert rules.escalate_before(False, rules.word_hashes("hello"), RISK_WORDS) is None
    assert rules.escalate_after(0.5, 0.95)[0] == "low-confidence"  # type: ignore[index]
    assert rules.escalate_after(0.97, 0.95) is None
    assert rules.escalate_after(None, 0.95) is None


def test_logprob_confidence_is_the_geometric_mean_probability() -> None:
    lp = {"content": [{"token": "4", "logprob": math.log(0.9)}, {"token": "2", "logprob": math.log(0.5)}]}
    assert rules.logprob_confidence(lp) == pytest.approx(math.sqrt(0.45), abs=1e-4)
    assert rules.logprob_confidence(None) is None
    assert rules.logprob_confidence({"content": []}) is None


def test_breaker_opens_after_repeated_failures_half_opens_and_closes() -> None:
    b = rules.Breaker()
    for t in range(2):
        b = rules.breaker_after(b, False, t, threshold=3, reason="refused")
        assert b.state == "closed"
    b = rules.breaker_after(b, False, 2, threshold=3, reason="refused")
    assert b.state == "open" and b.opened_at == 2 and b.reason == "refused"
    assert rules.breaker_at(b, 5, open_s=10).state == "open"
    half = rules.breaker_at(b, 12, open_s=10)
    assert half.state == "half-open" and rules.usable(half)
    assert rules.breaker_after(half, False, 12, threshold=3).state == "open"  # a failed trial re-opens at once
    assert rules.breaker_after(half, True, 12, threshold=3) == rules.Breaker()
    assert rules.breaker_after(rules.breaker_after(rules.Breaker(), False, 0, 3), True, 1, 3).failures == 0


def test_admission() -> None:
    assert rules.may_start(0, 1) and not rules.may_start(1, 1) and rules.may_start(99, None)


def test_degradation_thresholds() -> None:
    limits = {"max_inflight": 8, "max_p95_ms": 2000, "min_healthy_members": 4, "min_mem_available_pct": 10}
    calm = rules.Load(inflight=2, p95_ms=800, healthy_members=6, mem_available_pct=50)
    assert rules.degrade(calm, limits) is None
    assert "max-inflight" in (rules.degrade(rules.Load(8, 800, 6, 50), limits) or "")
    assert "max-p95-ms" in (rules.degrade(rules.Load(2, 2500, 6, 50), limits) or "")
    assert "min-healthy-members" in (rules.degrade(rules.Load(2, 800, 3, 50), limits) or "")
    assert "min-mem-available-pct" in (rules.degrade(rules.Load(2, 800, 6, 5.5), limits) or "")
    assert rules.degrade(rules.Load(100, None, 0, None), {}) is None


def test_p95() -> None:
    assert rules.p95([]) is None
    assert rules.p95([float(i) for i in range(1, 101)]) == 95.0
    assert rules.p95([5.0]) == 5.0
