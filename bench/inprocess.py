#!/usr/bin/env python3
"""Shenron's own CPU per request, without a server or a client around it: for profiling, not for tables.

    .venv/bin/python bench/inprocess.py --mode council [-n 2000] [--calls] [--profile FILE] [--no-early]

The app `shenron serve` runs (the fast route in front of Litestar, the access-log middleware, the ledger,
metrics) is called as an ASGI app in this process, request after request, against
`../shared/bench/stub_backend.py` (started here unless `--upstream` names one). No uvicorn, no client:
what it measures is Shenron's own Python and its upstream calls, which is what a profile should see.

Modes: `pass` (a pass-through model), `vm` (`ultra-instinct`, a `single` virtual model), `stream` (a
32-event pass-through stream), `council` (a six-member `full-council` over the one stub, or `--members K`:
two counts give the cost of one member), and `exchange`: `--members K` exchanges at once on Shenron's own
transport, each a task, and nothing else (the floor under a member call). `--no-early` turns the council's
early decision off, so every member answers and the work done does not depend on timing; `--no-ledger`
leaves the ledger's rows unwritten, whose batches depend on timing too; `--no-probes` probes the backends'
health once an hour, not every two seconds: a probe round's cost is per second, not per request, and under
callgrind, fifty times slower, it lands in the difference between two runs.

`--body FILE` sends a chat request of your own instead of two short messages (its `model` and `stream` set
by the mode): a coding agent's long turn, whose messages and tools are most of what the edge reads.

It prints the CPU (process time, all threads) per request. `--calls` counts the Python calls per request
(cProfile; the same for the same code whatever the machine is doing, but for a council with early
decision, whose votes depend on how its answers land). `--profile FILE` saves cProfile's stats. Under
`valgrind --tool=callgrind --separate-threads=yes`, two runs with different `-n` give instructions per
request: (Ir(n2) - Ir(n1)) / (n2 - n1) of the main thread, which a busy machine does not move (with
`--no-ledger`, `--no-early` and `--no-probes`, to within a few percent). A benchmark, not a test: it prints
what it measured and judges nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT.parent / "shared" / "bench" / "stub_backend.py"
sys.path.insert(0, str(ROOT))

from tests.procs import free_port, wait_http  # noqa: E402

MEMBERS = ["goku", "vegeta", "piccolo", "gohan", "krillin", "frieza"]
MODELS = {"pass": "bench", "stream": "bench", "vm": "ultra-instinct", "council": "full-council"}


def config(upstream: str, access_log: str, early: bool, probes: bool = True, members: list[str] = MEMBERS) -> str:
    text = f'[server]\naccess-log = "{access_log}"\n' + ("" if probes else "health-interval-s = 3600\n")
    text += f'[backends.bench]\nurl = "{upstream}"\nmodel = "mock"\n'
    text += '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["bench"]\n'
    for n in members:
        text += f'[backends.{n}]\nurl = "{upstream}"\nmodel = "mock"\n'
    text += f'[models.full-council]\nstrategy = "council"\nmembers = {json.dumps(members)}\n'
    return text + ("" if early else "early-decision = false\n")


async def exchanges(a: argparse.Namespace, upstream: str) -> None:
    """`--mode exchange`: the floor under a member call, K (`--members`) of Shenron's own transport's
    exchanges at once, each its own task, with nothing of Shenron around them."""
    import httpx

    from routing.upstream.transport import Transport, origin_of

    transport = Transport(httpx.Limits(max_connections=100, max_keepalive_connections=100))
    url = httpx.URL(upstream.rstrip("/") + "/chat/completions")
    body = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "ping"}]}).encode()
    head = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (
        url.raw_path, url.netloc, len(body))
    origin = origin_of(url)

    async def group() -> None:
        for task in [asyncio.create_task(transport.whole(origin, head, body, {})) for _ in range(a.members)]:
            await task

    for _ in range(a.warmup):
        await group()
    t0 = time.process_time()
    for _ in range(a.n):
        await group()
    print(f"exchange: {(time.process_time() - t0) / a.n * 1000:.3f} ms CPU per {a.members} exchanges at once, "
          f"over {a.n}")
    await transport.aclose()


async def run(a: argparse.Namespace, upstream: str) -> None:
    if a.mode == "exchange":
        return await exchanges(a, upstream)
    from proxy import accesslog, fastpath
    from proxy.app import create_app
    from routing.config import parse

    cfg = parse(config(upstream, a.access_log, a.early, a.probes, MEMBERS[:a.members]))
    accesslog.setup(cfg.server.access_log, debug=False)
    inner = create_app(cfg)
    if not a.ledger:
        from proxy.store.sqlite import SQLiteStore

        async def nothing(self: SQLiteStore, row: object) -> None:
            return None

        SQLiteStore.record = nothing  # type: ignore[method-assign,assignment]
    app = accesslog.middleware(fastpath.wrap(inner, 1 << 20, True))
    life: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(m: dict[str, Any]) -> None:
        if m["type"] == "lifespan.startup.complete":
            started.set()
        elif m["type"].endswith("failed"):
            raise SystemExit(f"start-up failed: {m}")

    await life.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(inner({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},  # type: ignore[arg-type]
                                         life.get, lifespan_send))
    await started.wait()
    asked: dict[str, Any] = json.loads(Path(a.body).read_text()) if a.body else {"messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "ping"}]}
    body = json.dumps({**asked, "model": MODELS[a.mode], "stream": a.mode == "stream"}).encode()
    scope = {"type": "http", "method": "POST", "path": a.path, "raw_path": a.path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "asgi": {"version": "3.0", "spec_version": "2.3"}, "client": ("127.0.0.1", 5555),
             "server": ("127.0.0.1", 8000), "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                                                         (b"content-length", str(len(body)).encode())]}
    never = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def one() -> None:
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()  # the client stays
            return {"type": "http.disconnect"}

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        sent.clear()
        await app(dict(scope), receive, send)

    for _ in range(a.warmup):
        await one()
    if sent[0].get("status") != 200:
        raise SystemExit(f"the request failed: {sent}")
    profile = cProfile.Profile() if a.calls or a.profile else None
    t0 = time.process_time()
    if profile is not None:
        profile.enable()
    for _ in range(a.n):
        await one()
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - t0
    print(f"{a.mode}: {cpu / a.n * 1000:.3f} ms CPU per request over {a.n}"
          + (" (profiled: slower)" if profile is not None else ""))
    if profile is not None:
        if a.profile:
            profile.dump_stats(a.profile)
        if a.calls:
            stats = pstats.Stats(profile)
            print(f"{a.mode}: {sum(v[1] for v in stats.stats.values()) / a.n:.1f} Python calls per request")  # type: ignore[attr-defined]
    await life.put({"type": "lifespan.shutdown"})
    await lifespan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--mode", choices=[*MODELS, "exchange"], default="pass")
    ap.add_argument("-n", type=int, default=2000, help="measured requests")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--upstream", help="a running stub's /v1 URL (default: start ../shared/bench/stub_backend.py)")
    ap.add_argument("--access-log", default="off", help='"off", "stderr" or a file, as [server] access-log')
    ap.add_argument("--no-early", dest="early", action="store_false", help="the council without early decision")
    ap.add_argument("--members", type=int, default=6, choices=range(1, 7),
                    help="the council's members, at least two (two runs with different counts give the cost of one "
                         "member); with --mode exchange, the exchanges at once")
    ap.add_argument("--no-probes", dest="probes", action="store_false",
                    help="health probes once an hour (their cost is per second: under callgrind it lands in the "
                         "per-request difference)")
    ap.add_argument("--no-ledger", dest="ledger", action="store_false",
                    help="rows are not written (to compare code paths: how many rows one SQLite batch takes "
                         "depends on timing, and under callgrind each row is a batch of its own)")
    ap.add_argument("--body", help="a chat request's JSON to send instead of two short messages (its model and "
                    "stream are set by --mode): a coding agent's long turn, say")
    ap.add_argument("--path", default="/v1/chat/completions",
                    help="where to send it: /v1/messages or /v1/responses take a --body in their own dialect")
    ap.add_argument("--calls", action="store_true", help="count Python calls per request (cProfile)")
    ap.add_argument("--profile", help="save cProfile's stats here")
    a = ap.parse_args()
    if a.mode != "exchange" and a.members < 2:
        ap.error("--members: a council needs two at least (min-answers); one exchange alone is --mode exchange")
    data = tempfile.mkdtemp(prefix="shenron-inprocess-")
    os.environ["XDG_DATA_HOME"] = data  # its own ledger
    stub = None
    upstream = a.upstream
    if upstream is None:
        port = free_port()
        stub = subprocess.Popen([sys.executable, str(STUB), "--port", str(port), "--tokens", "32"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        upstream = f"http://127.0.0.1:{port}/v1"
        wait_http(f"http://127.0.0.1:{port}/health")
    try:
        try:
            import uvloop  # as uvicorn runs Shenron
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run(a, upstream))
    finally:
        if stub is not None:
            stub.terminate()
            stub.wait()


if __name__ == "__main__":
    main()
