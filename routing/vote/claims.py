"""What a free-text answer claims, read the way self-consistency reads a sample: its short answering span.

Real models wrap one claim in many phrasings: "The capital of France is Paris.", "Paris",
"It's Paris!", "Paris, the City of Light is home to ...". The claim is the first clause of
the answer that says something the question did not: its words, minus the question's own
words and filler, as a set. "7 times 8 is 56" and "56" both claim {56}; "7 days" and
"720 days" (to "How many days are in a week?") claim {7} and {720}, and stay apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLAUSE = re.compile(r"[.!?;:](?!\d)|,(?!\d{3})|\s[-–—]\s|\(|\)|\n")
_TOKEN = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[^\W\d_]+(?:'[^\W\d_]+)?", re.U)

FILLER = frozenset("""
a an the is are was were be been being am it it's its this that these those there here they their them he she
his her we our you your i me my of in on at to for from by with about as into onto than then so and or but
also just only very quite really well yes no not sure of course answer answers answered correct correctly
approximately about around roughly exactly simply called known named which what who whom whose where
when why how many much do does did has have had can could would should will shall may might must one's
question number total typically usually actually often generally commonly always x
""".split())
"""Words that never carry a short factual claim (English; other languages fall back to similarity)."""

NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS |= {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                 "ninety": "90", "hundred": "100", "thousand": "1000"}

SHORT = 2
"""Claims of at most this many words must be equal to agree; longer ones are compared by overlap."""


def _norm(token: str) -> str:
    t = token.lower().removesuffix("'s")
    if t[:1].isdigit() or t[:1] in "+-":
        try:
            n = float(t.replace(",", ""))
        except ValueError:
            return t
        return str(int(n)) if n.is_integer() else repr(n)
    t = NUMBER_WORDS.get(t, t)
    return t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith(("ss", "us", "is", "ys")) else t


def _number(token: str) -> bool:
    return token[:1].isdigit() or (token[:1] in "+-" and token[1:2].isdigit())


_QUANTITY = re.compile(r"\bhow (?:long|old|far|tall|big|heavy|fast|high|deep)\b|\bwhat year\b|\bin what year\b"
                       r"|\b(?:temperature|boiling point|freezing point|melting point|population|percent|"
                       r"percentage|speed|distance)\b")
"""Questions that ask for a quantity even without a number in them."""


@dataclass(frozen=True)
class Question:
    """What a claim is read against: the question's words, and whether it asks for a number (digits in
    it, or "how many/much"), counted in which unit ("How many days ..." -> "day")."""

    words: frozenset[str] = frozenset()
    numeric: bool = False
    unit: str | None = None

    @classmethod
    def of(cls, text: str) -> Question:
        low = text.lower()
        m = re.search(r"\bhow (?:many|much) ([^\W\d_]+)", low)
        ws = frozenset(words(text))
        numeric = bool(m) or any(_number(w) for w in ws) or bool(_QUANTITY.search(low))
        return cls(ws, numeric, _norm(m.group(1)) if m else None)

    def asks(self, token: str) -> bool:
        """The question already says it (a number whatever its sign: "9 minus 3" says 3 and -3)."""
        return token in self.words or token.lstrip("+-") in self.words


_SENTENCE = re.compile(r"[.!?](?!\d)|\n")


def _numeric_claim(text: str, q: Question) -> frozenset[str] | None:
    """For a question that asks for a number: in the first sentence that gives one the question did not
    already say, the number given for the question's unit ("7 days"), else the first such number."""
    for sentence in _SENTENCE.split(text)[:4]:
        result = re.split(r"=|\bequals?\b", sentence)[-1]  # "7 + 3 = 10": what follows the last "="
        tokens = words(result) if any(_number(t) for t in words(result)) else words(sentence)
        found = [i for i, t in enumerate(tokens) if _number(t) and not q.asks(t)]
        if not found:
            continue
        if q.unit is not None:
            for i in found:
                if q.unit in tokens[i + 1:i + 3]:
                    return frozenset({tokens[i]})
        return frozenset({tokens[found[0]]})
    return None


def words(text: str) -> list[str]:
    return [_norm(t) for t in _TOKEN.findall(text)]


NO_QUESTION = Question()


def claim(text: str, question: Question = NO_QUESTION) -> frozenset[str] | None:
    """What `text` claims: for a numeric question the number it gives; else the content words of its first
    clause that says something new (only its numbers, when it has some); None when nothing is new."""
    if question.numeric and (number := _numeric_claim(text, question)):
        return number
    for clause in _CLAUSE.split(text.replace("*", " ").replace("_", " ")):
        content = frozenset(w for w in words(clause) if w not in FILLER and not question.asks(w))
        if content:
            numbers = frozenset(w for w in content if _number(w))
            return numbers or content
    return None


def sentence(text: str, question: Question = NO_QUESTION) -> frozenset[str]:
    """The content words of the first sentence (what a clause's claim is read in)."""
    first = next((s for s in _SENTENCE.split(text) if s.strip()), "")
    return frozenset(w for w in words(first) if w not in FILLER and not question.asks(w))


def agree(a: frozenset[str], b: frozenset[str], threshold: float,
          a_said: frozenset[str] = frozenset(), b_said: frozenset[str] = frozenset()) -> bool:
    """Claims agree when equal; when one holds the other and is at most twice as long ("Au" and
    "represented Au"); when they share a word and each is said in the other's first sentence (`a_said`,
    `b_said`: "a deep, rich shade of blue" and "a deep shade of blue"); or, both longer than SHORT,
    when their Sørensen–Dice overlap reaches `threshold`."""
    small, big = sorted((a, b), key=len)
    if small <= big and len(big) <= 2 * len(small):
        return True
    if a & b and a <= b_said and b <= a_said:
        return True
    if len(small) <= SHORT:
        return False
    return 2 * len(a & b) / (len(a) + len(b)) >= threshold
