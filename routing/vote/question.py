"""A question, and an answer's words, as the claim reader sees them (`routing.vote.claims`, `routing.vote.polar`).

The question's words (an answer's claim leaves them out), what it asks for (a number and its unit, a yes or
no, one of the options it lists, a kind of thing), and the pieces both readers split answers into: clauses,
sentences, tokens normalized ("Paris's" -> paris, "twelve" -> 12, "legs" -> leg), names, negations.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

CLAUSE = re.compile(r"[.!?;:](?!\d)|,(?!\d{3})|\s[-–—]\s|\(|\)|\n")


TOKEN = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[^\W\d_]+(?:'[^\W\d_]+)?", re.U)


FILLER = frozenset("""
a an the is are was were be been being am it it's its this that these those there here they their them he she
his her we our you your i me my of in on at to for from by with about as into onto than then so and or but
also just only very quite really well yes no not sure of course answer answers answered correct correctly
approximately about around roughly exactly simply called known named which what who whom whose where
when why how many much do does did has have had can could would should will shall may might must one's
question number total typically usually actually often generally commonly always x one
""".split())
"""Words that never carry a short factual claim (English; other languages fall back to similarity)."""


NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS |= {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                 "ninety": "90", "hundred": "100", "thousand": "1000"}


NEGATION = frozenset({"not", "no", "never", "none", "neither", "nor", "nothing", "nobody", "cannot"})


YES = frozenset({"yes", "yeah", "yep", "yup", "correct", "true", "right", "indeed", "certainly", "absolutely",
                 "sure", "affirmative", "definitely", "exactly"})


NO = frozenset({"no", "nope", "incorrect", "false", "wrong", "negative", "nah", "never"})


_AUX = ("is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|may|might|must|shall|"
        "isn't|aren't|wasn't|weren't|don't|doesn't|didn't|can't|couldn't|won't|wouldn't|shouldn't|hasn't|haven't")


_POLAR = re.compile(rf"(?:^|[.:!?\n]\s*)(?:{_AUX})\b[^?.!]*\?", re.I)


_OPTION = re.compile(r"(?:^|[\s(])\(?([A-Ea-e])[).:]\s+([^\n()]+?)(?=\s+\(?[A-Ea-e][).:]\s|\s*[\n?.]|\s*$"
                     r"|\s+(?:Answer|Reply|Respond|Choose|Pick|Select|Please|Give)\b)")


def norm(token: str) -> str:
    t = token.lower().removesuffix("'s")
    if t[:1].isdigit() or t[:1] in "+-":
        try:
            n = float(t.replace(",", ""))
        except ValueError:
            return t
        return str(int(n)) if n.is_integer() else repr(n)
    t = NUMBER_WORDS.get(t, t)
    return t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith(("ss", "us", "is", "ys")) else t


def is_number(token: str) -> bool:
    return token[:1].isdigit() or (token[:1] in "+-" and token[1:2].isdigit())


_QUANTITY = re.compile(r"\bhow (?:long|old|far|tall|big|heavy|fast|high|deep)\b|\bwhat year\b|\bin what year\b"
                       r"|\b(?:temperature|boiling point|freezing point|melting point|population|percent|"
                       r"percentage|speed|distance)\b")
"""Questions that ask for a quantity even without a number in them."""


@dataclass(frozen=True)
class Question:
    """What a claim is read against: the question's words (and the initials of its names of several words:
    "United Kingdom" -> uk), and whether it asks for a number (digits in it, or "how many/much"), counted
    in which unit ("How many days ..." -> "day"); whether it is a yes/no question ("Is Lyon the capital of
    France?"); and the options it lists ("A) Tokyo B) Osaka")."""

    words: frozenset[str] = frozenset()
    numeric: bool = False
    unit: str | None = None
    polar: bool = False
    options: tuple[tuple[str, frozenset[str]], ...] = ()
    """(letter, the option's content words), in the order the question lists them."""
    names: frozenset[str] = frozenset()
    """The names a yes/no or a short factual question says (capitalised words but the first of a sentence)."""
    kind: frozenset[str] = frozenset()
    """What kind of thing a yes/no question asks its subject to be, its content words ("Is Venus a star?" ->
    {star}; "Is 3 a prime number?" -> {prime, number})."""
    factual: bool = False
    """A short question that asks what, who, which, where or when ("Who discovered penicillin?"): its
    answer's claim is in its first sentence, however long the rest."""

    @classmethod
    def of(cls, text: str) -> Question:
        low = text.lower()
        options = tuple((letter.upper(), frozenset(w for w in words(said) if w not in FILLER))
                        for letter, said in _OPTION.findall(text))
        if len(options) < 2 or len({letter for letter, _ in options}) != len(options):
            options = ()
        m = re.search(r"\bhow (?:many|much) ([^\W\d_]+)", low)
        ws = frozenset(words(text)) | _initials(text)
        polar = not options and bool(_POLAR.search(text.strip()))
        numeric = not options and not polar and (bool(m) or any(is_number(w) for w in ws)
                                                 or bool(_QUANTITY.search(low)))
        k = _KIND_ASKED.search(text) if polar else None
        kind = frozenset(w for w in words(k.group(1)) if w not in FILLER) if k else frozenset()
        first = lead(text)
        factual = (not (options or polar or numeric) and len(first.split()) <= FACTUAL_WORDS
                   and bool(_FACTUAL.match(first)))
        names = frozenset(n for s in SENTENCE.split(text) for n in names_of(s.strip())) if polar or factual \
            else frozenset()
        return cls(ws, numeric, norm(m.group(1)) if m else None, polar, options, names, kind, factual)

    def name_form(self, token: str) -> bool:
        """Whether a word is a form of one of the question's names ("Italian", "Hungarian" to Italy, Hungary)."""
        return any(same_name(token, n) for n in self.names)

    def asks(self, token: str) -> bool:
        """The question already says it (a number whatever its sign: "9 minus 3" says 3 and -3)."""
        return token in self.words or token.lstrip("+-") in self.words


SENTENCE = re.compile(r"[.!?](?!\d)|\n")


_FACTUAL = re.compile(r"\s*(?:what|who|which|where|when|whose)\b", re.I)


FACTUAL_WORDS = 12
"""A factual question's first sentence has at most this many words ("What is the capital of Norway?")."""


_KIND_ASKED = re.compile(r"(?:^|[.!?]\s+)(?:is|are|was|were)\s+(?:(?:a|an|the)\s+)?[^\W\d_][\w'-]*(?:\s+[\w'-]+){0,3}?"
                         r"\s+(?:a|an)\s+([^\W\d_]+(?:\s+[^\W\d_]+){0,2})\s*\?", re.I)
"""A yes/no question that asks whether its subject is a kind of thing: "Is a whale a fish?"."""


_NAME_RUN = re.compile(r"\b[A-Z][\w']*(?:\s+[A-Z][\w']*)+")


def _initials(text: str) -> frozenset[str]:
    """The initials of the names of several words a question says ("the United Kingdom" -> uk): an answer
    that says "the UK" says what the question did."""
    return frozenset("".join(w[0] for w in run.split()).lower() for run in _NAME_RUN.findall(text))


def words(text: str) -> list[str]:
    """A text's tokens, normalized; "one of" ("One of the smallest primes is 2") is no number."""
    raw = TOKEN.findall(text)
    out = [norm(t) for t in raw]
    if "1" in out:
        for i, (t, after) in enumerate(itertools.pairwise(raw)):
            if t.lower() == "one" and after.lower() == "of":
                out[i] = "one"
    return out


NO_QUESTION = Question()


def first_sentences(text: str, n: int = 2) -> list[str]:
    """The first `n` sentences that say anything (markdown emphasis dropped): where a polarity or an option
    is read."""
    return [s for s in SENTENCE.split(text.replace("*", " ")) if s.strip()][:n]


def lead(text: str) -> str:
    """The first sentence that says anything."""
    return next((s for s in SENTENCE.split(text) if s.strip()), "")


def negated(tokens: list[str]) -> bool:
    return any(t in NEGATION or t.endswith("n't") for t in tokens)


DEMONYMS = {"irish": "ireland", "french": "france", "dutch": "netherlands", "swiss": "switzerland",
            "welsh": "wales", "danish": "denmark", "finnish": "finland", "polish": "poland", "scottish": "scotland",
            "filipino": "philippines", "english": "england", "british": "britain", "icelandic": "iceland"}
"""What a people or its language is called where it does not start as its country does ("Irish": Ireland)."""


NATIONALITIES = frozenset("""
american german italian spanish greek roman chinese japanese indian russian swedish norwegian austrian
portuguese brazilian mexican canadian australian egyptian african european asian korean turkish arab arabic
persian thai vietnamese israeli belgian hungarian czech ukrainian argentine argentinian chilean peruvian cuban
nigerian kenyan
""".split()) | frozenset(DEMONYMS)
"""Adjectives of a people or place ("a Dutch painter"): before a noun they say what kind, not which one."""


def same_name(a: str, b: str) -> bool:
    a, b = DEMONYMS.get(a, a), DEMONYMS.get(b, b)
    common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return a == b or (common >= 3 and common >= 0.6 * min(len(a), len(b)))


def names_of(text: str) -> set[str]:
    """The capitalised words of a sentence (names, in English; its first word only when it is no common
    word: "Méridos is the capital", not "The capital")."""
    return names_in(TOKEN.findall(text))


def names_in(tokens: list[str]) -> set[str]:
    """`names_of` of a sentence already split into its raw tokens."""
    return {norm(t) for i, t in enumerate(tokens) if t[:1].isupper() and t.lower() not in FILLER
            and t.lower() not in YES | NO | NEGATION and (i > 0 or t.lower() not in _COMMON_START)}


_COMMON_START = frozenset({"in", "on", "at", "while", "although", "however", "because", "since", "if", "when",
                           "after", "before", "during", "ooh", "oh", "well", "so", "one", "some", "many", "most"})
