"""The vote reads claims, not phrasing: hand-made cases from the issue, then a corpus of real SmolLM2 answers.

tests/data/smol_answers.json was written by bench/smol_corpus.py (SmolLM2-135M-Instruct under
llama.cpp's server: one answer at temperature 0, four at 0.8); its `expected` clusters and its
`right` answers were written by hand after reading them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from routing.vote.vote import Ballot, agreement, cluster, has_majority, ranked, tied

CORPUS = json.loads((Path(__file__).parent / "data" / "smol_answers.json").read_text())


def groups(texts: list[str], question: str, threshold: float = 0.8) -> list[list[int]]:
    ballots = [Ballot(str(i), 1.0, i, t) for i, t in enumerate(texts)]
    return [[int(b.member) for b in c.ballots] for c in cluster(ballots, threshold, question)]


@pytest.mark.parametrize("question, texts, want", [
    ("What is the capital of France? Answer in a few words.",
     ["The capital of France is Paris.", "Paris", "Paris, the City of Light is home to one of Europe's most iconic "
      "landmarks.", "It's Paris!", "**Paris**", "Lyon"], [[0, 1, 2, 3, 4], [5]]),
    ("What is 7 times 8?", ["7 times 8 is 56", "56", "The answer is 56.", "7 x 8 = 54", "\\boxed{56}"],
     [[0, 1, 2, 4], [3]]),
    ("How many days are in a week?", ["In a week, it's 7 days.", "720 days", "80 days", "A week has seven days.",
                                      "A day is 24 hours, and a week has 7 days."], [[0, 3, 4], [1], [2]]),
    ("What is 9 minus 3?", ["9 + (-3) = 6", "The answer is 6.", "It is 12."], [[0, 1], [2]]),
    ("What is 7 minus 4?", ["7 + 3 = 10", "10", "3", "7 - 4 equals 3."], [[0, 1], [2, 3]]),  # what follows "="
    ("What is the chemical symbol for gold?", ["Gold is represented by the symbol Au.",
                                               "The chemical symbol for gold is Au.", "Ag"], [[0, 1], [2]]),
])
def test_one_claim_in_many_phrasings_is_one_cluster_and_rival_claims_stay_apart(question: str, texts: list[str],
                                                                               want: list[list[int]]) -> None:
    assert groups(texts, question) == want


def test_the_issues_council_now_finds_paris() -> None:
    """Three answers, two of them Paris in different words: the nonsense won a three-way tie before."""
    q = "What is the capital of France? Answer in a few words."
    texts = ["La femme au poubelle (The beautiful woman in the pants)", "The capital of France is Paris.",
             "Paris, the City of Light is home to one of Europe's most iconic landmarks."]
    clusters = cluster([Ballot(str(i), 1.0, i, t) for i, t in enumerate(texts)], 0.8, q)
    assert ranked(clusters)[0].representative.text == texts[1]
    assert agreement(clusters) == pytest.approx(2 / 3, abs=1e-3) and has_majority(clusters) and tied(clusters) is None


def test_a_tie_between_rival_claims_is_said_and_broken_by_the_rule_not_silently() -> None:
    q = "How many days are in a week?"
    texts = ["In a week, it's 7 days.", "720 days", "80 days"]
    even = cluster([Ballot(str(i), 1.0, i, t) for i, t in enumerate(texts)], 0.8, q)
    assert not has_majority(even) and tied(even) == "order"  # nothing told them apart but the configured order
    weighted = cluster([Ballot("a", 1.0, 0, texts[0]), Ballot("b", 1.5, 1, texts[1]),
                        Ballot("c", 1.5, 2, texts[2]), Ballot("d", 1.0, 3, "7 days")], 0.8, q)
    assert tied(weighted) is None  # 7 days has 2.0 of 5.0: it leads, without a majority
    assert ranked(weighted)[0].key == "claim:7"
    assert not has_majority(weighted)
    by_weight = cluster([Ballot("b", 1.0, 0, "80 days"), Ballot("c", 1.0, 1, "80 days"),
                         Ballot("d", 1.5, 2, "7 days"), Ballot("e", 0.5, 3, "It has 7 days.")], 0.8, q)
    assert tied(by_weight) == "weight" and ranked(by_weight)[0].representative.member == "d"
    by_logprob = cluster([Ballot("a", 1.0, 0, "720 days", logprob=0.2), Ballot("b", 1.0, 1, "7 days", logprob=0.9)],
                         0.8, q)
    assert tied(by_logprob, "logprob") == "logprob"
    assert ranked(by_logprob, "logprob")[0].representative.member == "b"


def test_a_tie_goes_to_the_configured_order_or_the_logprobs_never_to_arrival() -> None:
    """Equal weights, rival claims: the member listed first wins however late it answered; where members
    gave logprobs, the more confident answer wins before that."""
    q = "What is the capital of France?"
    late_first = [Ballot("second-listed", 1.0, 0, "Lyon", position=1), Ballot("first-listed", 1.0, 1, "Paris",
                                                                              position=0)]
    found = cluster(late_first, 0.8, q)
    assert tied(found) == "order" and ranked(found)[0].representative.member == "first-listed"
    sure = [Ballot("a", 1.0, 0, "Lyon", logprob=-2.0, position=0), Ballot("b", 1.0, 1, "Paris", logprob=-0.1,
                                                                          position=1)]
    found = cluster(sure, 0.8, q)
    assert tied(found) == "logprob" and ranked(found)[0].representative.member == "b"


def _clusters_of(row: dict[str, Any]) -> dict[int, int]:
    texts = row["samples"] + [row["greedy"]]
    return {m: k for k, g in enumerate(groups(texts, row["question"])) for m in g}


@pytest.mark.parametrize("row", CORPUS, ids=lambda r: r["question"][:40])
def test_real_answers_that_say_the_right_claim_in_short_are_never_split_by_phrasing(row: dict[str, Any]) -> None:
    """Every short answer (30 words or fewer) that gives the right answer lands in one cluster."""
    texts = row["samples"] + [row["greedy"]]
    short_right = [i for i in row["right"] if len(texts[i].split()) <= 30]
    where = _clusters_of(row)
    assert len({where[i] for i in short_right}) <= 1, [texts[i] for i in short_right]


def test_real_answers_cluster_as_a_person_would() -> None:
    """Pairs of answers put together (or apart) as the hand-written clusters say: 255 of 260 when measured;
    the misses are long answers, compared as whole texts."""
    right = total = 0
    for row in CORPUS:
        where = _clusters_of(row)
        want = {m: k for k, g in enumerate(row["expected"]) for m in g}
        for a, b in itertools.combinations(sorted(want), 2):
            total += 1
            right += (where[a] == where[b]) == (want[a] == want[b])
    assert right / total >= 0.95, f"{right}/{total}"
