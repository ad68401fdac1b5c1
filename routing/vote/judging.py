"""What the code ladder reads out of answers: the code, and the validators' verdicts. Pure functions.

- `extract_code`: the fenced block in the wanted language (the longest when there are several),
  else the longest block, else an unclosed fence's rest, else the whole answer.
- `parse_verdict`: a validator's `{"score": 0-10, "issues": [...]}`, found in plain JSON, a
  ```json fence, JSON inside prose, a `<think>` preamble, or as `score: 7/10` text. A score
  outside 0..10, or none at all, is nonsense: `None`, and the validator is left out.
- `weighted_score`: the weighted mean of the usable scores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
_OPEN_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*)\Z", re.S | re.M)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_SCORE_TEXT = re.compile(r"\bscore\b[\"'*]*\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.+)$")
MAX_ISSUES = 20


@dataclass(frozen=True)
class Code:
    text: str
    language: str | None
    fenced: bool


def extract_code(answer: str, wanted: str | None = None, same: Any = None) -> Code | None:
    """The code in an answer; `same(tag, wanted)` says whether a fence tag names the wanted language."""
    text = _THINK.sub("", answer)
    blocks = [(tag.lower() or None, body) for tag, body in _FENCE.findall(text)]
    blocks = [(tag, body) for tag, body in blocks if body.strip()]
    if blocks:
        matching = [b for b in blocks if wanted and b[0] and (same(b[0], wanted) if same else b[0] == wanted)]
        tag, body = max(matching or blocks, key=lambda b: len(b[1]))
        return Code(body.rstrip() + "\n", tag or wanted, True)
    m = _OPEN_FENCE.search(text)
    if m and m.group(2).strip():
        return Code(m.group(2).rstrip() + "\n", m.group(1).lower() or wanted, True)
    stripped = text.strip()
    return Code(stripped + "\n", wanted, False) if stripped else None


@dataclass(frozen=True)
class Verdict:
    score: float
    issues: list[str] = field(default_factory=list)


def _issue(item: Any) -> str | None:
    if isinstance(item, str):
        return item.strip() or None
    if isinstance(item, dict):
        for key in ("description", "message", "issue", "text", "detail", "problem"):
            if isinstance(item.get(key), str):
                where = item.get("line")
                return f"line {where}: {item[key]}" if isinstance(where, int) else str(item[key])
        return json.dumps(item, ensure_ascii=False)
    return None if item is None else str(item)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*", value)
        return float(m.group(1)) if m else None
    return None


def _objects(text: str) -> Iterable[dict[str, Any]]:
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch != "{":
            continue
        try:
            value, _ = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _from_object(obj: Mapping[str, Any]) -> Verdict | None:
    keys = {k.lower(): k for k in obj}
    key = keys.get("score") or keys.get("rating") or keys.get("overall_score")
    if key is None:
        return None
    score = _number(obj[key])
    if score is None or not 0 <= score <= 10:
        return None
    raw = obj.get(keys.get("issues", ""), obj.get(keys.get("problems", ""), []))
    items = raw if isinstance(raw, list) else [raw]
    issues = [s for s in (_issue(i) for i in items) if s][:MAX_ISSUES]
    return Verdict(round(score, 2), issues)


def parse_verdict(answer: str) -> Verdict | None:
    """A validator's score and issues, or None when its answer holds no usable score."""
    text = _THINK.sub("", answer or "")
    for obj in _objects(text):
        verdict = _from_object(obj)
        if verdict is not None:
            return verdict
    m = _SCORE_TEXT.search(text)
    if m is None:
        return None
    score, scale = float(m.group(1)), int(m.group(2) or 10)
    if scale <= 0:
        return None
    score = score * 10 / scale
    if not 0 <= score <= 10:
        return None
    issues = [b.group(1).strip() for line in text.splitlines() if (b := _BULLET.match(line))
              and not _SCORE_TEXT.search(line)]
    return Verdict(round(score, 2), issues[:MAX_ISSUES])


def weighted_score(scores: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Σ wᵢ·sᵢ / Σ wᵢ over the validators that gave a usable score; None when none did."""
    total = sum(weights.get(v, 1.0) for v in scores)
    if not scores or total <= 0:
        return None
    return round(sum(weights.get(v, 1.0) * s for v, s in scores.items()) / total, 2)
