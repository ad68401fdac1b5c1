#!/usr/bin/env python3
"""Instructions a request of `shenron serve` itself, under callgrind: repeatable where CPU seconds are not.

    python3 bench/serve_instructions.py --kind pass|ultra|stream|council [-n 200] [--token-ms 10]
                                        [--dialect chat|messages|responses] [--upstream-model NAME]
                                        [--shenron .venv/bin/shenron] [--pythonpath OTHER_CHECKOUT]
    python3 bench/serve_instructions.py --peer tensorzero|switchyard --anchors ANCHORS [-n 200] [--strace]
    python3 bench/serve_instructions.py --kind K --opcodes [--top 40] [--save FILE | --against FILE]

`bench/inprocess.py` counts Shenron's own code without a server; this counts what a user's server runs: uvicorn,
the socket guard, the middleware and the app, for requests sent one at a time on one kept-alive connection
by a raw-socket client. It starts `../shared/bench/stub_backend.py` (on CPU 0) and `shenron serve` under
`valgrind --tool=callgrind --separate-threads=yes` (on CPU 1), with the ledger on, the access log off
(`--access-log` to change), health probes hourly; warms up, zeroes the counters (`callgrind_control -z`),
sends `-n` requests, dumps (`callgrind_control -d`) and prints the main thread's instructions divided by
`-n`. `--dialect` asks in Anthropic's Messages or the Responses API instead, as Claude Code and Codex do.
`--upstream-model` names the backends' model (the stub echoes it in every chunk; vLLM names one
`meta-llama/Llama-3.1-8B-Instruct`). `--token-ms` paces the stub's stream as a GPU server does (one read a
token; give `--warmup 10`, a paced stream takes its pauses). `--pythonpath` measures another checkout with
the same venv (its `proxy` and `routing` first on the path). `--peer` counts a peer gateway's pass-through the
same way, started as `../shared/bench/peers.py` starts it from ANCHORS' venv (`tensorzero==2026.6.0`,
`nemo-switchyard==0.3.0`): a Rust gateway works on threads of its own, so the figure to compare is the one
over all threads (Shenron's is nearly all its main thread's: only the ledger's WAL checkpoints run on
another). Instructions are not CPU time: one program's instruction is not another's nanosecond (cache
misses, branches), and kernel time is not counted (syscalls are one instruction here): `--strace` counts the
system calls of the same requests instead (`strace -c -f` attached for them, no valgrind), to read beside
the wall-clock runs. `--opcodes` counts the Python opcodes of the same requests, function by function, with
bench/opcodes.py's tracer in the server (no valgrind): what bench/opcodes.py shows of Shenron's own code, with
uvicorn's beside it. A benchmark, not a test: it prints what it counted and judges nothing.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT.parent / "shared" / "bench" / "stub_backend.py"
MEMBERS = ["goku", "vegeta", "piccolo", "gohan", "krillin", "frieza"]
MODELS = {"pass": "bench", "ultra": "ultra-instinct", "stream": "bench", "council": "full-council"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(upstream: str, access_log: str, model: str = "bench-model") -> str:
    text = (f'[server]\nlog-level = "warning"\nhealth-interval-s = 3600\naccess-log = "{access_log}"\n'
            f'[backends.bench]\nurl = "{upstream}"\nmodel = "{model}"\n'
            '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["bench"]\n')
    for m in MEMBERS:
        text += f'[backends.{m}]\nurl = "{upstream}"\nmodel = "{model}"\n'
    council = f'[models.full-council]\nstrategy = "council"\nmembers = {json.dumps(MEMBERS)}\n'
    return text + council + "early-decision = false\n"


def request(kind: str, dialect: str = "chat") -> bytes:
    """The request in a dialect, as its clients send it: chat (the `openai` SDK), `messages` (Claude Code, with
    `max_tokens`), `responses` (Codex, with `store: false`)."""
    asked: dict[str, object] = {"model": MODELS[kind], "stream": kind == "stream"}
    if dialect == "messages":
        asked |= {"max_tokens": 1024, "system": "You are terse.",
                  "messages": [{"role": "user", "content": "Say hello."}]}
    elif dialect == "responses":
        asked |= {"instructions": "You are terse.", "input": "Say hello.", "store": False}
    else:
        asked["messages"] = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]
    body = json.dumps(asked).encode()
    path = {"chat": b"/v1/chat/completions", "messages": b"/v1/messages", "responses": b"/v1/responses"}[dialect]
    return (b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (path, len(body), body))


def ask(s: socket.socket, req: bytes) -> None:
    """One request, read to the end of its answer (a content-length or the chunked body's last chunk)."""
    s.sendall(req)
    seen = b""
    while True:
        piece = s.recv(65536)
        if not piece:
            raise RuntimeError("the server closed the connection")
        seen += piece
        head_end = seen.find(b"\r\n\r\n")
        if head_end < 0:
            continue
        head = seen[:head_end].lower()
        if b"content-length:" in head:
            if len(seen) >= head_end + 4 + int(head.split(b"content-length:")[1].split(b"\r\n")[0]):
                break
        elif seen.endswith(b"0\r\n\r\n"):
            break
    if not seen.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"not a 200: {seen[:300]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=list(MODELS), default="pass")
    ap.add_argument("-n", type=int, default=200, help="measured requests")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--token-ms", type=float, default=0.0, help="the stub's pause between streamed tokens")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--dialect", choices=["chat", "messages", "responses"], default="chat",
                    help="the endpoint and body shape: chat completions, Anthropic's Messages, the Responses API")
    ap.add_argument("--upstream-model", default="bench-model",
                    help="the backends' model, which the stub echoes in every chunk (a vLLM-style name is longer)")
    ap.add_argument("--access-log", default="off", help='"off", "-" or a file, as [server] access-log')
    ap.add_argument("--shenron", default=str(ROOT / ".venv" / "bin" / "shenron"))
    ap.add_argument("--pythonpath", default="", help="another checkout to measure with the same venv")
    ap.add_argument("--peer", choices=list(PEERS), help="count a peer gateway's pass-through instead (all its threads; "
                    "needs --anchors)")
    ap.add_argument("--anchors", type=Path, help="a folder with a venv of the Rust gateways, as peers.py takes")
    ap.add_argument("--key", action="store_true", help="send every request with a key of a tier with limits "
                    "(per minute, per day, a cloud budget), made with `shenron keys create` first")
    ap.add_argument("--opcodes", action="store_true", help="count the Python opcodes a request of `shenron serve` "
                    "runs, function by function, uvicorn's included (bench/opcodes.py's tracer), instead")
    ap.add_argument("--top", type=int, default=40, help="with --opcodes: the functions to list")
    ap.add_argument("--save", help="with --opcodes: keep the counts in this file, as bench/opcodes.py --save")
    ap.add_argument("--against", help="with --opcodes: list the difference from counts saved by --save")
    ap.add_argument("--strace", action="store_true", help="count system calls a request (strace -c -f, without "
                    "valgrind) instead of instructions")
    a = ap.parse_args()
    if a.peer and (a.anchors is None or a.kind != "pass" or a.dialect != "chat"):
        ap.error("--peer counts a chat pass-through and needs --anchors")
    tmp = Path(tempfile.mkdtemp(prefix="shenron-cg-"))
    stub_port, port = free_port(), free_port()
    stub = subprocess.Popen(["taskset", "-c", "0", sys.executable, str(STUB), "--port", str(stub_port), "--tokens",
                             str(a.tokens), "--token-ms", str(a.token_ms)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    upstream = f"http://127.0.0.1:{stub_port}/v1"
    text = config(upstream, a.access_log, a.upstream_model)
    if a.key:  # the limits a paying tier has: per minute and per day, and a monthly cloud budget
        text += ('[auth]\nenabled = true\n[tiers.pro]\nmodels = ["*"]\nrequests-per-minute = 1000000\n'
                 'tokens-per-day = 1000000000\ncloud-budget-usd-per-month = 1000.0\n')
    (tmp / "shenron.toml").write_text(text)
    out = tmp / "callgrind.out"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp), **({"PYTHONPATH": a.pythonpath} if a.pythonpath else {})}
    key = b""
    if a.key:
        made = subprocess.run([a.shenron, "keys", "create", "--tier", "pro", "--name", "bench", "--config",
                               str(tmp / "shenron.toml")], env=env, capture_output=True, text=True, check=True)
        key = next(w for w in (made.stdout + made.stderr).split() if w.startswith("sk-shenron-")).encode()
    command = [a.shenron, "serve", "--config", str(tmp / "shenron.toml"), "--port", str(port)]
    path, model, headers = b"/v1/chat/completions", MODELS[a.kind], b""
    if a.peer:
        script, path, model, headers = PEERS[a.peer](tmp, upstream, port)
        command = [str(a.anchors / "venv" / "bin" / "python"), "-c", script]
        env["MOCK_KEY"] = "x"
    counter = [] if a.strace else ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                                   f"--callgrind-out-file={out}"]
    if a.opcodes:
        counter = []
        command = [str(Path(a.shenron).parent / "python"), str(ROOT / "bench" / "opcodes.py"), "--serve",
                   str(tmp / "opcodes.pkl"), "--", *command[1:]]
    server = subprocess.Popen(["taskset", "-c", "1", *counter, *command],
                              env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("w"))
    tracer = None
    try:
        deadline = time.monotonic() + 300
        while a.peer == "tensorzero" and not (tmp / "url").exists() and time.monotonic() < deadline:
            time.sleep(0.5)  # it chooses its port
        if a.peer == "tensorzero":
            port = int((tmp / "url").read_text().split("//")[1].split("/")[0].split(":")[1])
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError as e:
                if server.poll() is not None or time.monotonic() > deadline:
                    log = (tmp / "serve.log").read_text()[-2000:]
                    raise RuntimeError(f"shenron serve did not start: {log}") from e
                time.sleep(0.5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = request(a.kind, a.dialect)
        if key:
            req = req.replace(b"host: bench\r\n", b"host: bench\r\nauthorization: Bearer %s\r\n" % key)
        if a.peer:
            body = req.split(b"\r\n\r\n", 1)[1].replace(b'"model": "bench"', b'"model": "%s"' % model.encode())
            req = (b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n%s"
                   b"content-length: %d\r\n\r\n%s" % (path, headers, len(body), body))
        for _ in range(a.warmup):
            ask(s, req)
        time.sleep(0.3)
        if a.opcodes:
            server.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
        elif a.strace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(tmp / "strace.txt"), "-p", str(server.pid)],
                                      stderr=subprocess.DEVNULL)
            time.sleep(1)  # attached to every thread
        else:
            subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
        for _ in range(a.n):
            ask(s, req)
        time.sleep(0.3)
        if a.opcodes:
            server.send_signal(signal.SIGUSR2)
            time.sleep(2)
        elif tracer is not None:
            tracer.terminate()
            tracer.wait()
        else:
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
            time.sleep(2)
    finally:
        server.terminate()
        stub.terminate()
        server.wait()
        stub.wait()
    paced = f", tokens {a.token_ms:g} ms apart" if a.token_ms else ""
    shape = "" if a.dialect == "chat" else f", {a.dialect}"
    who = a.peer or a.pythonpath or "this checkout"
    if a.opcodes:
        counts = pickle.loads((tmp / "opcodes.pkl").read_bytes())
        print(f"{a.kind}{shape}{paced} ({who}): {sum(counts.values()) / a.n:,.0f} Python opcodes a request "
              f"({a.n} requests), uvicorn's included")
        sys.path.insert(0, str(ROOT / "bench"))
        from opcodes import show  # bench/opcodes.py's listing (and its --save, --against)

        show(counts, a.n, a.top, a.save, a.against)
        return
    if a.strace:
        calls = [line.split() for line in (tmp / "strace.txt").read_text().splitlines()]
        calls = [c for c in calls if len(c) >= 5 and c[3].isdigit() and c[-1] != "total"]
        print(f"{a.kind}{shape}{paced} ({who}): {sum(int(c[3]) for c in calls) / a.n:.1f} system calls a request "
              f"({a.n} requests): " + ", ".join(f"{c[-1]} {int(c[3]) / a.n:.2f}" for c in calls))
        return
    dumps = [f for f in glob.glob(f"{out}*") if re.search(r"\.1-\d+$", f)]
    if not dumps:
        raise RuntimeError(f"no dump in {tmp}")

    def counted(path: str) -> int:
        return next(int(line.split()[1]) for line in Path(path).read_text().splitlines()
                    if line.startswith(("summary:", "totals:")))

    main_thread = counted(next(f for f in dumps if f.endswith(".1-01")))
    every = sum(counted(f) for f in dumps)
    print(f"{a.kind}{shape}{paced} ({who}): {main_thread / a.n:,.0f} instructions a request (main thread, {a.n} "
          f"requests); {every / a.n:,.0f} in all {len(dumps)} threads")


def _tensorzero(tmp: Path, upstream: str, port: int) -> tuple[str, bytes, str, bytes]:
    """TensorZero's gateway as ../shared/bench/peers.py starts it (on a port of its choosing, written to a file)."""
    (tmp / "tensorzero.toml").write_text(f'[models.mock]\nrouting = ["mock"]\n[models.mock.providers.mock]\n'
                                         f'type = "openai"\nmodel_name = "mock"\napi_base = "{upstream}/"\n'
                                         f'api_key_location = "none"\n')
    script = (f"import time, tensorzero\ngw = tensorzero._start_http_gateway(config_file='{tmp}/tensorzero.toml', "
              "clickhouse_url=None, postgres_url=None, valkey_url=None, async_setup=False)\n"
              f"open('{tmp}/url', 'w').write(gw.base_url)\nwhile True: time.sleep(3600)\n")
    return script, b"/openai/v1/chat/completions", "tensorzero::model_name::mock", b""


def _switchyard(tmp: Path, upstream: str, port: int) -> tuple[str, bytes, str, bytes]:
    """NeMo Switchyard as ../shared/bench/peers.py starts it: a pass-through route to the stub."""
    (tmp / "sy.toml").write_text(f'schema_version = 1\n[llm_clients.mock]\nformat = "openai_chat"\n'
                                 f'base_url = "{upstream}"\napi_key_env = "MOCK_KEY"\n[targets.m]\nid = "mock"\n'
                                 f'llm_client = "mock"\n[routes.plain]\nid = "plain"\ntype = "passthrough"\n'
                                 f'target = "m"\n')
    script = (f"import time\nfrom switchyard_rust.server import Server\n"
              f"with Server('{tmp}/sy.toml', port={port}) as s:\n    time.sleep(10 ** 6)\n")
    return script, b"/v1/chat/completions", "plain", b"authorization: Bearer x\r\n"


PEERS = {"tensorzero": _tensorzero, "switchyard": _switchyard}


if __name__ == "__main__":
    main()
