#!/usr/bin/env python3
"""Soak: thousands of client disconnects, then a long mixed load; what is left behind, and RSS.

    .venv/bin/python bench/soak.py [--disconnects 2000] [--mixed 100000] [--conc 16]

Starts two `stub_backend.py` upstreams from ../shared/bench (one answers at once, one after 2 s)
and `shenron serve` (the venv's, one worker, ledger on), then:

1. for each way a client can leave (council streamed mid-deliberation, council non-streamed,
   single streamed before its first byte, single non-streamed) sends N requests that the client
   abandons while the members work, and reports the proxy's open files, its open connections to
   the slow upstream, and how long the next request takes;
2. sends a mixed load (streamed and not, pass-through, ultra-instinct, full-council, a disconnect
   in every 20) and samples the proxy's RSS every tenth of the way.

A benchmark, not a test: it prints what it measured and judges nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT.parent / "shared" / "bench" / "stub_backend.py"
SLOW = ["s1", "s2", "s3"]
FAST = ["f1", "f2", "f3", "f4", "f5", "f6"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def config(fast: int, slow: int) -> str:
    text = '[server]\naccess-log = "off"\n'
    for n in FAST:
        text += f'[backends.{n}]\nurl = "http://127.0.0.1:{fast}/v1"\nmodel = "m"\n'
    for n in SLOW:
        text += f'[backends.{n}]\nurl = "http://127.0.0.1:{slow}/v1"\nmodel = "m"\ntimeout-s = 60\n'
    return text + f"""
[models.ultra-instinct]
strategy = "single"
members = ["f1"]
[models.full-council]
strategy = "council"
members = {json.dumps(FAST)}
[models.slow-single]
strategy = "single"
members = ["s1"]
[models.slow-council]
strategy = "council"
members = {json.dumps(SLOW)}
heartbeat-s = 0.2
timeout-s = 60
"""


def request(model: str, stream: bool) -> bytes:
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body) + body)


async def full(port: int, model: str, stream: bool) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(request(model, stream))
    head = await r.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    if stream:
        while b"[DONE]" not in await r.readuntil(b"\n\n"):
            pass
    else:
        lines = head.split(b"\r\n")
        length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
        await r.readexactly(length)
    w.close()


async def leave(port: int, model: str, stream: bool, first_event: bool) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(request(model, stream))
    if first_event:
        await r.readuntil(b"data:")
    await asyncio.sleep(0.05)  # long enough for every member to be asked
    w.transport.abort()


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def connections_to(pid: int, port: int) -> int:
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            c = line.split()
            if int(c[2].rsplit(":", 1)[1], 16) == port and c[9] in inodes:
                n += 1
    return n


Job = Callable[[], Coroutine[Any, Any, None]]


async def run_all(jobs: list[Job], conc: int) -> None:
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            try:
                await job()
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
                print(f"  request failed: {e}", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(conc)))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--disconnects", type=int, default=2000)
    ap.add_argument("--mixed", type=int, default=100_000)
    ap.add_argument("--conc", type=int, default=16)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shenron-soak-"))
    fast, slow, port = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, str(STUB), "--port", str(fast), "--tokens", "16"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, str(STUB), "--port", str(slow), "--latency-ms", "2000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    (tmp / "shenron.toml").write_text(config(fast, slow))
    shenron = Path(sys.executable).with_name("shenron")
    proxy = subprocess.Popen([str(shenron), "serve", "--config", str(tmp / "shenron.toml"), "--port", str(port)],
                             env={**os.environ, "XDG_DATA_HOME": str(tmp / "data")}, stdout=subprocess.DEVNULL,
                             stderr=open(tmp / "serve.log", "wb"))
    procs.append(proxy)
    try:
        for p in (fast, slow, port):
            wait_port(p)
        await full(port, "ultra-instinct", False)
        pid = proxy.pid
        base_fds = fds(pid)
        print(f"baseline: {base_fds} open files, RSS {rss_mb(pid):.0f} MB")
        print("| how the client left | n | s | open files after | conns to slow upstream (health probes hold "
              "one per backend) | next request ms |")
        print("|---|---|---|---|---|---|")
        for label, model, stream, first in (("council, streamed, mid-deliberation", "slow-council", True, True),
                                            ("council, non-streamed", "slow-council", False, False),
                                            ("single, streamed, before first byte", "slow-single", True, False),
                                            ("single, non-streamed", "slow-single", False, False)):
            t0 = time.monotonic()
            await run_all([functools.partial(leave, port, model, stream, first)] * a.disconnects, a.conc)
            took = time.monotonic() - t0
            await asyncio.sleep(1.0)  # cancellation is delivered within a second
            t1 = time.perf_counter()
            await full(port, "ultra-instinct", False)
            nxt = (time.perf_counter() - t1) * 1000
            print(f"| {label} | {a.disconnects} | {took:.0f} | {fds(pid)} (baseline {base_fds}) | "
                  f"{connections_to(pid, slow)} | {nxt:.1f} |", flush=True)
        kinds = [("bench", False), ("f1", True), ("ultra-instinct", False), ("ultra-instinct", True),
                 ("full-council", False), ("full-council", True)]
        rng = random.Random(1)
        jobs: list[Job] = []
        for i in range(a.mixed):
            if i % 20 == 19:
                jobs.append(functools.partial(leave, port, "slow-council", True, True))
            else:
                m, s = rng.choice(kinds)
                jobs.append(functools.partial(full, port, "f1" if m == "bench" else m, s))
        print(f"\nmixed load: {a.mixed} requests at {a.conc} connections (one in 20 abandoned mid-council)")
        print("| requests done | RSS MB | open files | s |")
        print("|---|---|---|---|")
        step = max(1, a.mixed // 10)
        t0 = time.monotonic()
        print(f"| 0 | {rss_mb(pid):.0f} | {fds(pid)} | 0 |", flush=True)
        for start in range(0, a.mixed, step):
            await run_all(jobs[start:start + step], a.conc)
            print(f"| {start + step} | {rss_mb(pid):.0f} | {fds(pid)} | {time.monotonic() - t0:.0f} |", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
