"""Routing decisions as pure functions of counters and config: escalation, breakers, admission, degradation.

Nothing here does I/O or reads a clock; callers pass `now`. Each decision is also what a
decision record stores, so `shenron replay` can re-decide recorded traffic under a new config.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

_WORD = re.compile(r"[\w'-]+", re.U)


# --- cascade ---------------------------------------------------------------------------------

def words(text: str) -> set[str]:
    """The whole words of a text, lowercased (`rm -rf` has the word `rm`; `firmware` has no `rm`)."""
    return {w.strip("'-") for w in _WORD.findall(text.lower())} - {""}


def word_hashes(text: str) -> list[str]:
    """The words as short hashes: a decision record can be re-checked against new risk words
    without keeping the prompt."""
    return sorted(hashlib.sha256(w.encode()).hexdigest()[:12] for w in words(text))


def risk_word(hashes: Iterable[str], risk_words: Sequence[str]) -> str | None:
    """The first configured risk word that the text contains, as a whole word, in any case."""
    present = set(hashes)
    for w in risk_words:
        if hashlib.sha256(w.lower().encode()).hexdigest()[:12] in present:
            return w
    return None


def logprob_confidence(logprobs: Any) -> float | None:
    """exp(mean token logprob): the geometric mean of the chosen tokens' probabilities, in [0, 1].

    Reads OpenAI's `choices[0].logprobs.content[*].logprob` (llama.cpp and vLLM send the same);
    None when the backend sent none.
    """
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    values = [t["logprob"] for t in content or () if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))]
    if not values:
        return None
    return round(math.exp(max(-50.0, sum(values) / len(values))), 4)


Reason = Literal["asked", "risk-word", "low-confidence"]


def escalate_before(asked: bool, hashes: Iterable[str], risk_words: Sequence[str]) -> tuple[Reason, str] | None:
    """Escalation known before any model answers: the client asked, or the request holds a risk word."""
    if asked:
        return "asked", "the client asked for validation"
    hit = risk_word(hashes, risk_words)
    if hit is not None:
        return "risk-word", f"the request contains the risk word {hit!r}"
    return None


def escalate_after(confidence: float | None, min_confidence: float) -> tuple[Reason, str] | None:
    """Escalation from the first answer's confidence; an unknown confidence does not escalate."""
    if confidence is not None and confidence < min_confidence:
        return "low-confidence", f"confidence {confidence:.3f} < min-confidence {min_confidence:g}"
    return None


# --- an agent's turn: what its own tools just said ------------------------------------------

_FAILED: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\A\s*Error:"), "the tool reported an error"),  # Anthropic's is_error, as the dialect writes it
    (re.compile(r"(?:Process exited with code|Exit code|exit code|exit status)\s*:?\s*([1-9]\d*)"), "exit code {0}"),
    (re.compile(r"(?m)^=+ .*?\b(\d+) failed\b"), "pytest {0} failed"),
    (re.compile(r"test result: FAILED\. \d+ passed; (\d+) failed"), "cargo test {0} failed"),
    (re.compile(r"(?m)^--- FAIL: (\S+)"), "go test {0} failed"),
    (re.compile(r"Tests:\s+(\d+) failed"), "jest {0} failed"),
    (re.compile(r"error (TS\d+):"), "tsc {0}"),
    (re.compile(r"(?m)^error(?:\[(E\d+)\])?: "), "compiler error {0}"),
    (re.compile(r"Traceback \(most recent call last\):"), "traceback"),
]
_PASSED = [re.compile(p) for p in (
    r"(?:Process exited with code|Exit code|exit code|exit status)\s*:?\s*0\b",
    r"(?m)^=+ (?!.*\bfailed\b).*\b\d+ passed\b", r"test result: ok\.", r"(?m)^ok\s+\S+",
    r"Tests:\s+(?!.*failed)\d+ passed")]


def tool_outcome(text: str) -> tuple[str, str] | None:
    """What one tool result says: ("failed", what) or ("passed", what), or None when it says neither (a file
    read, a listing). Read in the shapes the agents send: Codex's `Process exited with code 1`, Claude
    Code's `Exit code 1` with is_error, and the summaries of pytest, cargo, go, jest and tsc."""
    for pattern, label in _FAILED:
        m = pattern.search(text)
        if m:
            return "failed", label.format(*(g or "" for g in m.groups())).strip()
    if any(p.search(text) for p in _PASSED):
        return "passed", "the tools succeeded"
    return None


def turn_evidence(turns: Sequence[Sequence[tuple[str, str, str]]], repeat_limit: int = 3,
                  hold_turns: int = 1) -> tuple[str, str] | None:
    """Why an agent's turn needs the stronger model, from its own tool results, or None.

    `turns` are the tool rounds of the conversation so far, oldest first, the current one last; each is the
    (tool name, arguments, result text) of its calls. Escalate when the current round failed
    (`tool-failed: pytest 3 failed`), when a failure was at most `hold_turns` rounds ago and nothing has
    passed since (`holding: ...`), or when the same call with the same result came `repeat_limit` times in a
    row (`tool-loop: read_file x3`). A round that shows success hands back at once."""
    calls = [c for t in turns for c in t]
    if repeat_limit > 1 and len(calls) >= repeat_limit and len(set(calls[-repeat_limit:])) == 1:
        return f"tool-loop: {calls[-1][0]} x{repeat_limit}", (f"the same call to {calls[-1][0]} with the same "
                                                              f"result {repeat_limit} times in a row")
    for ago, turn in enumerate(reversed(turns[-(hold_turns + 1):])):
        outcomes = [o for o in (tool_outcome(r) for _, _, r in turn) if o is not None]
        failed = next((what for kind, what in outcomes if kind == "failed"), None)
        if failed is not None:
            if ago == 0:
                return f"tool-failed: {failed}", f"a tool result of this turn failed ({failed})"
            return f"holding: {failed}", f"a tool failed {ago} turn(s) ago ({failed}) and nothing has passed since"
        if outcomes:  # it passed: hand back
            return None
    return None


# --- adaptive sampling: ask more samples only while the answer is unsettled ------------------------

def settled(lead: float, runner: float) -> float:
    """How sure the leading answer is the model's likelier one: P(p > 1/2) for p ~ Beta(lead + 1, runner + 1),
    the answers' (weighted) counts under a uniform prior (Adaptive-Consistency's Beta stopping rule)."""
    a, b = lead + 1.0, runner + 1.0
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    n = 200  # Simpson's rule over [1/2, 1]: the density is smooth there for a, b >= 1
    h = 0.5 / n

    def pdf(x: float) -> float:
        if x <= 0.0 or x >= 1.0:
            return 0.0 if (x >= 1.0 and b > 1) or (x <= 0.0 and a > 1) else math.exp(-log_beta)
        return math.exp((a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - log_beta)

    total = pdf(0.5) + pdf(1.0) + sum((4 if i % 2 else 2) * pdf(0.5 + i * h) for i in range(1, n))
    return min(1.0, total * h / 3)


CONFIDENT = "confident: "
"""How `first_alone`'s reason begins when the first answer stands alone."""


def first_alone(first: float | None, alone: float, rest: int) -> tuple[int, str]:
    """`confident-first`: after the first member answered alone, how many more to ask now (0: stop) and
    why. Its answer stands alone when its logprob confidence `first` reaches `alone`: the model is sure of
    it (the model's own confidence as the signal to stop, as ReASC and DeepConf use it). Else the rest of
    the first wave (`rest`, at least one), and `sample_more` decides from there. None (the backend gave
    no logprobs, or the member failed) is never sure."""
    if first is not None and first >= alone:
        return 0, f"{CONFIDENT}the first answer's logprob confidence {first:.2f} >= {alone:g}"
    said = "no logprobs" if first is None else f"{first:.2f} < {alone:g}"
    return max(1, rest), f"unsure: the first answer's logprob confidence: {said}"


def sample_more(weights: Sequence[float], unasked: Sequence[float], confidence: float) -> tuple[int, str]:
    """How many more samples to ask now (0: stop) and why, from the answers so far: `weights` of each
    cluster (heaviest first) and those of the samples not yet asked, in order. Stop when the leader is
    settled (`settled` >= `confidence`), when every sample was asked, or when the rest could not change
    the winner even all together; else ask as many as could still overtake it, at least one."""
    lead = weights[0] if weights else 0.0
    runner = weights[1] if len(weights) > 1 else 0.0
    if not unasked:
        return 0, "every sample was asked"
    sure = settled(lead, runner) if weights else 0.0
    if weights and sure >= confidence:
        return 0, f"settled: {sure:.2f} >= {confidence:g} after {len(weights)} claim(s)"
    if weights and runner + sum(unasked) < lead:
        return 0, "the samples left could not change the winner"
    need, gap = 0, lead - runner
    for w in unasked:  # the fewest samples that could overturn the leader (or settle a tie)
        need, gap = need + 1, gap - w
        if gap < 0:
            break
    return max(1, need), f"unsettled: {sure:.2f} < {confidence:g}"


# --- circuit breaker -------------------------------------------------------------------------

State = Literal["closed", "open", "half-open"]


@dataclass(frozen=True)
class Breaker:
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    reason: str = ""


def breaker_after(b: Breaker, ok: bool, now: float, threshold: int, reason: str = "") -> Breaker:
    """A success closes the breaker; failures in a row open it; a failed trial re-opens it at once."""
    if ok:
        return Breaker()
    failures = b.failures + 1
    if b.state == "half-open" or (b.state == "closed" and failures >= threshold):
        return Breaker("open", failures, now, reason)
    if b.state == "open":
        return replace(b, failures=failures, reason=reason or b.reason)
    return replace(b, failures=failures, reason=reason)


def breaker_at(b: Breaker, now: float, open_s: float) -> Breaker:
    """An open breaker half-opens once `open_s` has passed: the next probe or request is a trial."""
    if b.state == "open" and now - b.opened_at >= open_s:
        return replace(b, state="half-open")
    return b


def usable(b: Breaker) -> bool:
    return b.state != "open"


# --- admission -------------------------------------------------------------------------------

def may_start(inflight: int, max_concurrent: int | None) -> bool:
    """A GPU pool admits a request while fewer than `max-concurrent` run on it."""
    return max_concurrent is None or inflight < max_concurrent


# --- degradation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    inflight: int
    p95_ms: float | None
    healthy_members: int
    mem_available_pct: float | None


def p95(samples: Sequence[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def degrade(load: Load, limits: Mapping[str, Any]) -> str | None:
    """Why a request should run the smaller model, or None. `limits` are the model's thresholds."""
    if limits.get("max_inflight") is not None and load.inflight >= limits["max_inflight"]:
        return f"max-inflight: {load.inflight} in flight >= {limits['max_inflight']}"
    if limits.get("max_p95_ms") is not None and load.p95_ms is not None and load.p95_ms > limits["max_p95_ms"]:
        return f"max-p95-ms: p95 {load.p95_ms:.0f} ms > {limits['max_p95_ms']:g}"
    if limits.get("min_healthy_members") is not None and load.healthy_members < limits["min_healthy_members"]:
        return f"min-healthy-members: {load.healthy_members} healthy < {limits['min_healthy_members']}"
    pct = limits.get("min_mem_available_pct")
    if pct is not None and load.mem_available_pct is not None and load.mem_available_pct < pct:
        return f"min-mem-available-pct: {load.mem_available_pct:.1f}% available < {pct:g}%"
    return None
