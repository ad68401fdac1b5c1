"""The chairman's brief for `merge = "synthesize"`: the question and the anonymized ballots."""

from __future__ import annotations

import re

from routing.request import Message
from routing.vote.vote import Cluster, ranked

CHAIRMAN_SYSTEM = (
    "You are the chairman of a council of language models. Several members answered the user's "
    "last message independently; their answers are below, grouped by what they claim, each with "
    "its share of the council's vote. Write the single best final answer for the user. Prefer what "
    "the heavier groups agree on, correct clear mistakes, and answer directly: do not mention the "
    "council, the candidates or the vote."
)


def _conversation(messages: list[Message]) -> str:
    return "\n".join(f"{m.role}: {m.text}" for m in messages if m.text)


def chairman_messages(messages: list[Message], clusters: list[Cluster]) -> list[Message]:
    total = sum(c.weight for c in clusters) or 1.0
    parts = [f"## Conversation\n{_conversation(messages)}\n\n## Candidate answers"]
    for i, c in enumerate(ranked(clusters), 1):
        share = c.weight / total
        parts.append(f"### Candidate {i} (vote share {share:.0%}, {len(c.ballots)} member(s))\n"
                     f"{c.representative.text}")
    return [Message("system", CHAIRMAN_SYSTEM), Message("user", "\n\n".join(parts))]


JUDGE_SYSTEM = (
    "You compare several responses to the same question. Evaluate them and select the most consistent "
    "response based on majority consensus: the one whose answer most of the others agree with. Start "
    'your answer with "The most consistent response is Response X" (X is its number), then say in one '
    "line which responses agree with it."
)
_PICK = re.compile(r"most consistent response is\s*(?:response\s*)?#?\s*(\d+)|\bresponse\s*#?\s*(\d+)", re.I)


def judge_messages(messages: list[Message], candidates: list[str]) -> list[Message]:
    """Universal Self-Consistency's brief: the question and every member's answer, numbered, anonymized."""
    parts = [f"## Conversation\n{_conversation(messages)}\n\n## Responses"]
    parts += [f"### Response {i}\n{text}" for i, text in enumerate(candidates, 1)]
    return [Message("system", JUDGE_SYSTEM), Message("user", "\n\n".join(parts))]


def judge_pick(text: str, count: int) -> int | None:
    """The 0-based index of the response the judge named first, or None when it named none of them."""
    for m in _PICK.finditer(text):
        n = int(m.group(1) or m.group(2))
        if 1 <= n <= count:
            return n - 1
    return None


_AGREEING = re.compile(r"\bresponses?\s*#?\s*(\d+(?:\s*(?:,|and|&|\bor\b)\s*#?\s*(?:response\s*)?\d+)*)", re.I)


_DISSENT = re.compile(r"\b(?:not|disagrees?|differs?|contradicts?|neither|nor|instead|other than)\b|n't\b", re.I)


def judge_agreeing(text: str, count: int, pick: int) -> set[int] | None:
    """The 0-based responses the judge says agree with its pick (the line after the pick: "Responses 1 and 3
    agree with it"), or None when it says nothing about them. "None"/"no other" is the empty set."""
    first = _PICK.search(text)
    rest = text[first.end():] if first else text
    if re.search(r"\b(?:none|no other|no response)\b", rest, re.I) and not re.search(r"\d", rest):
        return set()
    found = {int(n) - 1 for part in re.split(r"[;.\n]|\bbut\b|\bwhile\b|\bwhereas\b", rest)
             if not _DISSENT.search(part)  # "responses 3 and 4 do not" names who does not agree
             for m in _AGREEING.finditer(part) for n in re.findall(r"\d+", m.group(1))}
    found = {i for i in found if 0 <= i < count and i != pick}
    return found or None
