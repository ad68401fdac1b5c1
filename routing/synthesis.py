"""The chairman's brief for `merge = "synthesize"`: the question and the anonymized ballots."""

from __future__ import annotations

import re
from typing import Any

from routing.vote import Cluster, ranked

CHAIRMAN_SYSTEM = (
    "You are the chairman of a council of language models. Several members answered the user's "
    "last message independently; their answers are below, grouped by what they claim, each with "
    "its share of the council's vote. Write the single best final answer for the user. Prefer what "
    "the heavier groups agree on, correct clear mistakes, and answer directly: do not mention the "
    "council, the candidates or the vote."
)


def _conversation(messages: list[dict[str, Any]]) -> str:
    lines = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content:
            lines.append(f"{m.get('role', 'user')}: {content}")
    return "\n".join(lines)


def chairman_messages(messages: list[dict[str, Any]], clusters: list[Cluster]) -> list[dict[str, str]]:
    total = sum(c.weight for c in clusters) or 1.0
    parts = [f"## Conversation\n{_conversation(messages)}\n\n## Candidate answers"]
    for i, c in enumerate(ranked(clusters), 1):
        share = c.weight / total
        parts.append(f"### Candidate {i} (vote share {share:.0%}, {len(c.ballots)} member(s))\n"
                     f"{c.representative.text}")
    return [{"role": "system", "content": CHAIRMAN_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


JUDGE_SYSTEM = (
    "You compare several responses to the same question. Evaluate them and select the most consistent "
    "response based on majority consensus: the one whose answer most of the others agree with. Start "
    'your answer with "The most consistent response is Response X" (X is its number), then say in one '
    "line which responses agree with it."
)
_PICK = re.compile(r"most consistent response is\s*(?:response\s*)?#?\s*(\d+)|\bresponse\s*#?\s*(\d+)", re.I)


def judge_messages(messages: list[dict[str, Any]], candidates: list[str]) -> list[dict[str, str]]:
    """Universal Self-Consistency's brief: the question and every member's answer, numbered, anonymized."""
    parts = [f"## Conversation\n{_conversation(messages)}\n\n## Responses"]
    parts += [f"### Response {i}\n{text}" for i, text in enumerate(candidates, 1)]
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def judge_pick(text: str, count: int) -> int | None:
    """The 0-based index of the response the judge named first, or None when it named none of them."""
    for m in _PICK.finditer(text):
        n = int(m.group(1) or m.group(2))
        if 1 <= n <= count:
            return n - 1
    return None
