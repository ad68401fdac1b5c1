"""Claims of every common kind: yes/no polarity, multiple-choice options, numbers, negations, descriptors.

First the issue's own cases, then real SmolLM2-135M-Instruct answers committed with hand labels
(`bench/smol_corpus.py --kind ...` wrote them; the labels, one per answer, were written after reading them:
the polarity, the option, the number or the entity said; `?` where an answer says none). Each kind is split:
`tuned` sets were read while the rules were written; `tuned2` sets were held out for the first version of the
rules, measured, then read to revise them (`yesno-tuned3`, held out for the second version, was read for the
third, `yesno-tuned4` held out for the third and read for the fourth, `yesno-tuned5` held out for the fourth
and read for the fifth, `yesno-tuned6` held out for the fifth and read for the sixth, `factual-tuned3` held
out for the first short-factual rules and read for the names rule, `factual-tuned4` held out for the names
rule and the answering clause and read for the subject rule, `factual-tuned5` held out for the subject rule
and read for the people's adjective, `factual-tuned6` held out for the people's adjective and read for the
next revision with `factual-tuned7` (answered and labelled as a held-out set, but its clusters were seen while its
labels were checked), `numeric-tuned` held out for every rule before it and read for the
numbers revision); `heldout` sets were written and labelled before the last revision and never used to change
a rule (`choice-heldout2` after it, as the first multiple-choice held-out set had no miss left to show a
change). The tests assert rates over all labelled pairs of a set, with a margin below what was measured
(BENCHMARKS.md has the numbers): answers with one label in one cluster, answers with different labels in
different clusters.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from routing.vote.vote import Ballot, cluster

DATA = Path(__file__).parent / "data"


def groups(question: str, texts: list[str]) -> list[list[int]]:
    found = cluster([Ballot(str(i), 1.0, i, t) for i, t in enumerate(texts)], 0.8, question)
    return [[int(b.member) for b in c.ballots] for c in found]


@pytest.mark.parametrize("question, texts, want", [
    ("Is Lyon the capital of France?", ["Yes.", "Yes, it is.", "Yes, Lyon is the capital of France.", "No.",
                                        "No, it is not.", "That's incorrect.", "Not at all."],
     [[0, 1, 2], [3, 4, 5, 6]]),
    ("Is Tokyo the capital of China?", ["No.", "No. Tokyo is the capital of Japan", "No. Paris is not the capital o",
                                        "Tokyo is the capital of Japan.", "Yes"], [[0, 1, 2, 3], [4]]),
    ("Do spiders have six legs?", ["Spiders have eight legs.", "No.", "Yes, six."], [[0, 1], [2]]),
    ("Is 7 an even number?", ["7 is an odd number.", "No, it is odd.", "Yes, 7 is even."], [[0, 1], [2]]),
    ("Which city is the capital of Japan? A) Tokyo B) Osaka", ["A", "A) Tokyo", "Tokyo", "The answer is A.",
                                                               "B", "Osaka is the capital.", "(b) Osaka"],
     [[0, 1, 2, 3], [4, 5, 6]]),
    ("How many legs does a spider have? A) 6 B) 8 C) 10", ["A spider has 10 legs.", "C", "10", "A: 8 legs", "B"],
     [[0, 1, 2], [3, 4]]),  # "A spider" is an article; "A: 8 legs" names option B
    ("Is Lisbon the capital of Spain?", ["Lisbon is the capital of Portugal, but it's located in Spain.", "No.",
                                         "Lisbon, the capital of Spain.", "Yes.", "Máximas, the capital of Spain."],
     [[0, 1, 4], [2, 3]]),  # the names of the clause that answers, and of one that speaks of nothing asked
    ("Do dogs have wings?", ["The dog's wings are just a myth.", "No.", "They do. They have wings."], [[0, 1], [2]]),
    ("Is Mars a planet?", ["Mars is a planet, but it's not actually a terrestrial planet.", "Yes.", "No, it is not.",
                           "Mars is not a planet."], [[0, 1], [2, 3]]),  # a "but not" that qualifies is no no
    ("Is Mount Everest the tallest mountain on Earth?", ["Mount Everest is the highest mountain on Earth, but it's "
                                                        "not actually the tallest.", "No.", "Yes, it is."],
     [[0, 1], [2]]),  # one that denies a part of the question no other clause speaks of is
    ("What is the capital of France?", ["No, it is not Paris.", "Paris", "The capital of France is Paris.",
                                        "France's Capital City: Paris"], [[0], [1, 2, 3]]),
    ("What is the capital of Germany?", ["Germany's capital is Berlin.", "Germany is home to the capital city of "
                                         "Berlin.", "Bonn"], [[0, 1], [2]]),
    # the name a clause gives, wherever in it: a place named with what kind it is, a thing set beside what was asked
    ("What is the capital of Mexico?", ["Mexico is home to the vibrant capital city of Mexico City, a modern "
                                        "metropolis.", "Mexico City is the capital of Mexico.", "Mexico's capital is "
                                        "Mexico City.", "Guadalajara", "The capital of Mexico is not Mexico City."],
     [[0, 1, 2], [3], [4]]),
    ("What is the currency of Japan?", ["Japan is known for its strong currency, the yen.", "Japan's currency is the "
                                        "yen (JPY).", "The yen", "Japan is known for its strong currency, the euro."],
     [[0, 1, 2], [3]]),
    ("What is the capital of France?", ["Paris is the capital of France, the city of light.", "Paris",
                                        "Lyon is the capital of France, the city of light."], [[0, 1], [2]]),
    ("What is the currency of the United Kingdom?", ["The UK is a sovereign state with its own currency, the Pound "
                                                     "Sterling.", "The pound sterling", "The UK uses the euro."],
     [[0, 1], [2]]),  # "the UK" is what the question said
    ("What is the tallest animal?", ["The longest creature on Earth is the Blue Whale.", "The tallest animal is the "
                                     "Blue Whale.", "The Tallest Animal: The Great White Shark, a majestic creature."],
     [[0, 1], [2]]),
    # the clause that answers, after one that speaks of nothing asked; a factual answer's first sentence
    ("What is the capital of Norway?", ["Nederland, the capital of Norway is Oslo.", "Oslo", "Kristina: The capital "
                                        "of Norway."], [[0, 1], [2]]),
    ("Who discovered penicillin?", ["In 1928, Alexander Fleming discovered penicillin.", "Alexander Fleming",
                                    "Louis Pasteur"], [[0, 1], [2]]),
    ("What is the chemical symbol for silver?", ["silver is silver (IUPAC), denoted by the symbol Ag.", "Ag", "Au"],
     [[0, 1], [2]]),
    ("Who discovered penicillin?", ["The discovery of penicillin by Alexander Fleming is a tale in itself, with both "
                                    "positive and negative aspects intertwined. On one hand, the discovery paved the "
                                    "way for antibiotics, which have saved millions of lives since then.",
                                    "Alexander Fleming discovered penicillin.", "Louis Pasteur discovered it."],
     [[0, 1], [2]]),
    ("What is the best way to learn Python?", [  # a long explanation's first sentence is no claim of its own
        "There are many ways to learn Python, and the best one depends on you. Some people like books, while others "
        "prefer videos, interactive courses, or building small projects that solve their own problems at work.",
        "There are many ways to learn Python, and the best one depends on you. I would start with the official "
        "tutorial, then write a small web scraper, and read other people's code on GitHub every week."], [[0], [1]]),
    # a bare yes or no after what it answers; an antonym alone, or in a clause beside; another kind of thing
    ("Is Rome in Spain?", ["Rome in Spain: no", "No.", "Rome in Spain.", "Yes", "Rome is not in Spain, true."],
     [[0, 1, 4], [2, 3]]),  # a "true" after a clause confirms that clause
    ("Is fire cold?", ["Hot!", "No.", "Fire is cold.", "Yes."], [[0, 1], [2, 3]]),
    ("Is 4 an odd number?", ["4 is divisible by 2, which is an even number.", "No", "4 is odd."], [[0, 1], [2]]),
    ("Is the sun hot?", ["The sun is hot, not cold.", "Yes."], [[0, 1]]),  # a negated antonym says no no
    ("Is a bat a bird?", ["A bat is a mammal.", "Bats, a mammal.", "No.", "A bat is a bird.", "Yes"],
     [[0, 1, 2], [3, 4]]),
    ("Is a dolphin a mammal?", ["A dolphin is a marine animal that breathes air.", "Yes."], [[0, 1]]),  # wider
    ("Is 3 a prime number?", ["3 is a prime.", "Yes."], [[0, 1]]),  # a word of the kind asked is that kind
    ("Is a whale a fish?", ["A mammal.", "No.", "Yes."], [[0, 1], [2]]),
    ("Is the moon a star?", ["The moon is a celestial body, but it's actually a planet.", "No.", "Yes."],
     [[0, 1], [2]]),
    # a negation of something else than what was asked says no no; a people is its country
    ("Is Jupiter a planet?", ["The planet is not a star.", "Yes.", "It is not.", "No."], [[0, 1], [2, 3]]),
    ("Is Everest the tallest mountain?", ["Everest is not as tall as its reputation.", "No.", "Yes."],
     [[0, 1], [2]]),
    ("Is Dublin in Ireland?", ["Dublin is a vibrant Irish city.", "Yes.", "Dublin is in England.", "No."],
     [[0, 1], [2, 3]]),
    # a subject said to be the kind of thing asked; a form of the question's name is spoken of; dotted initials
    ("What language is spoken in Italy?", ["The Italian language is predominantly spoken in Italy and a few other "
                                          "European countries.", "Italian, which is a Romance language spoken by "
                                          "immigrants from Italy and other parts of Europe.", "Italian is a Romance "
                                          "language spoken primarily in Italy.", "French is the main language spoken "
                                          "in Italy."], [[0, 1, 2], [3]]),
    ("What is the currency of the United States?", [
        "The U.S. dollar is the most widely accepted currency in the world and has been officially adopted by 20 "
        "countries.", "The currency of the United States is the US Dollar.", "The United States dollar is the "
        "official currency of the country.", "The euro is the currency of the United States."], [[0, 1, 2], [3]]),
    ("What is the main language of Spain?", ["Spain's predominant language is Spanish.", "Spain's main language is "
                                             "Spanish.", "Spain's main language is Catalan."], [[0, 1], [2]]),
    # a people's adjective before a noun says what kind, not who ("a Dutch painter"), but "the Italian language"
    ("Who painted The Starry Night?", ["Rigoriosus, a Dutch painter known for his work on the Starry Night.",
                                       "The Starry Night is painted by a Dutch artist named Rembrandt.", "Rembrandt"],
     [[0], [1, 2]]),
    ("What language is spoken in Germany?", ["Lernenzung in Deutsch, German language.", "German.",
                                             "French is spoken in Germany."], [[0, 1], [2]]),
    # an option after a correction; "one of" is no number
    ("Which metal is liquid at room temperature? A) Iron B) Mercury C) Copper", [
        "Iron is the most commonly used metal in the world, but it's actually Mercury.", "B", "Iron.", "A"],
     [[0, 1], [2, 3]]),
    ("Which is the smallest prime number? A) 1 B) 2 C) 3", ["One of the smallest prime numbers is 2.", "B",
                                                           "A) 1 is the smallest prime.", "A"], [[0, 1], [2, 3]]),
    ("What is 7 times 8?", ["One of the answers is 56.", "56", "1"], [[0, 1], [2]]),
    # a result the question said; a long answer's first sentence; a number after a leading circumstance
    ("What is 81 divided by 9?", ["81 divided by 9 equals 9.", "9", "81 divided by 9 equals 9 with a remainder of 2",
                                  "2", "81 / 9 = 81 / 9. The answer is 2."], [[0, 1, 2], [3, 4]]),
    # a leading circumstance passed over; a sentence that restates the question, however long; a heading that
    # ends on what was asked; a year is no answer to "Who ...?"
    ("What language is spoken in Japan?", ['In Japanese, the language is called "Nepa".', "In Japan, the official "
                                           "language is Japanese.", "Japanese"], [[0], [1, 2]]),
    ("What is the coldest continent?", [
        "The coldest continent is Antarctica, but it's worth mentioning that the Antarctic ice sheet itself can reach "
        "temperatures of -28°C (-4°F), making it one of the most inhospitable environments on Earth.", "Antarctica",
        "The coldest continent is Australia, but it's worth mentioning that its deserts can reach temperatures of "
        "-28°C (-4°F), making it one of the most inhospitable environments on Earth."], [[0, 1], [2]]),
    ("Which planet is known for its rings?", ["The Red Planet: Europa", "The planet known for its rings is Europa.",
                                              "Saturn"], [[0, 1], [2]]),
    # a form of the question's name before the kind asked says the question again, but names a language
    ("What is the capital of Hungary?", ["Hungarian capital, Budapest.", "The capital of Hungary is Budapest.",
                                         "The Hungarian capital is Debrecen."], [[0, 1], [2]]),
    ("What language is spoken in Japan?", ["The Japanese language.", "Japanese", "The Korean language."],
     [[0, 1], [2]]),
    # ...but a circumstance that is all the answer says is its claim, and a negation after one is still a negation
    ("Where is the Eiffel Tower?", ["In Paris, of course.", "Paris", "In London, of course."], [[0, 1], [2]]),
    ("What is the capital of France?", ["Capital: Paris", "Paris", "In fact, it is not Paris.", "In short, Lyon."],
     [[0, 1], [2], [3]]),
    ("Who wrote Don Quixote?", ["Don Quixote is a classic novel by the 19th-century Spanish author Don Quixote de la "
                                "Vergara.", "The story of the 19th-century French author, Javier de la Torre.",
                                "Miguel de Cervantes wrote it in 1605.", "Cervantes"], [[0], [1], [2, 3]]),
    ("How many hours are in a day?", [
        "It's easy to get lost in the numbers, but it's actually just 24. So, a day is approximately 8640 hours and "
        "315 minutes, which is a lot of time to spend thinking about clocks, calendars and the turning of the earth.",
        "24 hours.", "A day has 12 hours."], [[0, 1], [2]]),
    ("How many planets are in the solar system?", ["In 12 months, the Solar System is home to approximately 850 "
                                                   "planets.", "850", "12"], [[0, 1], [2]]),
])
def test_one_claim_in_other_words_is_one_cluster_and_its_negation_or_another_option_is_not(
        question: str, texts: list[str], want: list[list[int]]) -> None:
    assert groups(question, texts) == want


def rates(kind: str) -> tuple[float, float]:
    """Of the labelled pairs of a committed set: the share with one label put together, and the share with
    different labels kept apart."""
    together = together_ok = apart = apart_ok = 0
    for row in json.loads((DATA / f"smol_{kind}.json").read_text()):
        texts = row["samples"] + [row["greedy"]]
        where = {m: k for k, g in enumerate(groups(row["question"], texts)) for m in g}
        for a, b in itertools.combinations(range(len(texts)), 2):
            la, lb = row["labels"][a], row["labels"][b]
            if "?" in (la, lb):
                continue
            same = where[a] == where[b]
            if la == lb:
                together, together_ok = together + 1, together_ok + same
            else:
                apart, apart_ok = apart + 1, apart_ok + (not same)
    return together_ok / together, apart_ok / apart


@pytest.mark.parametrize("kind, together, apart", [
    # measured (BENCHMARKS.md, "The vote, second pass"), pairs put together and pairs kept apart:
    ("yesno-tuned", 0.9, 0.9),  # 29/29, 14/14
    ("yesno-tuned2", 0.85, 0.9),  # 30/33, 25/26 (held out at first: 20/33, 19/26 before the rules were revised)
    ("yesno-tuned3", 0.85, 0.85),  # 25/28, 23/25 (held out at first: 23/28, 20/25 before the names rule)
    ("yesno-tuned4", 0.9, 0.8),  # 49/50, 33/39 (held out at first: 38/50, 30/39; 43/50, 31/39 before the fifth)
    ("yesno-tuned5", 0.85, 0.9),  # 39/42, 21/21 (held out at first: 34/42, 16/21; 35/42, 18/21 before the fifth)
    ("yesno-tuned6", 0.8, 0.75),  # 50/58, 12/14 (held out for the fifth revision, unmoved by it: 42/58, 12/14)
    ("yesno-heldout", 0.85, 0.9),  # 37/38, 27/27 (labelled before the sixth revision, unmoved by it)
    ("choice-tuned", 0.9, 0.9),  # 23/23, 5/5
    ("choice-tuned2", 0.9, 0.9),  # 16/16, 13/13 (10/13 before the correction and "one of" were read)
    ("choice-heldout", 0.9, 0.9),  # 16/16, 20/20
    ("choice-heldout2", 0.9, 0.9),  # 11/11, 18/18 (labelled after the correction rule; the same without it)
    ("factual-tuned2", 0.8, 0.95),  # 40/47, 41/41 (32/47 before the names rule, 39/47 before the answering clause)
    ("factual-tuned3", 0.85, 0.95),  # 44/46, 34/34 (held out at first: 30/46; 38/46 before the answering clause)
    ("factual-tuned4", 0.9, 0.95),  # 61/61, 44/44 (held out at first: 31/61 before the names rule, 42/61 before
    # the answering clause, 45/61 before the subject rule)
    ("factual-tuned5", 0.85, 0.9),  # 58/62, 38/39 (held out at first: 47/62, 37/39 before the subject rule; 54/62,
    # 37/39 before the people's adjective; 54/62 before the restating form)
    ("factual-tuned6", 0.85, 0.9),  # 50/52, 56/56 (held out for the people's adjective, unmoved by it: 45/52, 53/56)
    ("factual-tuned7", 0.7, 0.9),  # 40/51, 63/63 (answered and labelled as a held-out set, then read: 34/51, 61/63)
    ("factual-heldout", 0.8, 0.9),  # 29/33, 53/54 (labelled before the revision read on `factual-tuned6` and 7)
    ("numeric-tuned", 0.9, 0.9),  # 22/22, 41/43 (held out for every rule before it: 20/22, 38/43 then)
    ("numeric-heldout", 0.9, 0.9),  # 11/11, 59/59 (labelled before the revision read on `numeric-tuned`; the same)
])
def test_real_answers_of_every_kind_cluster_as_their_labels_say(kind: str, together: float, apart: float) -> None:
    got_together, got_apart = rates(kind)
    assert got_together >= together and got_apart >= apart, (got_together, got_apart)
