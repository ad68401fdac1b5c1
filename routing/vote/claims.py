"""What a free-text answer claims, read the way self-consistency reads a sample: its short answering span.

Real models wrap one claim in many phrasings: "The capital of France is Paris.", "Paris",
"It's Paris!", "Paris, the City of Light is home to ...". The claim is the first clause of
the answer that says something the question did not: its words, minus the question's own
words and filler, as a set. "7 times 8 is 56" and "56" both claim {56}; "7 days" and
"720 days" (to "How many days are in a week?") claim {7} and {720}, and stay apart.
"""

from __future__ import annotations

import itertools
import re

from routing.vote.polar import option, polarity
from routing.vote.question import (
    CLAUSE,
    FILLER,
    NATIONALITIES,
    NO_QUESTION,
    SENTENCE,
    TOKEN,
    Question,
    is_number,
    lead,
    names_in,
    negated,
    norm,
    words,
)

__all__ = ["NO_QUESTION", "Question", "agree", "claim", "lead_claim", "sentence"]


SHORT = 2
"""Claims of at most this many words must be equal to agree; longer ones are compared by overlap."""


DESCRIPTORS = frozenset("""
city capital country name place state town home word thing language currency planet animal color colour
symbol element person people kind type
""".split())
"""Words that say what kind of thing the answer is, not which ("France's Capital City: Paris"): left out of
a claim when it says something else too, and a clause of nothing else is passed over for the next."""


NEGATED = "¬"
"""Marks a negated claim ("No, it is not Paris."): it never agrees with the positive one."""


POLARITY = {"yes": frozenset({"yes"}), "no": frozenset({"no"})}
"""A yes/no question's claims: the polarity alone (`yes` and `no` are filler words, so never any other claim)."""


_CIRCUMSTANCE = re.compile(r"\s*(?:at|in|on|by|after|before|within|over|for|during)\b(?:[^,.!?;:\n]|\.(?=\d))*,", re.I)
"""A sentence's leading circumstance, within that sentence ("At 100 degrees Fahrenheit, ...", "In 12 months, ...",
"In Japan, the official language is ...")."""


_OPERATION = re.compile(r"[+*/×÷^]|\s-\s|\b(?:plus|minus|times|divided|multiplied)\b", re.I)
"""A calculation still to be done ("= 7 * 8"): no result yet."""


def _numeric_claim(text: str, q: Question) -> frozenset[str] | None:
    """For a question that asks for a number: in the first sentence that gives one the question did not
    already say, the number given for the question's unit ("7 days"), else the first such number; the
    result of a calculation ("81 divided by 9 equals 9"), though the question said it; a number of the rest of
    the sentence before one of its leading circumstance ("In 12 months, the Solar System has 850 planets");
    a number alone, though the question said it ("9" to "What is 81 divided by 9?")."""
    for sentence in SENTENCE.split(text)[:4]:
        m = _CIRCUMSTANCE.match(sentence)
        if m and any(is_number(t) and not q.asks(t) for t in words(sentence[m.end():])):
            sentence = sentence[m.end():]
        parts = re.split(r"=|\bequals?\b", sentence)
        result = parts[-1]  # "7 + 3 = 10": what follows the last "="
        tokens = words(result)
        given = [t for t in tokens if is_number(t)]
        if len(parts) > 1 and given and q.unit is None and not _OPERATION.search(result):
            return frozenset({given[0]})
        if not given:
            tokens = words(sentence)
        found = [i for i, t in enumerate(tokens) if is_number(t) and not q.asks(t)]
        if not found:
            continue
        if q.unit is not None:
            for i in found:
                if q.unit in tokens[i + 1:i + 3]:
                    return frozenset({tokens[i]})
        return frozenset({tokens[found[0]]})
    said = [w for w in words(text) if w not in FILLER]
    return frozenset(said) if len(said) == 1 and is_number(said[0]) else None  # "9", "The answer is 9."


def lead_claim(text: str, question: Question, most_words: int) -> frozenset[str] | None:
    """A long answer's claim, to a factual question: read in its first sentence, where that has at most
    `most_words` words and the claim is names or numbers ("The discovery of penicillin by Alexander Fleming
    is a tale in itself, ..." -> {alexander, fleming}), or where its first clause says what its subject is in
    the question's words ("The U.S. dollar is the most widely accepted currency in the world and ..." ->
    {dollar}, `_subject`); to a numeric question, the number its first sentence gives, where that has at most
    `most_words` words ("It's easy to get lost in the numbers, but it's actually just 24. So, ..."); else None
    ("There are many ways to ..." is no claim: the first sentence of a long explanation is often the same words
    around different answers)."""
    if question.numeric:  # "It's easy to get lost in the numbers, but it's actually just 24. So, ..."
        first = lead(text)
        return _numeric_claim(first, question) if len(first.split()) <= most_words else None
    if not question.factual:
        return None
    first = lead(_undotted(text))
    said = claim(text, question)
    opening = CLAUSE.split(first)[0]
    opening_words = words(opening)
    if not said or said - {NEGATED} == _subject(opening_words, question):
        return said
    restated = _restated(opening_words, question)
    if len(first.split()) > most_words and not restated:
        return None
    shown = {norm(t) for t in TOKEN.findall(opening if restated else first) if t[:1].isupper() or is_number(t)}
    return said if {p for w in said - {NEGATED} for p in w.split("-")} <= shown else None


def _copula(tokens: list[str]) -> int:
    """Where a clause's first "is" (are, was, were) stands; 0 where it has none (or starts with one)."""
    return next((i for i, t in enumerate(tokens) if t in COPULAS), 0)


def _restated(tokens: list[str], question: Question) -> bool:
    """Whether a clause's subject is the question's own words ("The coldest continent is Antarctica, but ..."):
    what follows its verb is the answer, however long the sentence goes on."""
    cop = _copula(tokens)
    subject = [w for w in tokens[:cop] if w not in FILLER]
    return bool(subject) and all(question.asks(w) for w in subject)


def claim(text: str, question: Question = NO_QUESTION) -> frozenset[str] | None:
    """What `text` claims: for a numeric question the number it gives; for a yes/no question its polarity;
    for a multiple-choice question its option; else the content words of its first clause that says
    something new (to a factual question, the subject of a clause that says it is the kind of thing asked:
    "Italian is a Romance language ..."; else only its numbers, when it has some; else only its names, when
    a question is known and the clause names something; its descriptors only when it says nothing else; what
    a clause ending on what was asked sets beside it: "its currency, the yen"; to a "who" question, names before
    numbers; past a leading circumstance, "In Japan, ...", or a heading that ends on what was asked, "The Red
    Planet: Europa"), marked NEGATED when that clause negates it; None when nothing is new."""
    if question.numeric and (number := _numeric_claim(text, question)):
        return number
    if question.polar and (said := polarity(text, question)):
        return POLARITY[said]
    if question.options and (letter := option(text, question)):
        return frozenset({f"option-{letter.lower()}"})
    text = _undotted(text)
    if question.factual and (m := _CIRCUMSTANCE.match(text) or _titled(text, question)) \
            and (rest := _claim(text[m.end():], question)):
        return rest  # "In Japanese, the language is called Nepa" -> {nepa}; "The Red Planet: Europa" -> {europa}
    return _claim(text, question)


_TITLE = re.compile(r"\s*((?:[^\W\d_][\w'-]*\s+){0,3}[^\W\d_][\w'-]*)\s*:")
"""A heading of at most four words before a colon ("The Red Planet: Europa")."""


def _titled(text: str, question: Question) -> re.Match[str] | None:
    """An answer's heading that ends on what was asked ("The Red Planet: Europa" to "Which planet is known for
    its rings?"): it says what kind of thing follows, not which."""
    m = _TITLE.match(text)
    last = words(m.group(1))[-1] if m else ""
    return m if last not in FILLER and question.asks(last) else None


def _undotted(text: str) -> str:
    return _DOTTED.sub(lambda m: m.group(0).replace(".", ""), text)


_DOTTED = re.compile(r"\b(?:[A-Z]\.){2,}")
"""Initials spelt with dots ("the U.S. dollar"): read as one word ("US"), their dots ending no sentence."""


COPULAS = frozenset({"is", "are", "was", "were"})


def _claim(text: str, question: Question) -> frozenset[str] | None:
    fallback: frozenset[str] | None = None
    person = question.factual and "who" in question.words  # a year is no answer to "Who ...?"
    clauses = [(k, c) for k, s in enumerate(SENTENCE.split(text.replace("*", " ").replace("_", " ")))
               for c in CLAUSE.split(s)]
    for i, (k, clause) in enumerate(clauses):
        tokens = words(clause)
        content = frozenset(w for w in tokens if w not in FILLER and not question.asks(w))
        if question.names and content:
            content -= _restating(tokens, question)
        if not content:
            continue
        if question.factual and (subject := _subject(tokens, question)):
            specific = subject  # "Italian is a Romance language spoken in Italy" -> {italian}
        else:
            numbers = frozenset(w for w in content if is_number(w))
            named = None
            if question.words and (person or not numbers):
                named = _named(clause, content, question)
                if not named and not numbers and \
                        (beside := _apposed(tokens, [c for _, c in clauses[i + 1:i + 2]], question)):
                    return beside  # "Japan is known for its strong currency, the yen."
            specific = ((named or numbers) if person else (numbers or named)) or (content - DESCRIPTORS)
            if not specific:  # "France's Capital City": what kind of thing, not which; the next clause may say
                fallback = fallback or content
                continue
        if question.words and not _speaks(tokens, question) and (later := _answering(clauses[i + 1:], k, question)):
            clause, specific = later  # "Nederland, the capital of Norway is Oslo." -> {oslo}
        return specific | {NEGATED} if negated([t.lower() for t in TOKEN.findall(clause)]) else specific
    return fallback


def _restating(tokens: list[str], question: Question) -> set[str]:
    """A form of one of the question's names before the kind of thing it asks for says the question again
    ("Hungarian capital, Budapest." to "What is the capital of Hungary?"), unless the kind is a language, which
    that form names ("the Japanese language")."""
    return {a for a, b in itertools.pairwise(tokens) if b in DESCRIPTORS and b != "language" and question.asks(b)
            and not question.asks(a) and question.name_form(a)}


def _speaks(tokens: list[str], question: Question) -> bool:
    """Whether a clause says a word of the question's own (not a filler word), or a form of one of its names
    ("Italian" to a question about Italy)."""
    return any(question.asks(w) or question.name_form(w) for w in tokens if w not in FILLER)


def _subject(tokens: list[str], question: Question) -> frozenset[str] | None:
    """A clause that says its subject is the kind of thing asked ("Italian is a Romance language spoken in
    Italy" to "What language is spoken in Italy?", "The U.S. dollar is the most widely accepted currency"): the
    subject's new words (at most three, no number), else None."""
    cop = _copula(tokens)
    if not cop:
        return None
    new = frozenset(w for w in tokens[:cop] if w not in FILLER and not question.asks(w)) - DESCRIPTORS
    if not new or len(new) > 3 or any(is_number(w) for w in new):
        return None
    return new if any(w in DESCRIPTORS and question.asks(w) for w in tokens[cop + 1:]) else None


def _answering(after: list[tuple[int, str]], sentence: int, question: Question) -> tuple[str, frozenset[str]] | None:
    """After a clause that speaks of nothing asked: the next clause of its sentence that does, with the names
    it gives, where it gives some ("Nederland, the capital of Norway is Oslo.", "In 1928, Alexander Fleming
    discovered penicillin."); None where that clause names nothing new ("Kristina: The capital of Norway.")."""
    for k, clause in after:
        if k != sentence:
            return None
        tokens = words(clause)
        if not _speaks(tokens, question):
            continue
        content = frozenset(w for w in tokens if w not in FILLER and not question.asks(w))
        if not content or any(is_number(w) for w in content):
            return None
        named = _named(clause, content, question)
        return (clause, named) if named else None
    return None


def _apposed(tokens: list[str], after: list[str], question: Question) -> frozenset[str] | None:
    """What a clause that names nothing and ends on what was asked names in the few words set beside it
    ("Japan is known for its strong currency, the yen." -> {yen}), or None."""
    if not tokens or not after or tokens[-1] in FILLER or not question.asks(tokens[-1]):
        return None
    beside = words(after[0])
    new = frozenset(w for w in beside if w not in FILLER and not question.asks(w))
    new = (new - DESCRIPTORS) or new
    return new if beside and beside[0] in ("the", "a", "an") and 0 < len(new) <= 3 else None


def _named(clause: str, content: frozenset[str], question: Question) -> frozenset[str]:
    """The names among a clause's new words, where it names one: the answer, wherever in the clause it
    stands ("Mexico is home to the vibrant capital city of Mexico City" -> {mexico-city}; "The longest
    creature on Earth is the Blue Whale" -> {earth, blue, whale}). A name made of one the question said and
    a word of what kind ("Mexico City" to "What is the capital of Mexico?") is one new name."""
    tokens = TOKEN.findall(clause.strip())
    kinds = {norm(a) for a, b in itertools.pairwise(tokens)  # "a Dutch painter": what kind of painter, not who
             if a.lower() in NATIONALITIES and b[:1].islower() and b.lower() not in FILLER
             and norm(b) not in DESCRIPTORS}  # but "the Italian language" says which language
    named = {n for n in names_in(tokens) if n in content} - DESCRIPTORS - kinds
    for a, b in itertools.pairwise(tokens):
        head, kind = norm(a), norm(b)
        if a[:1].isupper() and b[:1].isupper() and not a.endswith("'s") and question.asks(head) \
                and head not in DESCRIPTORS and kind in DESCRIPTORS and not question.asks(kind):
            named.add(f"{head}-{kind}")
    return frozenset(named)


def sentence(text: str, question: Question = NO_QUESTION) -> frozenset[str]:
    """The content words of the first sentence (what a clause's claim is read in)."""
    first = next((s for s in SENTENCE.split(_undotted(text)) if s.strip()), "")
    return frozenset(w for w in words(first) if w not in FILLER and not question.asks(w))


def agree(a: frozenset[str], b: frozenset[str], threshold: float,
          a_said: frozenset[str] = frozenset(), b_said: frozenset[str] = frozenset()) -> bool:
    """Claims agree when equal; when one holds the other and is at most twice as long ("Au" and
    "represented Au"); when they share a word and each is said in the other's first sentence (`a_said`,
    `b_said`: "a deep, rich shade of blue" and "a deep shade of blue"); or, both longer than SHORT,
    when their Sørensen–Dice overlap reaches `threshold`."""
    if (NEGATED in a) != (NEGATED in b):  # "not Paris" never agrees with "Paris"
        return False
    small, big = sorted((a, b), key=len)
    if small <= big and len(big) <= 2 * len(small):
        return True
    if a & b and a <= b_said and b <= a_said:
        return True
    if len(small) <= SHORT:
        return False
    return 2 * len(a & b) / (len(a) + len(b)) >= threshold
