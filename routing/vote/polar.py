"""Yes/no and multiple-choice answers: the polarity or the option an answer gives, read against the question.

"Yes.", "Yes, it is." and "Lyon is the capital of France." are one yes to "Is Lyon the capital of
France?"; "No.", "That's incorrect.", "Lyon is not the capital." and "Tokyo is the capital of Japan." (to
"Is Tokyo the capital of China?") one no. "A", "A) Tokyo" and "Tokyo" are one option. `claims.claim` makes
them claims.
"""

from __future__ import annotations

import re

from routing.vote.question import (
    CLAUSE,
    FILLER,
    NEGATION,
    NO,
    TOKEN,
    YES,
    Question,
    first_sentences,
    is_number,
    names_of,
    negated,
    norm,
    same_name,
    words,
)

ANTONYMS = {a: b for x, y in (("odd", "even"), ("true", "false"), ("hot", "cold"), ("larger", "smaller"),
                              ("bigger", "smaller"), ("greater", "less"), ("more", "less"), ("higher", "lower"),
                              ("taller", "shorter"), ("warmer", "colder"), ("heavier", "lighter"),
                              ("older", "younger"), ("alive", "dead"), ("open", "closed"))
            for a, b in ((x, y), (y, x))}
"""Words a yes/no answer may give in place of the question's own: "7 is odd" to "Is 7 an even number?"."""


_LETTER = re.compile(r"^\W*(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*)?\(?([A-Ea-e])"
                     r"(?:[).:]|\s*$)", re.I)
"""A leading option letter: "B", "B) Osaka", "(b)", "Answer: B" (not the article of "A spider has ...")."""


_KIND_SAID = re.compile(r"(?:\b(?:is|are|was|were)\s+|'s\s+|^\s*|,\s*)"
                        r"(?:(?:actually|also|just|only|really|indeed|simply|merely|in\s+fact)\s+)?(?:a|an)\s+((?:[^\W\d_]+[\s-]+){0,3}?[^\W\d_]+)"
                        r"(?=\s*$|\s*[,.;:!?()]|\s+(?:that|which|who|with|of|in|on|from|known|and|but|or|where|"
                        r"orbiting|for|to|like)\b)", re.I)
"""What kind of thing a sentence says something is ("Venus is a planet", "Venus, a planet"): its head is the
phrase's last word."""


GENERIC = frozenset("""
thing things type kind sort form body object substance species member part example word term being organism
item one matter material animal creature entity group class category place
""".split())
"""Kinds so wide that saying one denies no narrower one ("A dolphin is a marine animal" to "Is a dolphin a
mammal?")."""


_ANSWER_IS = re.compile(r"\banswer\b[^.\n]{0,40}?\bis\b\s*:?\s*\W{0,2}(yes|no)\b", re.I)


_NOT_ONLY = re.compile(r"\bnot\s+(?:only|just|merely|simply)\b", re.I)


DENIAL = frozenset({"myth", "untrue", "false", "incorrect", "fiction"})
"""Words that deny the clause they are in: "The dog's wings are just a myth." is a no."""


def polarity(text: str, question: Question) -> str | None:
    """A yes/no question's answer, read in the first two sentences: "the answer is yes"; a leading word ("Yes,
    it is.", "No.", "Correct", "Not at all", "That's incorrect"); else the clause that speaks most of what the
    question asked (the first of those that speak of all of it) says no when it, or a clause that speaks of a
    part of the question no other does, negates it ("Lyon is not the capital of France.", "The sun is a
    celestial body, but it's not actually a star."; "not only" is no negation, "a myth" is one, and "Mars is
    a planet, but it's not a terrestrial planet" only qualifies), gives another number ("Spiders have 8
    legs." to "Do spiders have six legs?"), an antonym ("odd" to "even") or another name than the question's
    ("Tokyo is the capital of Japan." to "Is Tokyo the capital of China?"; the names of that clause and of
    clauses that speak of nothing asked) or another kind of thing than the one asked ("Venus is a planet."
    to "Is Venus a star?"), and yes otherwise. A yes or no alone after what it answers ("Paris in Italy: no")
    is that; a sentence that speaks of nothing asked says no by an antonym ("Cold." to "Is ice hot?")."""
    sentences = first_sentences(text)
    for first in sentences:
        if m := _ANSWER_IS.search(first):
            return m.group(1).lower()
    asked = question.words - FILLER
    for first in sentences:
        tokens = [t.lower() for t in TOKEN.findall(first)]
        if not tokens:
            continue
        lead = tokens[0].removesuffix("'s")
        if lead in ("that", "it", "this") and len(tokens) > 1:  # "That's incorrect", "It's true"
            lead = tokens[1] if tokens[1] not in ("is", "was") else tokens[2] if len(tokens) > 2 else tokens[1]
        if (lead == "not" and not _NOT_ONLY.match(first.strip())) or lead in NO:
            return "no"
        if lead in YES:
            return "no" if negated(tokens[1:3]) else "yes"  # "Sure not" is rare; "Yes, it is" is the rule
        clauses = [c for c in CLAUSE.split(first) if c.strip()]
        bare = next((b for c in clauses[1:] if (b := _bare(c))), None)
        if bare is not None:  # "Paris in Italy: no"
            return bare
        spoke = [{norm(t) for t in TOKEN.findall(c)} & asked for c in clauses]
        covered = [len(s) for s in spoke]
        if not any(covered):
            if any(_contrary(c, question) for c in clauses) or _other_kind(first, question):
                return "no"  # "Cold." to "Is ice hot?"; "A mammal." to "Is a whale a fish?"
            continue
        for i, c in enumerate(clauses):  # a clause that negates what was asked: "..., not Madrid"
            said = [t.lower() for t in TOKEN.findall(_NOT_ONLY.sub(" ", c))]
            if not spoke[i] or not (negated(said) or not DENIAL.isdisjoint(said)) or _denies_else(said, asked):
                continue
            # it says no when it speaks of the most of the question, or of a part no other clause does ("...,
            # but it's not actually the tallest"); else it qualifies what another clause said ("Mars is a
            # planet, but it's not actually a terrestrial planet")
            others = set().union(*(w for j, w in enumerate(spoke) if j != i))
            if covered[i] == max(covered) or spoke[i] - others:
                return "no"
        best = covered.index(max(covered))
        clause = clauses[best]
        spoken = {norm(t) for t in TOKEN.findall(clause)} - FILLER
        numbers = {w for w in question.words if is_number(w)}
        given = {w for w in spoken if is_number(w)}
        if numbers and given and not given & numbers:  # another number than the question's
            return "no"
        if any(_contrary(c, question) for c in clauses):
            return "no"  # "7 is an odd number." or "..., which is an even number" to "Is 7 an even number?"
        if _other_kind(first, question):
            return "no"  # "Venus is a planet." to "Is Venus a star?"
        # the names of the answering clause and of clauses that speak of nothing asked ("Máximas, the capital
        # of Portugal"), not of another that speaks of the question ("Lisbon is the capital of Portugal, but
        # it's actually located in Spain": Spain is not what it answers with)
        names = set().union(*(names_of(c) for j, c in enumerate(clauses) if j == best or not covered[j]))
        if _unmatched(question.names, names) and _unmatched(names, question.names):
            return "no"  # one of its names in place of another of the question's
        return "yes"
    return None


def _contrary(clause: str, question: Question) -> bool:
    """Whether a clause that negates nothing says the antonym of a word of the question ("odd" to "even")."""
    tokens = [t.lower() for t in TOKEN.findall(clause)]
    return not negated(tokens) and any(ANTONYMS.get(w) in question.words and w not in question.words
                                        for w in map(norm, tokens))


BARE = {"yes": "yes", "yeah": "yes", "yep": "yes", "yup": "yes", "no": "no", "nope": "no", "nah": "no"}
"""The words that answer a yes/no question alone after a clause ("Paris in Italy: no"). Not "true" or "right":
after a clause they confirm it ("Lyon is not the capital, true" is a no)."""


def _bare(clause: str) -> str | None:
    """The polarity of a clause that is one answering word and nothing else ("no", "Yes")."""
    tokens = TOKEN.findall(clause)
    return BARE.get(tokens[0].lower()) if len(tokens) == 1 else None


def _other_kind(sentence: str, question: Question) -> bool:
    """Whether a sentence that never says the kind a question asks about says its subject is another
    ("Venus is a planet", "Venus, a planet" or "..., but it's actually a planet" to "Is Venus a star?"; not
    "a marine animal" or "a celestial body": see GENERIC)."""
    if not question.kind or not question.kind.isdisjoint(words(sentence)):
        return False
    return any(norm(m.group(1).split()[-1]) not in GENERIC for m in _KIND_SAID.finditer(sentence))


def _denies_else(tokens: list[str], asked: frozenset[str]) -> bool:
    """Whether what a clause's last negation denies is none of what was asked, nor a form of it ("The planet
    is not a star." to "Is Jupiter a planet?"), so the clause does not say no (it does when nothing follows:
    "It is not."; and "not as tall" denies "the tallest")."""
    at = [i for i, t in enumerate(tokens) if t in NEGATION or t.endswith("n't")]
    if not at:
        return False  # a denial by its word ("a myth") denies the clause it is in
    after = [norm(t) for t in tokens[at[-1] + 1:] if t not in FILLER]
    return bool(after) and not any(same_name(w, a) for w in after for a in asked)  # "not as tall": tallest


def _unmatched(these: frozenset[str] | set[str], those: frozenset[str] | set[str]) -> bool:
    """Whether a name of `these` is none of `those`, nor another form of one ("Australian", "Roma")."""
    return any(not any(same_name(a, b) for b in those) for a in these)


_CORRECTION = re.compile(r"\bbut\s+(?:(?:it|that|this)(?:'s|\s+is)\s+|they(?:'re|\s+are)\s+)?(?:actually|really|rather|"
                         r"in\s+fact)\b", re.I)


def _corrected(sentence: str) -> list[str]:
    """Where a sentence corrects itself ("Iron is the most common metal, but it's actually Mercury."), what it
    says after the correction first, then the whole sentence."""
    m = _CORRECTION.search(sentence)
    return [sentence[m.end():], sentence] if m else [sentence]


def option(text: str, question: Question) -> str | None:
    """A multiple-choice answer's option: the option whose words its first sentence (else its second) names
    first ("Osaka is the answer", "B) Osaka"; after a correction, what it corrects to: "..., but it's
    actually Mercury"), else the letter it leads with ("B", "Answer: B", "(b)"). The words win over a letter
    that says another option ("A: spider has 10 legs." to "A) 6 B) 8 C) 10" is C)."""
    for first in first_sentences(text):
        for read in _corrected(first):
            tokens = words(read)
            named = [(min(i for i, t in enumerate(tokens) if t in said), letter) for letter, said in question.options
                     if said and said <= set(tokens)]
            if named:
                return min(named)[1]
    m = _LETTER.match(text.strip().replace("*", ""))
    if m and m.group(1).upper() in {letter for letter, _ in question.options}:
        return m.group(1).upper()
    return None
