"""The task set of `bench/quality.py` and its answer key: questions with known answers (arithmetic, unit
conversions, capitals, yes/no and multiple-choice facts) from a seeded generator, and `correct`, which
grades an answer by rules of its own. Nothing here imports the vote, so a bug in its claim reader cannot
hide in the grade."""

from __future__ import annotations

import random
import re
from typing import Any

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin", "Spain": "Madrid",
    "Canada": "Ottawa", "Australia": "Canberra", "Egypt": "Cairo", "Russia": "Moscow", "China": "Beijing",
    "India": "New Delhi", "Brazil": "Brasilia", "Mexico": "Mexico City", "Argentina": "Buenos Aires",
    "United Kingdom": "London", "Ireland": "Dublin", "Portugal": "Lisbon", "Greece": "Athens",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Poland": "Warsaw", "Austria": "Vienna", "Hungary": "Budapest", "Turkey": "Ankara", "Kenya": "Nairobi",
    "Thailand": "Bangkok", "South Korea": "Seoul", "Peru": "Lima", "Chile": "Santiago", "Cuba": "Havana",
    "Netherlands": "Amsterdam", "Belgium": "Brussels", "Switzerland": "Bern", "Czech Republic": "Prague",
}
UNITS = [("minutes", "hours", 60), ("seconds", "minutes", 60), ("days", "weeks", 7), ("hours", "days", 24),
         ("centimeters", "meters", 100), ("grams", "kilograms", 1000), ("months", "years", 12)]


def tasks(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` questions with known answers, in five kinds, from a seeded generator."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    kinds = ["arithmetic", "units", "capital", "yesno", "choice"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "arithmetic":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            word, ans = rng.choice([("plus", a + b), ("minus", a - b), ("times", a * b)])
            q, want = f"What is {a} {word} {b}? Answer with a number.", str(ans)
        elif kind == "units":
            small, big, k = rng.choice(UNITS)
            m = rng.randint(1, 5)
            q, want = f"How many {small} are in {m} {big if m > 1 else big[:-1]}? Answer with a number.", str(k * m)
        elif kind == "capital":
            country = rng.choice(sorted(CAPITALS))
            q, want = f"What is the capital of {country}? Answer in a few words.", CAPITALS[country]
        elif kind == "yesno":
            country = rng.choice(sorted(CAPITALS))
            city = CAPITALS[country] if rng.random() < 0.5 else rng.choice(sorted(set(CAPITALS.values())))
            q = f"Is {city} the capital of {country}? Answer yes or no."
            want = "yes" if city == CAPITALS[country] else "no"
        else:
            country = rng.choice(sorted(CAPITALS))
            options = [*rng.sample(sorted(set(CAPITALS.values()) - {CAPITALS[country]}), 3), CAPITALS[country]]
            rng.shuffle(options)
            letters = "ABCD"
            listed = " ".join(f"{letters[j]}) {o}" for j, o in enumerate(options))
            q = f"Which city is the capital of {country}? {listed}. Answer with the letter."
            want = letters[options.index(CAPITALS[country])]
            out.append({"kind": kind, "question": q, "answer": want,
                        "options": dict(zip(letters, options, strict=True))})
            continue
        out.append({"kind": kind, "question": q, "answer": want})
    return out


NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                                 "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
                                                 .split())}


def _numbers(text: str) -> list[str]:
    """Every number a text says, digits or words ("7", "7.0", "seven" are all "7"), in order."""
    out = []
    for tok in re.findall(r"-?\d[\d,]*(?:\.\d+)?|[A-Za-z]+", text):
        if tok[0].isdigit() or tok[0] == "-":
            n = float(tok.replace(",", ""))
            out.append(str(int(n)) if n.is_integer() else str(n))
        elif tok.lower() in NUMBER_WORDS:
            out.append(NUMBER_WORDS[tok.lower()])
    return out


def correct(task: dict[str, Any], text: str) -> bool:
    """The answer key, by its own rules (no code shared with the vote's claim reader, so a bug there cannot
    hide in the grade): a number is right when the first number the answer says that the question did not
    is the answer; a capital when its name is said; yes/no by the first yes or no word; an option by the
    letter it gives, else the one option it names."""
    t = text.strip()
    kind, want = task["kind"], task["answer"]
    if kind in ("arithmetic", "units"):
        asked = set(_numbers(task["question"]))
        said = [n for n in _numbers(t) if n not in asked]
        return bool(said) and said[0] == want
    if kind == "capital":
        return re.search(rf"\b{re.escape(want)}\b", t, re.I) is not None
    if kind == "yesno":
        m = re.search(r"\b(yes|no)\b", t, re.I)
        return m is not None and m.group(1).lower() == want
    m = re.search(r"(?:^|[\s(*])([A-D])(?:[).:\s*]|$)", t)
    if m:
        return m.group(1) == want
    named = [letter for letter, city in task["options"].items() if re.search(rf"\b{re.escape(city)}\b", t)]
    return named == [want]
