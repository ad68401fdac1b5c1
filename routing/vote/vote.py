"""The council's vote: pure functions over answers, no I/O.

1. `canonical` reduces an answer to what it claims: a final answer ("The answer is 42.",
   "**42**", "\\boxed{42}", "Answer: B", a lone number or option letter, a trailing
   "so the result is 42"), code (whitespace and comments dropped; Python compared by AST),
   JSON (compared as data), tool calls (name plus arguments as data), else normalized text.
2. `cluster` groups equal canonical forms. A short free-text answer is reduced to its claim
   (`routing.vote.claims`: the first clause's words that the question did not already say), so "The
   capital of France is Paris." and "It's Paris!" agree; long claims and long free text join a
   cluster when their similarity to its first answer reaches the threshold. Similarity is the Sørensen–Dice
   coefficient of the two answers' lowercased word multisets: 2·|A∩B| / (|A|+|B|).
3. `ranked` puts the heaviest cluster first (ties: more members, then `tie-break`: the heaviest
   single member or the highest mean logprob, then the other of the two, and only then the members'
   configured order, never arrival; `tied` reports which); `agreement` is its weight over the weight
   of every member that answered, and `has_majority` says whether that is more than half.
4. `decided` says whether the vote can still change: no other cluster, nor a new one, could
   overtake the leader even if every outstanding member joined it.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from routing.core import ToolCall
from routing.vote import claims

_FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)```", re.S)
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_FINAL = re.compile(
    r"(?:final answer|the answer|answer|the result|result|therefore|thus|so)\s*(?:is|:|=|would be|will be)\s*"
    r"(.+?)\s*[.!]?\s*$",
    re.I | re.S,
)
_FINAL_WORDS = ("answer", "result", "therefore", "thus", "so")
"""What every match of `_FINAL` holds ("final answer" and "the answer" hold "answer")."""
_LONE = re.compile(r"^\(?([A-Ja-j]|[-+]?\d[\d,]*(?:\.\d+)?)\)?[.)]?$")
_BOLD = re.compile(r"^\*\*(.+?)\*\*[.!]?$", re.S)
_WORD = re.compile(r"\w+", re.U)


def _clean_value(value: str) -> str:
    v = value.strip().strip("*_`$ ").rstrip(".!").strip()
    v = re.sub(r"^\((.+)\)$", r"\1", v)
    if re.fullmatch(r"[-+]?\d[\d,]*(?:\.\d+)?", v):
        number = float(v.replace(",", ""))
        return str(int(number)) if number.is_integer() else repr(number)
    if re.fullmatch(r"[A-Ja-j]\)?", v):
        return v[0].upper()
    return " ".join(v.lower().split())


def final_answer(text: str) -> str | None:
    """The answer a text commits to, if it states one in a recognisable way."""
    t = text.strip()
    if m := _BOXED.search(t):
        return _clean_value(m.group(1))
    if m := _LONE.match(t):
        return _clean_value(m.group(1))
    if m := _BOLD.match(t):
        return _clean_value(m.group(1))
    folded = t.casefold()  # as re.I folds case: a text without one of the words cannot match (and the
    if not any(w in folded for w in _FINAL_WORDS):  # search costs 15 us a text; this 1 us)
        return None
    last = t.splitlines()[-1] if t else ""
    for candidate in (last, t) if last != t else (t,):
        m = _FINAL.search(candidate)
        if m and len(m.group(1)) <= 80:
            return _clean_value(m.group(1))
    return None


def _strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r"(^|\s)(//|#|--).*$", "", code, flags=re.M)
    return "".join(code.split())


def canonical_code(code: str, lang: str = "") -> str:
    if lang.lower() in ("", "py", "python", "python3"):
        try:
            return "py:" + ast.dump(ast.parse(code))
        except SyntaxError:
            pass
    return "code:" + _strip_comments(code)


def _as_json(text: str) -> Any:
    t = text.strip()
    if not t or t[0] + t[-1] not in ("{}", "[]"):  # ("[1] a citation": not JSON, and no parse to say so)
        return None
    try:
        return json.loads(t)
    except ValueError:
        return None


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalize(text: str) -> str:
    t = re.sub(r"[*_`#>]+", " ", text.lower())
    return " ".join(t.split()).strip(" .!")


LONG = 30
"""Answers longer than this many words are compared as whole texts, not by their first claim (but for a
factual question's, whose first sentence is no longer than this and names its claim: `claims.lead_claim`)."""


def canonical(text: str, question: claims.Question = claims.NO_QUESTION) -> str:
    """The form two answers must share to count as the same claim (`question`: its words, see
    `routing.vote.claims`, which are not part of any claim)."""
    data = _as_json(text)
    if data is not None:
        return "json:" + _dump(data)
    blocks = _FENCE.findall(text)
    if blocks:
        for lang, body in blocks:
            if lang.lower() == "json" and (data := _as_json(body)) is not None:
                return "json:" + _dump(data)
        return "|".join(canonical_code(body, lang) for lang, body in blocks)
    if question.polar or question.options:  # a yes/no or an option is read from the start, however long
        said = claims.claim(text, question)
        if said:
            return "claim:" + " ".join(sorted(said))
    answer = final_answer(text)
    if answer is None and len(text.split()) > LONG and (said := claims.lead_claim(text, question, LONG)):
        return "claim:" + " ".join(sorted(said))  # "The discovery of penicillin by Alexander Fleming is a tale ..."
    if answer is not None or len(text.split()) <= LONG:
        # a number asked for is read from the whole answer ("7*8 = 56. The answer is a simple ..."); else
        # the stated final answer's claim, or the answer's own when that says nothing new
        said = claims.claim(answer, question) if answer is not None and not question.numeric else None
        said = said or claims.claim(text, question)
        if said:
            return "claim:" + " ".join(sorted(said))
    if answer is not None:
        return "answer:" + answer
    return "text:" + normalize(text)


def canonical_tool_calls(tool_calls: Sequence[ToolCall]) -> str:
    calls = []
    for call in tool_calls:
        args: Any = call.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                args = args.strip()
        calls.append([call.name, args])
    return "tools:" + _dump(calls)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = sum(x * x for x in a) ** 0.5, sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def similarity(a: str, b: str) -> float:
    """Sørensen–Dice coefficient over lowercased word multisets (1.0: same words)."""
    wa, wb = Counter(_WORD.findall(a.lower())), Counter(_WORD.findall(b.lower()))
    total = sum(wa.values()) + sum(wb.values())
    if total == 0:
        return 1.0
    return 2 * sum((wa & wb).values()) / total


class Ballot(msgspec.Struct, frozen=True):
    """One member's answer in the vote. A msgspec struct, not a frozen dataclass: a council makes one a member
    each time it votes, and a frozen dataclass's `__init__` sets every field through `object.__setattr__`
    (1.3 us against 0.09)."""

    member: str
    weight: float
    order: int
    """Arrival order: 0 for the first answer."""
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprob: float | None = None
    """Mean token logprob of the answer, when the member sent logprobs (for `tie-break = "logprob"`)."""
    position: int | None = None
    """The member's place in the council's configured `members` (the last word in a tie; arrival when unset)."""

    @property
    def place(self) -> int:
        return self.order if self.position is None else self.position

    def key(self, question: claims.Question = claims.NO_QUESTION) -> str:
        return canonical_tool_calls(list(self.tool_calls)) if self.tool_calls else canonical(self.text, question)


@dataclass(slots=True)
class Cluster:
    key: str
    ballots: list[Ballot] = field(default_factory=list)
    weight: float = field(init=False)
    """Its members' weight: a council reads it after every arrival and in every ranking (`add` keeps it)."""

    def __post_init__(self) -> None:
        self.weight = sum(b.weight for b in self.ballots)

    def add(self, b: Ballot) -> None:
        self.ballots.append(b)
        self.weight += b.weight

    @property
    def first(self) -> int:
        """The earliest configured place among its members (`Ballot.place`)."""
        return min(b.place for b in self.ballots)

    @property
    def representative(self) -> Ballot:
        """The answer the council returns: the heaviest member's, the first configured among equals."""
        return min(self.ballots, key=lambda b: (-b.weight, b.place))

    def rank(self, tie_break: str = "weight") -> tuple[float, int, float, float, int]:
        """Heaviest first; between equals, by `tie_break` (the heaviest single member, or the most
        confident answer by mean logprob), then by the other of the two (logprobs only where the members
        gave them), then by the members' configured order: never by which answer arrived first."""
        lp = [b.logprob for b in self.ballots if b.logprob is not None]
        confident = -max(lp) if lp else float("inf")
        heaviest = -max(b.weight for b in self.ballots)
        second, third = (confident, heaviest) if tie_break == "logprob" else (heaviest, confident)
        return (-self.weight, -len(self.ballots), second, third, self.first)


TIE_BREAKS = ("weight", "logprob")
TIE_NAMES = {2: "{rule}", 3: "{other}", 4: "order"}
"""Which part of `Cluster.rank` told two clusters of one weight apart, as `tied` names it."""


def _claim_of(key: str) -> frozenset[str]:
    return frozenset(key.removeprefix("claim:").split(" "))


class Tally:
    """`cluster` kept as answers arrive: each ballot joins (or starts) a cluster exactly as `cluster` puts it,
    since where an answer goes depends only on the clusters' keys and first answers, which later answers never
    change. A council with early decision votes after every arrival; a tally reads each answer once."""

    __slots__ = ("asked", "ballots", "by_key", "close", "clusters", "keys", "seen", "threshold")

    def __init__(self, threshold: float = 0.8, question: str | claims.Question = "",
                 close: Callable[[Ballot, Ballot], bool] | None = None, keys: dict[str, str] | None = None) -> None:
        self.asked = question if isinstance(question, claims.Question) else \
            claims.Question.of(question) if question else claims.NO_QUESTION
        self.threshold, self.close = threshold, close
        self.keys: dict[str, str] = {} if keys is None else keys  # samples often agree word for word: read once
        self.clusters: list[Cluster] = []
        self.by_key: dict[str, Cluster] = {}
        """Each cluster by its canonical form (a cluster is made only for a form no other has)."""
        self.ballots: list[Ballot] = []
        self.seen = 0
        """How many of the caller's outcomes it has read (`Council` feeds it the ones after these)."""

    def add(self, b: Ballot) -> None:
        """The next ballot, in arrival order."""
        asked, clusters, threshold, close = self.asked, self.clusters, self.threshold, self.close
        self.ballots.append(b)
        key = b.key(asked) if b.tool_calls else self.keys.get(b.text)
        if key is None:
            key = self.keys[b.text] = b.key(asked)
        home = self.by_key.get(key)
        if home is None and key.startswith("claim:"):
            said = claims.sentence(b.text, asked)
            home = next((c for c in clusters if c.key.startswith("claim:")
                         and claims.agree(_claim_of(c.key), _claim_of(key), threshold,
                                          claims.sentence(c.ballots[0].text, asked), said)), None)
        if home is None and key.startswith("text:"):
            home = next((c for c in clusters if c.key.startswith("text:")
                         and similarity(c.ballots[0].text, b.text) >= threshold), None)
        if home is None and close is not None and key.startswith(("text:", "claim:", "answer:")):
            home = next((c for c in clusters if c.key.startswith(("text:", "claim:", "answer:"))
                         and close(c.ballots[0], b)), None)
        if home is None:
            clusters.append(new := Cluster(key, [b]))
            self.by_key[key] = new
        else:
            home.add(b)


def cluster(ballots: list[Ballot], threshold: float = 0.8, question: str | claims.Question = "",
            close: Callable[[Ballot, Ballot], bool] | None = None, keys: dict[str, str] | None = None
            ) -> list[Cluster]:
    """Group ballots by canonical form (claims read against the `question`), then long claims by their
    overlap and long free text by similarity; in arrival order. `close` (embeddings' cosine, when a
    council has a similarity backend) also joins free-text answers that the words did not. `keys`: each
    text's canonical form, kept across calls for one question (a council votes again as answers arrive)."""
    tally = Tally(threshold, question, close, keys)
    for b in sorted(ballots, key=lambda b: b.order):
        tally.add(b)
    return tally.clusters


def ranked(clusters: list[Cluster], tie_break: str = "weight") -> list[Cluster]:
    return sorted(clusters, key=lambda c: c.rank(tie_break))


def tied(clusters: list[Cluster], tie_break: str = "weight") -> str | None:
    """None when the leading cluster outweighs the next; else how the tie was broken: `tie_break`, the
    other of weight and logprob, or `order` (the members' configured order: nothing else told them apart)."""
    order = ranked(clusters, tie_break)
    if len(order) < 2 or order[0].rank()[:2] != order[1].rank()[:2]:
        return None
    a, b = order[0].rank(tie_break), order[1].rank(tie_break)
    at = next(i for i in range(2, len(a)) if a[i] != b[i]) if a != b else 4
    other = "logprob" if tie_break != "logprob" else "weight"
    return TIE_NAMES[at].format(rule=tie_break, other=other)


def has_majority(clusters: list[Cluster]) -> bool:
    """Whether one claim has more than half of the answering weight."""
    weights = [c.weight for c in clusters]
    return bool(weights) and max(weights) * 2 > sum(weights)


def agreement(clusters: list[Cluster]) -> float:
    weights = [c.weight for c in clusters]
    total = sum(weights)
    return round(max(weights) / total, 4) if total > 0 else 0.0


def decided(clusters: list[Cluster], outstanding_weight: float) -> bool:
    """True when no cluster, existing or new, could overtake the leader with every outstanding vote."""
    weights = sorted((c.weight for c in clusters), reverse=True)  # the leader is the heaviest (`Cluster.rank`)
    if not weights:
        return False
    runner_up = weights[1] if len(weights) > 1 else 0.0
    return runner_up + outstanding_weight < weights[0]
