#!/usr/bin/env python3
"""The fleet, measured: replicas of `shenron serve` over stub GPU servers that count what they hold.

    .venv/bin/python bench/fleet.py [--only slots,lease,endpoint,affinity,restart,cost]

Model servers are `tests/fake_upstream.py` (its GET /stats gives the most requests it ever held at
once); Redis and PostgreSQL are the machine's own on their standard ports; nginx is Debian's. Each part
prints what it measured:

- slots:    the most requests any server held with 1, 2 and 4 replicas, max-concurrent 2, with the
            GPU slots in Redis and (for comparison) per process as before;
- lease:    a replica killed with SIGKILL while holding both slots of a GPU: seconds until another
            replica gets one (lease-s 5);
- endpoint: a server of a pool killed under load: failed requests after that, seconds until every
            replica's /metrics shows it down;
- affinity: the share of an agent session's turns that reach one server, idle and with that server
            saturated by other traffic;
- restart:  a rolling restart of both replicas behind nginx under load (examples/fleet/fleet.py):
            failed requests and ledger rows lost;
- cost:     CPU per request of one replica, pass-through and a six-member council, with the GPU
            slots in Redis against in process, in one run.

A benchmark, not a test: it prints what it measured and judges nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_harness import (
    ASK,
    PG,
    ROOT,
    TMP,
    Procs,
    burst,
    config,
    free_port,
    ok,
    replica,
    server,
    stats,
)
from tests.procs import cpu_seconds


def part_slots() -> None:
    print("\n## slots: the most requests one server held (max-concurrent 2; 12 requests x replicas, 100 ms each)")
    print("| replicas | GPU slots in Redis | per process (before) |\n|---|---|---|")
    for n in (1, 2, 4):
        row = []
        for redis in (True, False):
            procs = Procs()
            try:
                up = server(procs, "--latency-ms", "100")
                text = config([up], redis=redis, prefix=f"bench-{secrets.token_hex(4)}:")
                bases = [replica(procs, text)[1] for _ in range(n)]
                rs = asyncio.run(burst(bases, 12 * n))
                row.append(f"{stats(up)['peak']} ({sum(map(ok, rs))}/{len(rs)} answered)")
            finally:
                procs.stop()
        print(f"| {n} | {row[0]} | {row[1]} |")


def part_lease() -> None:
    print("\n## lease: a replica killed with SIGKILL while holding both slots of a GPU (lease-s 5)")
    procs = Procs()
    try:
        up = server(procs, "--latency-ms", "20000")
        text = config([up], redis=True, prefix=f"bench-{secrets.token_hex(4)}:",
                      gpu="max-concurrent = 2\nlease-s = 5")
        doomed, a = replica(procs, text)
        _, b = replica(procs, text)

        async def go() -> float:
            async with httpx.AsyncClient(timeout=60) as c:
                held = [asyncio.create_task(c.post(a + "/chat/completions", json=ASK)) for _ in range(2)]
                while stats(up)["inflight"] < 2:
                    await asyncio.sleep(0.02)
                os.killpg(doomed.pid, signal.SIGKILL)
                killed = time.monotonic()
                waiting = asyncio.create_task(c.post(b + "/chat/completions", json=ASK))
                while stats(up)["requests"] < 3:
                    await asyncio.sleep(0.02)
                took = time.monotonic() - killed
                waiting.cancel()
                for h in held:
                    h.cancel()
                return took

        print(f"seconds until another replica got a slot: {asyncio.run(go()):.2f}")
    finally:
        procs.stop()


def part_endpoint() -> None:
    print("\n## endpoint: a server of a pool of two killed under load, two replicas")
    procs = Procs()
    try:
        dead_url = server(procs, "--latency-ms", "30")
        dead = procs.all[-1]
        live = server(procs, "--latency-ms", "30")
        text = config([dead_url, live], redis=True, prefix=f"bench-{secrets.token_hex(4)}:",
                      extra='affinity = "none"', gpu="max-concurrent = 16")
        bases = [replica(procs, text)[1] for _ in range(2)]
        label = dead_url.split("//")[1].split("/")[0]
        down = f'shenron_endpoint_up{{backend="pool",endpoint="{label}"}} 0.0'

        async def go() -> tuple[int, int, float]:
            results: list[bool] = []
            stop = asyncio.Event()

            async def client(i: int) -> None:
                async with httpx.AsyncClient(timeout=30) as c:
                    while not stop.is_set():
                        try:
                            r = await c.post(bases[i % 2] + "/chat/completions", json={**ASK, "stream": i % 2 == 0})
                            results.append(r.status_code == 200)
                        except httpx.HTTPError:
                            results.append(False)

            load = [asyncio.create_task(client(i)) for i in range(8)]
            await asyncio.sleep(1)
            dead.kill()
            killed, before = time.monotonic(), len(results)
            seen = float("nan")
            async with httpx.AsyncClient() as c:
                while time.monotonic() - killed < 15:
                    pages = [(await c.get(b.removesuffix("/v1") + "/metrics")).text for b in bases]
                    if all(down in p for p in pages):
                        seen = time.monotonic() - killed
                        break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*load)
            after = results[before:]
            return len(after), after.count(False), seen

        n, failed, seen = asyncio.run(go())
        print(f"requests after the kill: {n}, failed: {failed}; seconds until both replicas show it down: {seen:.2f}")
    finally:
        procs.stop()


def part_affinity() -> None:
    print("\n## affinity: an agent session's 30 turns over a pool of three servers, two replicas")
    procs = Procs()
    try:
        ups = [server(procs, "--latency-ms", "50") for _ in range(3)]
        text = config(ups, redis=True, prefix=f"bench-{secrets.token_hex(4)}:", gpu="max-concurrent = 64")
        bases = [replica(procs, text)[1] for _ in range(2)]

        async def session(busy: bool) -> tuple[float, dict[str, int]]:
            """30 turns of one session; `busy`: from turn 5 a crowd of 12 more requests of the same session
            (a council's samples, parallel tool calls) keeps its favourite server loaded."""
            seen: dict[str, int] = {}
            stop = asyncio.Event()

            async def crowd(c: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    await asyncio.gather(*(c.post(bases[i % 2] + "/chat/completions", json=ASK,
                                                  headers={"x-shenron-session": "agent-1"}) for i in range(12)))

            async with httpx.AsyncClient(timeout=60) as c:
                noise: asyncio.Task[None] | None = None
                messages: list[dict[str, str]] = [{"role": "system", "content": "coding agent"}]
                for turn in range(30):
                    if busy and turn == 5:
                        noise = asyncio.create_task(crowd(c))
                        await asyncio.sleep(0.02)
                    messages.append({"role": "user", "content": f"turn {turn}"})
                    r = await c.post(bases[turn % 2] + "/chat/completions", json={**ASK, "messages": messages},
                                     headers={"x-shenron-session": "agent-1"})
                    e = r.json()["council"]["members"][0]["endpoint"]
                    seen[e] = seen.get(e, 0) + 1
                    messages.append({"role": "assistant", "content": "ok"})
                stop.set()
                if noise is not None:
                    await noise
            return max(seen.values()) / sum(seen.values()), seen

        share, seen = asyncio.run(session(False))
        print(f"idle pool: {share:.0%} of turns on one server {seen}")
        share, seen = asyncio.run(session(True))
        print(f"its favourite server crowded from turn 5: {share:.0%} on the most used server {seen}")
    finally:
        procs.stop()


def part_restart() -> None:
    print("\n## restart: a rolling restart of two replicas behind nginx under 6 clients (examples/fleet/fleet.py)")
    import psycopg

    procs = Procs()
    db = "shenron_bench_" + secrets.token_hex(4)
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")  # type: ignore[arg-type]
    db_url = PG.rsplit("/", 1)[0] + "/" + db
    try:
        ups = [server(procs, "--latency-ms", "60", "--token-ms", "5") for _ in range(2)]
        port = free_port()
        log = TMP / "fleet.log"
        fleet = procs.start([sys.executable, str(ROOT / "examples/fleet/fleet.py"), "--servers", ",".join(ups),
                             "--model", "fake", "--port", str(port), "--database-url", db_url, "--redis-prefix",
                             f"bench-{secrets.token_hex(4)}:", "--drain-s", "1", "--state", str(TMP / "fleet")],
                            "fleet.log")
        while "fleet ready" not in log.read_text():
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/v1"

        async def go() -> tuple[int, int]:
            outcomes: list[bool] = []
            stop = asyncio.Event()

            async def client(i: int) -> None:
                async with httpx.AsyncClient(timeout=60) as c:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        stream = (i + n) % 2 == 0
                        try:
                            r = await c.post(base + "/chat/completions", json={
                                "model": "ultra-instinct", "stream": stream,
                                "messages": [{"role": "user", "content": "x"}]})
                            outcomes.append(r.status_code == 200 and (not stream or "[DONE]" in r.text))
                        except httpx.HTTPError:
                            outcomes.append(False)

            load = [asyncio.create_task(client(i)) for i in range(6)]
            await asyncio.sleep(1)
            fleet.send_signal(signal.SIGHUP)
            while "rolling restart done" not in log.read_text():
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*load)
            return len(outcomes), outcomes.count(False)

        n, failed = asyncio.run(go())
        time.sleep(1.5)
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM ledger WHERE status = 200").fetchone()
        rows = row[0] if row else 0
        print(f"requests: {n}, failed: {failed}, answered {n - failed}, ledger rows {rows}, "
              f"lost {n - failed - rows}")
    finally:
        procs.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")  # type: ignore[arg-type]


def part_cost(n: int, rounds: int = 3) -> None:
    print(f"\n## cost: CPU per request of a replica, {n} requests at 8 concurrent, GPU slots in Redis vs in process "
          f"(two replicas side by side, measured in turns, median of {rounds})")
    print("| request | in process | Redis | ratio | Redis round trips per request |\n|---|---|---|---|---|")
    procs = Procs()
    try:
        up = server(procs)
        replicas = {redis: replica(procs, config([up], redis=redis, prefix=f"bench-{secrets.token_hex(4)}:",
                                                 gpu="max-concurrent = 64")) for redis in (False, True)}
        runs: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        for label, body in (("pass-through", ASK), ("council of 6", {**ASK, "model": "full-council"})):
            for _ in range(rounds):
                for redis, (proc, base) in replicas.items():

                    async def go(body: dict[str, Any] = body, base: str = base) -> None:
                        sem = asyncio.Semaphore(8)
                        async with httpx.AsyncClient(timeout=60) as c:
                            async def one() -> None:
                                async with sem:
                                    await c.post(base + "/chat/completions", json=body)
                            await asyncio.gather(*(one() for _ in range(n)))

                    asyncio.run(go())  # warm
                    trips = _trips(base)
                    before = cpu_seconds(proc.pid)
                    asyncio.run(go())
                    runs.setdefault((label, redis), []).append(((cpu_seconds(proc.pid) - before) / n * 1000,
                                                                (_trips(base) - trips) / n))
        for label in ("pass-through", "council of 6"):
            local = sorted(r[0] for r in runs[(label, False)])[rounds // 2]
            shared = sorted(r[0] for r in runs[(label, True)])[rounds // 2]
            trips = sorted(r[1] for r in runs[(label, True)])[rounds // 2]
            print(f"| {label} | {local:.2f} ms | {shared:.2f} ms | {shared / local:.2f}x | {trips:.2f} |")
    finally:
        procs.stop()


def _trips(base: str) -> float:
    for line in httpx.get(base.removesuffix("/v1") + "/metrics").text.splitlines():
        if line.startswith("shenron_fleet_redis_round_trips "):
            return float(line.split()[1])
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="slots,lease,endpoint,affinity,restart,cost")
    ap.add_argument("--cost-requests", type=int, default=600)
    a = ap.parse_args()
    parts = a.only.split(",")
    print(f"# bench/fleet.py  ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; logs in {TMP})")
    for name in parts:
        if name == "cost":
            part_cost(a.cost_requests)
        else:
            globals()[f"part_{name}"]()


if __name__ == "__main__":
    main()
