#!/usr/bin/env python3
"""CPU per streamed answer when the upstream paces its tokens, as a GPU server does: Shenron beside nginx.

    .venv/bin/python bench/paced_stream.py [--token-ms 1] [--tokens 32] [-n 300] [--rounds 3]
                                           [--old PATH_OF_ANOTHER_CHECKOUT] [--dialect chat|messages|responses]

`../shared/bench/overhead.py` streams with no pause between events, so they reach a proxy in one or two
reads; a real server sends a token a read. This starts `../shared/bench/stub_backend.py --token-ms`, nginx
in front of it (`nginx-passthrough.conf`, the near-physical floor) and `shenron serve` (this checkout's,
and with `--old` another checkout's through PYTHONPATH, the two alternating), and for each asks for `-n`
streams one at a time over one kept-alive connection with a raw-socket client. It prints the CPU
(user + system, from /proc/PID/stat) each target spent per stream, and the first body byte's median
latency. Pinned as overhead.py pins: the client and the stub on CPU 0, the targets on CPU 1.

A benchmark, not a test: it prints what it measured and judges nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(ROOT))

from bench.soak import wait_port  # noqa: E402
from tests.procs import cpu_seconds, free_port  # noqa: E402

DIALECTS = {  # the path, a body as the dialect's clients send it, and what its stream's last event says
    "chat": (b"/v1/chat/completions", b'{"model":"bench-model","stream":true,"max_tokens":4096,'
             b'"messages":[{"role":"user","content":"Say hello."}]}', b"[DONE]"),
    "messages": (b"/v1/messages", b'{"model":"bench-model","stream":true,"max_tokens":4096,'
                 b'"messages":[{"role":"user","content":"Say hello."}]}', b"message_stop"),
    "responses": (b"/v1/responses", b'{"model":"bench-model","stream":true,"store":false,"input":"Say hello."}',
                  b"response.completed"),
}


def streams(port: int, n: int, dialect: str = "chat") -> list[float]:
    """`n` streams in a row on one connection; each one's first body byte, in seconds."""
    path, body, last = DIALECTS[dialect]
    request = (b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n%s" % (path, len(body), body))
    firsts = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            start, seen, first = time.perf_counter(), b"", None
            s.sendall(request)
            while not (seen.endswith(b"0\r\n\r\n") and seen.find(last) >= 0):
                piece = s.recv(65536)
                if not piece:
                    raise RuntimeError("the target closed the connection mid-stream")
                seen += piece
                head = seen.find(b"\r\n\r\n")
                if first is None and 0 <= head < len(seen) - 4:
                    first = time.perf_counter() - start
            if not seen.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not a 200: {seen[:200]!r}")
            firsts.append(first or 0.0)
    return firsts


def measure(name: str, pid: int, port: int, n: int, dialect: str = "chat") -> None:
    streams(port, 20, dialect)  # warm: connections, caches, the first ledger rows
    before = cpu_seconds(pid)
    firsts = streams(port, n, dialect)
    spent = cpu_seconds(pid) - before
    print(f"{name:<22} {spent * 1000 / n:7.3f} ms CPU/stream   first body byte p50 "
          f"{statistics.median(firsts) * 1000:6.3f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--token-ms", type=float, default=1.0,
                    help="the stub's pause between events (under 1 ms, uvloop's timers round it to none)")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("-n", type=int, default=300, help="measured streams per target and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old", default="", help="another checkout, measured the same way through PYTHONPATH")
    ap.add_argument("--dialect", choices=list(DIALECTS), default="chat",
                    help="ask as the `openai` SDK (chat), Claude Code (messages) or Codex (responses) does; "
                         "nginx only relays chat, so it is measured for chat only")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="paced-"))
    children: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], cpu: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(tmp / f"{len(children)}.log", "ab")  # the child keeps it
        p = subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})})
        children.append(p)
        return p

    try:
        stub_port = free_port()
        start([sys.executable, str(SHARED / "stub_backend.py"), "--port", str(stub_port), "--models",
               "bench-model", "--tokens", str(a.tokens), "--token-ms", str(a.token_ms)], 0)
        wait_port(stub_port)
        targets: list[tuple[str, int, int]] = []
        if a.dialect == "chat":  # nginx relays a chat stream as it is; the other dialects need translating
            nginx_port = free_port()
            (tmp / "nginx").mkdir()
            conf = (SHARED / "nginx-passthrough.conf").read_text().replace("__PORT__", str(nginx_port)).replace(
                "__UPSTREAM_PORT__", str(stub_port))
            (tmp / "nginx" / "nginx.conf").write_text(conf)
            nginx = start(["nginx", "-p", f"{tmp / 'nginx'}/", "-e", f"{tmp / 'nginx'}/error.log",
                           "-c", f"{tmp / 'nginx'}/nginx.conf"], 1)
            targets.append(("nginx", nginx.pid, nginx_port))
        cfg = tmp / "shenron.toml"
        cfg.write_text(f'[server]\nlog-level = "warning"\n[backends.bench]\nurl = "http://127.0.0.1:{stub_port}/v1"\n'
                       'model = "bench-model"\n')
        shenron = str(Path(sys.executable).with_name("shenron"))
        for name, path in (("shenron", ""), ("shenron --old", a.old)):
            if name.endswith("--old") and not path:
                continue
            port = free_port()
            env = {"XDG_DATA_HOME": str(tmp / f"xdg-{port}"), **({"PYTHONPATH": path} if path else {})}
            p = start([shenron, "serve", "--config", str(cfg), "--port", str(port)], 1, env)
            targets.append((name, p.pid, port))
        for _, _, port in targets:
            wait_port(port)
        print(f"# {a.dialect}: {a.tokens} tokens {a.token_ms} ms apart; {a.n} streams per target and round, one at "
              "a time; targets on CPU 1, client and stub on CPU 0", flush=True)
        os.sched_setaffinity(0, {0})
        for r in range(a.rounds):
            print(f"## round {r + 1}", flush=True)
            for name, pid, port in targets:
                measure(name, pid, port, a.n, a.dialect)
    finally:
        for p in children:
            p.terminate()
        for p in children:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
