"""The harness `bench/fleet.py` measures the fleet with: stub GPU servers (`tests/fake_upstream.py`, whose
GET /stats gives the most requests it ever held at once), replicas of `shenron serve` on a config of
their own, and the processes they run as, stopped together."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.procs import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
SHENRON = Path(sys.executable).with_name("shenron")
REDIS = os.environ.get("SHENRON_TEST_REDIS", "redis://127.0.0.1:6379/0")
PG = os.environ.get("SHENRON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TMP = Path(tempfile.mkdtemp(prefix="shenron-fleet-bench-"))
ASK = {"model": "pool", "messages": [{"role": "user", "content": "hi"}]}


class Procs:
    def __init__(self) -> None:
        self.all: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, stdout=(TMP / log).open("ab"), stderr=subprocess.STDOUT, cwd=cwd or ROOT,
                             start_new_session=True)
        self.all.append(p)
        return p

    def stop(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.terminate()
        for p in self.all:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.all.clear()


def server(procs: Procs, *extra: str) -> str:
    port = free_port()
    procs.start([sys.executable, "-m", "tests.fake_upstream", "--port", str(port), *extra], f"up-{port}.log")
    wait_http(f"http://127.0.0.1:{port}/health")
    return f"http://127.0.0.1:{port}/v1"


def stats(url: str) -> dict[str, int]:
    return httpx.get(url.removesuffix("/v1") + "/stats").json()  # type: ignore[no-any-return]


def config(urls: list[str], *, redis: bool, prefix: str, extra: str = "", gpu: str = "max-concurrent = 2",
           server: str = "") -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    store = f'redis-url = "{REDIS}"\nredis-prefix = "{prefix}"\n' if redis else ""
    return f"""[server]
access-log = "off"
health-interval-s = 0.5
{server}
[backends.pool]
urls = [{listed}]
model = "fake"
gpu = "g"
{extra}
[gpus.g]
vram-gb = 24
{gpu}

[models.full-council]
strategy = "council"
members = ["pool", "pool", "pool", "pool", "pool", "pool"]
early-decision = false

[store]
{store}"""


def replica(procs: Procs, text: str, *, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = port or free_port()
    cfg = TMP / f"shenron-{port}.toml"
    cfg.write_text(text + f'path = "{TMP}/ledger-{port}.db"\n')
    p = procs.start([str(SHENRON), "serve", "--port", str(port), "--config", str(cfg)], f"shenron-{port}.log", cwd=TMP)
    wait_http(f"http://127.0.0.1:{port}/ready")
    return p, f"http://127.0.0.1:{port}/v1"


async def burst(bases: list[str], n: int, body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> list[httpx.Response | Exception]:
    async with httpx.AsyncClient(timeout=120) as c:
        return list(await asyncio.gather(*(c.post(bases[i % len(bases)] + "/chat/completions", json=body or ASK,
                                                  headers=headers) for i in range(n)), return_exceptions=True))


def ok(r: httpx.Response | Exception) -> bool:
    return isinstance(r, httpx.Response) and r.status_code == 200
