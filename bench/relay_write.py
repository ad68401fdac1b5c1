#!/usr/bin/env python3
"""Instructions to write one relayed chat read, as the servers spell their chunks: callgrind, repeatable.

    .venv/bin/python bench/relay_write.py [--pythonpath OTHER_CHECKOUT]

A relayed read (`RawChunk`) is written by `ChatWriter` with our id, created and model in place of the
upstream's. How much that costs depends on how the server spells a chunk: vLLM, OpenAI and Ollama put the
identity first, llama.cpp after the choices, and a model named as vLLM names it
(`meta-llama/Llama-3.1-8B-Instruct`) or a GGUF path makes the identity's bytes longer. For each spelling, a
read of one token (a paced GPU server's) and of 32 (a quick server's) is read by the `Reader` once and
written N times under `valgrind --tool=callgrind`, at two N; the difference over the writes between them is
what one write costs. `PYTHONHASHSEED=0` keeps set and dict layouts the same between runs. `--pythonpath`
counts another checkout with this venv. A benchmark, not a test: it prints what it counted.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

SPELLINGS = {
    "vLLM, short model": ("bench-model", False),
    "vLLM, HF model": ("meta-llama/Llama-3.1-8B-Instruct", False),
    "llama.cpp, alias": ("gpt-3.5-turbo", True),
    "llama.cpp, GGUF path": ("/models/Llama-3.1-8B-Instruct-Q4_K_M.gguf", True),
}


def frame(i: int, model: str, choices_first: bool) -> bytes:
    delta = {"role": "assistant", "content": "tok "} if i == 0 else {"content": "tok "}
    ident = {"id": "chatcmpl-" + "0123456789abcdef" * 2, "object": "chat.completion.chunk", "created": 1733000000,
             "model": model}
    choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]
    if choices_first:
        chunk = {"choices": choices, **ident, "system_fingerprint": "b5000"}
    else:
        chunk = {**ident, "choices": choices}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def write(spelling: str, tokens: int, n: int) -> None:
    """Read one read of `tokens` chunks and write it `n` times (the measured loop, under callgrind)."""
    from proxy.dialects.chat import ChatWriter
    from routing.upstream.backends import OpenAIBackend
    from routing.upstream.reader import Reader

    model, choices_first = SPELLINGS[spelling]
    read = Reader("bench", OpenAIBackend._events(None), True)  # type: ignore[arg-type]
    events: list[object] = []
    read(frame(0, model, choices_first), events)  # type: ignore[arg-type]
    read(b"".join(frame(i, model, choices_first) for i in range(1, tokens + 1)), events)  # type: ignore[arg-type]
    writer = ChatWriter(id="chatcmpl-ours", created=1796000000, model="ultra-instinct", include_usage=False)
    first, relayed = events
    writer.event(first)  # type: ignore[arg-type]
    for _ in range(n):
        writer.event(relayed)  # type: ignore[arg-type]


def count(spelling: str, tokens: int, n: int, pythonpath: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": pythonpath}
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                        "--run", spelling, str(tokens), str(n)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = open(glob.glob(out + "*")[0]).read()
        return next(int(line.split()[1]) for line in text.splitlines() if line.startswith(("summary:", "totals:")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pythonpath", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run:
        write(a.run[0], int(a.run[1]), int(a.run[2]))
        return
    for spelling in SPELLINGS:
        for tokens, (lo, hi) in ((1, (1000, 5000)), (32, (200, 1200))):
            each = (count(spelling, tokens, hi, a.pythonpath) - count(spelling, tokens, lo, a.pythonpath)) / (hi - lo)
            print(f"{spelling}, a read of {tokens}: {each:,.0f} instructions a write ({a.pythonpath})", flush=True)


if __name__ == "__main__":
    main()
