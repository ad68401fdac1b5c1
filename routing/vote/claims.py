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

DESCRIPTORS = frozenset("""
city capital country name place state town home word thing language currency planet animal color colour
symbol element person people kind type
""".split())
"""Words that say what kind of thing the answer is, not which ("France's Capital City: Paris"): left out of
a claim when it says something else too, and a clause of nothing else is passed over for the next."""

NEGATION = frozenset({"not", "no", "never", "none", "neither", "nor", "nothing", "nobody", "cannot"})
NEGATED = "¬"
"""Marks a negated claim ("No, it is not Paris."): it never agrees with the positive one."""

YES = frozenset({"yes", "yeah", "yep", "yup", "correct", "true", "right", "indeed", "certainly", "absolutely",
                 "sure", "affirmative", "definitely", "exactly"})
NO = frozenset({"no", "nope", "incorrect", "false", "wrong", "negative", "nah", "never"})
POLARITY = {"yes": frozenset({"yes"}), "no": frozenset({"no"})}
ANTONYMS = {a: b for x, y in (("odd", "even"), ("true", "false"), ("hot", "cold"), ("larger", "smaller"),
                              ("bigger", "smaller"), ("greater", "less"), ("more", "less"), ("higher", "lower"),
                              ("taller", "shorter"), ("warmer", "colder"), ("heavier", "lighter"),
                              ("older", "younger"), ("alive", "dead"), ("open", "closed"))
            for a, b in ((x, y), (y, x))}
"""A yes/no question's claims: the polarity alone (`yes` and `no` are filler words, so never any other claim)."""

_AUX = ("is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|may|might|must|shall|"
        "isn't|aren't|wasn't|weren't|don't|doesn't|didn't|can't|couldn't|won't|wouldn't|shouldn't|hasn't|haven't")
_POLAR = re.compile(rf"(?:^|[.:!?\n]\s*)(?:{_AUX})\b[^?.!]*\?", re.I)
_OPTION = re.compile(r"(?:^|[\s(])\(?([A-Ea-e])[).:]\s+([^\n()]+?)(?=\s+\(?[A-Ea-e][).:]\s|\s*[\n?.]|\s*$"
                     r"|\s+(?:Answer|Reply|Respond|Choose|Pick|Select|Please|Give)\b)")
_LETTER = re.compile(r"^\W*(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*)?\(?([A-Ea-e])"
                     r"(?:[).:]|\s*$)", re.I)
"""A leading option letter: "B", "B) Osaka", "(b)", "Answer: B" (not the article of "A spider has ...")."""


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
    """The names it says (capitalised words but the first of a sentence), for a yes/no question."""
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
        numeric = not options and not polar and (bool(m) or any(_number(w) for w in ws) or bool(_QUANTITY.search(low)))
        names = frozenset(n for s in _SENTENCE.split(text) for n in _names(s.strip())) if polar else frozenset()
        k = _KIND_ASKED.search(text) if polar else None
        kind = frozenset(w for w in words(k.group(1)) if w not in FILLER) if k else frozenset()
        first = lead(text)
        factual = (not (options or polar or numeric) and len(first.split()) <= FACTUAL_WORDS
                   and bool(_FACTUAL.match(first)))
        return cls(ws, numeric, _norm(m.group(1)) if m else None, polar, options, names, kind, factual)

    def asks(self, token: str) -> bool:
        """The question already says it (a number whatever its sign: "9 minus 3" says 3 and -3)."""
        return token in self.words or token.lstrip("+-") in self.words


_SENTENCE = re.compile(r"[.!?](?!\d)|\n")
_FACTUAL = re.compile(r"\s*(?:what|who|which|where|when|whose)\b", re.I)
FACTUAL_WORDS = 12
"""A factual question's first sentence has at most this many words ("What is the capital of Norway?")."""
_KIND_ASKED = re.compile(r"(?:^|[.!?]\s+)(?:is|are|was|were)\s+(?:(?:a|an|the)\s+)?[^\W\d_][\w'-]*(?:\s+[\w'-]+){0,3}?"
                         r"\s+(?:a|an)\s+([^\W\d_]+(?:\s+[^\W\d_]+){0,2})\s*\?", re.I)
"""A yes/no question that asks whether its subject is a kind of thing: "Is a whale a fish?"."""
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
_NAME_RUN = re.compile(r"\b[A-Z][\w']*(?:\s+[A-Z][\w']*)+")


def _initials(text: str) -> frozenset[str]:
    """The initials of the names of several words a question says ("the United Kingdom" -> uk): an answer
    that says "the UK" says what the question did."""
    return frozenset("".join(w[0] for w in run.split()).lower() for run in _NAME_RUN.findall(text))


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


def _first_sentences(text: str, n: int = 2) -> list[str]:
    """The first `n` sentences that say anything (markdown emphasis dropped): where a polarity or an option
    is read."""
    return [s for s in _SENTENCE.split(text.replace("*", " ")) if s.strip()][:n]


def lead(text: str) -> str:
    """The first sentence that says anything."""
    return next((s for s in _SENTENCE.split(text) if s.strip()), "")


def lead_claim(text: str, question: Question, most_words: int) -> frozenset[str] | None:
    """A long answer's claim, to a factual question: read in its first sentence, where that has at most
    `most_words` words and the claim is names or numbers ("The discovery of penicillin by Alexander Fleming
    is a tale in itself, ..." -> {alexander, fleming}); else None ("There are many ways to ..." is no claim:
    the first sentence of a long explanation is often the same words around different answers)."""
    first = lead(text)
    if not question.factual or len(first.split()) > most_words:
        return None
    said = claim(text, question)
    if not said:
        return None
    shown = {_norm(t) for t in _TOKEN.findall(first) if t[:1].isupper() or _number(t)}
    return said if {p for w in said - {NEGATED} for p in w.split("-")} <= shown else None


def _negated(tokens: list[str]) -> bool:
    return any(t in NEGATION or t.endswith("n't") for t in tokens)


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
    sentences = _first_sentences(text)
    for first in sentences:
        if m := _ANSWER_IS.search(first):
            return m.group(1).lower()
    asked = question.words - FILLER
    for first in sentences:
        tokens = [t.lower() for t in _TOKEN.findall(first)]
        if not tokens:
            continue
        lead = tokens[0].removesuffix("'s")
        if lead in ("that", "it", "this") and len(tokens) > 1:  # "That's incorrect", "It's true"
            lead = tokens[1] if tokens[1] not in ("is", "was") else tokens[2] if len(tokens) > 2 else tokens[1]
        if (lead == "not" and not _NOT_ONLY.match(first.strip())) or lead in NO:
            return "no"
        if lead in YES:
            return "no" if _negated(tokens[1:3]) else "yes"  # "Sure not" is rare; "Yes, it is" is the rule
        clauses = [c for c in _CLAUSE.split(first) if c.strip()]
        bare = next((b for c in clauses[1:] if (b := _bare(c))), None)
        if bare is not None:  # "Paris in Italy: no"
            return bare
        spoke = [{_norm(t) for t in _TOKEN.findall(c)} & asked for c in clauses]
        covered = [len(s) for s in spoke]
        if not any(covered):
            if any(_contrary(c, question) for c in clauses) or _other_kind(first, question):
                return "no"  # "Cold." to "Is ice hot?"; "A mammal." to "Is a whale a fish?"
            continue
        for i, c in enumerate(clauses):  # a clause that negates what was asked: "..., not Madrid"
            said = [t.lower() for t in _TOKEN.findall(_NOT_ONLY.sub(" ", c))]
            if not spoke[i] or not (_negated(said) or not DENIAL.isdisjoint(said)) or _denies_else(said, asked):
                continue
            # it says no when it speaks of the most of the question, or of a part no other clause does ("...,
            # but it's not actually the tallest"); else it qualifies what another clause said ("Mars is a
            # planet, but it's not actually a terrestrial planet")
            others = set().union(*(w for j, w in enumerate(spoke) if j != i))
            if covered[i] == max(covered) or spoke[i] - others:
                return "no"
        best = covered.index(max(covered))
        clause = clauses[best]
        spoken = {_norm(t) for t in _TOKEN.findall(clause)} - FILLER
        numbers = {w for w in question.words if _number(w)}
        given = {w for w in spoken if _number(w)}
        if numbers and given and not given & numbers:  # another number than the question's
            return "no"
        if any(_contrary(c, question) for c in clauses):
            return "no"  # "7 is an odd number." or "..., which is an even number" to "Is 7 an even number?"
        if _other_kind(first, question):
            return "no"  # "Venus is a planet." to "Is Venus a star?"
        # the names of the answering clause and of clauses that speak of nothing asked ("Máximas, the capital
        # of Portugal"), not of another that speaks of the question ("Lisbon is the capital of Portugal, but
        # it's actually located in Spain": Spain is not what it answers with)
        names = set().union(*(_names(c) for j, c in enumerate(clauses) if j == best or not covered[j]))
        if _unmatched(question.names, names) and _unmatched(names, question.names):
            return "no"  # one of its names in place of another of the question's
        return "yes"
    return None


def _contrary(clause: str, question: Question) -> bool:
    """Whether a clause that negates nothing says the antonym of a word of the question ("odd" to "even")."""
    tokens = [t.lower() for t in _TOKEN.findall(clause)]
    return not _negated(tokens) and any(ANTONYMS.get(w) in question.words and w not in question.words
                                        for w in map(_norm, tokens))


BARE = {"yes": "yes", "yeah": "yes", "yep": "yes", "yup": "yes", "no": "no", "nope": "no", "nah": "no"}
"""The words that answer a yes/no question alone after a clause ("Paris in Italy: no"). Not "true" or "right":
after a clause they confirm it ("Lyon is not the capital, true" is a no)."""


def _bare(clause: str) -> str | None:
    """The polarity of a clause that is one answering word and nothing else ("no", "Yes")."""
    tokens = _TOKEN.findall(clause)
    return BARE.get(tokens[0].lower()) if len(tokens) == 1 else None


def _other_kind(sentence: str, question: Question) -> bool:
    """Whether a sentence that never says the kind a question asks about says its subject is another
    ("Venus is a planet", "Venus, a planet" or "..., but it's actually a planet" to "Is Venus a star?"; not
    "a marine animal" or "a celestial body": see GENERIC)."""
    if not question.kind or not question.kind.isdisjoint(words(sentence)):
        return False
    return any(_norm(m.group(1).split()[-1]) not in GENERIC for m in _KIND_SAID.finditer(sentence))


def _denies_else(tokens: list[str], asked: frozenset[str]) -> bool:
    """Whether what a clause's last negation denies is none of what was asked, nor a form of it ("The planet
    is not a star." to "Is Jupiter a planet?"), so the clause does not say no (it does when nothing follows:
    "It is not."; and "not as tall" denies "the tallest")."""
    at = [i for i, t in enumerate(tokens) if t in NEGATION or t.endswith("n't")]
    if not at:
        return False  # a denial by its word ("a myth") denies the clause it is in
    after = [_norm(t) for t in tokens[at[-1] + 1:] if t not in FILLER]
    return bool(after) and not any(_same_name(w, a) for w in after for a in asked)  # "not as tall": tallest


def _unmatched(these: frozenset[str] | set[str], those: frozenset[str] | set[str]) -> bool:
    """Whether a name of `these` is none of `those`, nor another form of one ("Australian", "Roma")."""
    return any(not any(_same_name(a, b) for b in those) for a in these)


DEMONYMS = {"irish": "ireland", "french": "france", "dutch": "netherlands", "swiss": "switzerland",
            "welsh": "wales", "danish": "denmark", "finnish": "finland", "polish": "poland", "scottish": "scotland",
            "filipino": "philippines", "english": "england", "british": "britain", "icelandic": "iceland"}
"""What a people or its language is called where it does not start as its country does ("Irish": Ireland)."""


def _same_name(a: str, b: str) -> bool:
    a, b = DEMONYMS.get(a, a), DEMONYMS.get(b, b)
    common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return a == b or (common >= 3 and common >= 0.6 * min(len(a), len(b)))


def _names(text: str) -> set[str]:
    """The capitalised words of a sentence (names, in English; its first word only when it is no common
    word: "Méridos is the capital", not "The capital")."""
    return _names_in(_TOKEN.findall(text))


def _names_in(tokens: list[str]) -> set[str]:
    """`_names` of a sentence already split into its raw tokens."""
    return {_norm(t) for i, t in enumerate(tokens) if t[:1].isupper() and t.lower() not in FILLER
            and t.lower() not in YES | NO | NEGATION and (i > 0 or t.lower() not in _COMMON_START)}


_COMMON_START = frozenset({"in", "on", "at", "while", "although", "however", "because", "since", "if", "when",
                           "after", "before", "during", "ooh", "oh", "well", "so", "one", "some", "many", "most"})


def option(text: str, question: Question) -> str | None:
    """A multiple-choice answer's option: the option whose words its first sentence (else its second) names
    first ("Osaka is the answer", "B) Osaka"), else the letter it leads with ("B", "Answer: B", "(b)"). The
    words win over a letter that says another option ("A: spider has 10 legs." to "A) 6 B) 8 C) 10" is C)."""
    for first in _first_sentences(text):
        tokens = words(first)
        named = [(min(i for i, t in enumerate(tokens) if t in said), letter) for letter, said in question.options
                 if said and said <= set(tokens)]
        if named:
            return min(named)[1]
    m = _LETTER.match(text.strip().replace("*", ""))
    if m and m.group(1).upper() in {letter for letter, _ in question.options}:
        return m.group(1).upper()
    return None


def claim(text: str, question: Question = NO_QUESTION) -> frozenset[str] | None:
    """What `text` claims: for a numeric question the number it gives; for a yes/no question its polarity;
    for a multiple-choice question its option; else the content words of its first clause that says
    something new (only its numbers, when it has some; else only its names, when a question is known and
    the clause names something; its descriptors only when it says nothing else; what a clause ending on
    what was asked sets beside it: "its currency, the yen"), marked NEGATED when that clause negates it;
    None when nothing is new."""
    if question.numeric and (number := _numeric_claim(text, question)):
        return number
    if question.polar and (said := polarity(text, question)):
        return POLARITY[said]
    if question.options and (letter := option(text, question)):
        return frozenset({f"option-{letter.lower()}"})
    fallback: frozenset[str] | None = None
    clauses = [(k, c) for k, s in enumerate(_SENTENCE.split(text.replace("*", " ").replace("_", " ")))
               for c in _CLAUSE.split(s)]
    for i, (k, clause) in enumerate(clauses):
        tokens = words(clause)
        content = frozenset(w for w in tokens if w not in FILLER and not question.asks(w))
        if not content:
            continue
        numbers = frozenset(w for w in content if _number(w))
        named = None
        if question.words and not numbers:
            named = _named(clause, content, question)
            if not named and (beside := _apposed(tokens, [c for _, c in clauses[i + 1:i + 2]], question)):
                return beside  # "Japan is known for its strong currency, the yen."
        specific = numbers or named or (content - DESCRIPTORS)
        if not specific:  # "France's Capital City": what kind of thing, not which; the next clause may say
            fallback = fallback or content
            continue
        if question.words and not _speaks(tokens, question) and (later := _answering(clauses[i + 1:], k, question)):
            clause, specific = later  # "Nederland, the capital of Norway is Oslo." -> {oslo}
        return specific | {NEGATED} if _negated([t.lower() for t in _TOKEN.findall(clause)]) else specific
    return fallback


def _speaks(tokens: list[str], question: Question) -> bool:
    """Whether a clause says a word of the question's own (not a filler word)."""
    return any(question.asks(w) for w in tokens if w not in FILLER)


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
        if not content or any(_number(w) for w in content):
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
    tokens = _TOKEN.findall(clause.strip())
    named = {n for n in _names_in(tokens) if n in content} - DESCRIPTORS
    for a, b in itertools.pairwise(tokens):
        head, kind = _norm(a), _norm(b)
        if a[:1].isupper() and b[:1].isupper() and not a.endswith("'s") and question.asks(head) \
                and head not in DESCRIPTORS and kind in DESCRIPTORS:
            named.add(f"{head}-{kind}")
    return frozenset(named)


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
