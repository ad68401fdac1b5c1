"""Replicas of `shenron serve` as a user runs them: max-concurrent across two processes and across workers,
a drain on SIGTERM, probes and breakers shared, degradation counted fleet-wide, and Redis killed under
them. The slots' own rules, in process, are in test_fleet_slots.py."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.procs import Proc, fake_upstream, running, shenron
from tests.services import own_redis, redis_prefix, redis_url, wait_port  # noqa: F401

pytestmark = pytest.mark.integration


def _two_replicas(tmp_path: Path, config: str, started: list[Proc]) -> list[tuple[Proc, str]]:
    """Two `shenron serve` over one config (its [store] table last), each with a ledger of its own."""
    replicas = []
    for i in range(2):
        proc, base = shenron(tmp_path, config + f'path = "{tmp_path}/ledger-{i}.db"\n')
        started.append(proc)
        replicas.append((proc, base))
    return replicas


def _stats(url: str) -> dict[str, int]:
    return httpx.get(url.removesuffix("/v1") + "/stats").json()  # type: ignore[no-any-return]


def test_two_shenron_replicas_never_put_more_than_max_concurrent_on_a_gpu(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    with running() as started:
        gpu, up = fake_upstream(tmp_path, "--latency-ms", "100")
        started.append(gpu)
        config = f"""
[backends.smol]
url = "{up}"
model = "fake"
gpu = "gpu0"

[gpus.gpu0]
vram-gb = 24
max-concurrent = 2

[store]
redis-url = "{redis_url}"
redis-prefix = "{redis_prefix}"
"""
        replicas = _two_replicas(tmp_path, config, started)

        async def ask_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(
                    client.post(replicas[i % 2][1] + "/chat/completions", json={
                        "model": "smol", "stream": i % 3 == 0, "messages": [{"role": "user", "content": "hi"}]})
                    for i in range(12)))

        answers = asyncio.run(ask_all())
        assert [r.status_code for r in answers] == [200] * 12
        stats = _stats(up)
        assert stats["requests"] == 12
        assert stats["peak"] == 2, f"the GPU had {stats['peak']} requests at once behind two replicas"
        for _ in range(30):  # each replica counts the others on its next heartbeat (every second)
            metrics = httpx.get(replicas[0][1].removesuffix("/v1") + "/metrics").text
            if "shenron_fleet_replicas 2.0" in metrics:
                break
            time.sleep(0.1)
        assert "shenron_fleet_redis_up 1.0" in metrics and "shenron_fleet_replicas 2.0" in metrics
        page = httpx.get(replicas[1][1].removesuffix("/v1") + "/status").text
        assert "Redis: GPU slots shared" in page


def test_sigterm_drains_then_finishes_what_is_in_flight(tmp_path: Path) -> None:
    """A rolling restart's half: /ready says 503 at once so the balancer moves away, new requests are
    still served meanwhile (their connections closed after them), and what was in flight, a stream
    included, finishes and is in the ledger before the process exits."""
    import signal
    import sqlite3

    with running() as started:
        gpu, up = fake_upstream(tmp_path, "--latency-ms", "1500")
        started.append(gpu)
        db = tmp_path / "ledger.db"
        proc, base = shenron(tmp_path, f"""
[server]
drain-s = 1.0

[backends.smol]
url = "{up}"
model = "fake"

[store]
path = "{db}"
""")
        started.append(proc)
        root = base.removesuffix("/v1")
        ask = {"model": "smol", "messages": [{"role": "user", "content": "hi"}]}

        async def restart() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                inflight = [asyncio.create_task(client.post(base + "/chat/completions", json={**ask, "stream": s}))
                            for s in (False, True)]
                await asyncio.sleep(0.5)
                proc.p.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.1)
                ready = await client.get(root + "/ready")
                during = await client.post(base + "/chat/completions", json=ask)
                return list(await asyncio.gather(*inflight)), ready, during

        inflight, ready, during = asyncio.run(restart())
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        assert during.status_code == 200 and during.headers["connection"] == "close"
        assert [r.status_code for r in inflight] == [200, 200]
        assert "data: [DONE]" in inflight[1].text
        proc.p.wait(30)
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT status FROM ledger").fetchall()
        assert sorted(rows) == [(200,), (200,), (200,)], "every answered request is in the ledger"


def test_several_workers_need_redis_and_share_its_slots(tmp_path: Path, redis_url: str,  # noqa: F811
                                                        redis_prefix: str) -> None:  # noqa: F811
    from tests.procs import cli

    (tmp_path / "one.toml").write_text('[backends.smol]\nurl = "http://127.0.0.1:9/v1"\nmodel = "fake"\n')
    refused = cli("serve", "--workers", "2", "--config", str(tmp_path / "one.toml"), cwd=tmp_path)
    assert refused.returncode == 2 and "needs [store] redis-url" in refused.stderr
    with running() as started:
        gpu, up = fake_upstream(tmp_path, "--latency-ms", "100")
        started.append(gpu)
        proc, base = shenron(tmp_path, f"""
[backends.smol]
url = "{up}"
model = "fake"
gpu = "gpu0"

[gpus.gpu0]
vram-gb = 24
max-concurrent = 1

[store]
path = "{tmp_path}/ledger.db"
redis-url = "{redis_url}"
redis-prefix = "{redis_prefix}"
""", "--workers", "2")
        started.append(proc)

        async def ask_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(base + "/chat/completions", json={
                    "model": "smol", "messages": [{"role": "user", "content": "hi"}]}) for _ in range(8)))

        assert [r.status_code for r in asyncio.run(ask_all())] == [200] * 8
        assert _stats(up)["peak"] == 1
        assert "2 workers" in proc.log()


def test_replicas_share_probes_and_skip_a_dead_server_together(tmp_path: Path, redis_url: str,  # noqa: F811
                                                               redis_prefix: str) -> None:  # noqa: F811
    """Each server is probed by one replica a round, not by every replica; a server one replica finds dead
    is skipped by all of them by the next round."""
    with running() as started:
        live, live_url = fake_upstream(tmp_path)
        dead, dead_url = fake_upstream(tmp_path)
        started += [live, dead]
        config = f"""
[server]
health-interval-s = 0.5
models-refresh-s = 3600

[backends.pool]
urls = ["{dead_url}", "{live_url}"]
model = "fake"
affinity = "none"

[store]
redis-url = "{redis_url}"
redis-prefix = "{redis_prefix}"
"""
        replicas = [base.removesuffix("/v1") for _, base in _two_replicas(tmp_path, config, started)]
        before = _stats(live_url)["probes"]
        time.sleep(3.0)
        probes = _stats(live_url)["probes"] - before
        assert 3 <= probes <= 8, f"{probes} probes in 3 s at 0.5 s by two replicas: one prober a round is ~6"
        dead.stop()
        label = dead_url.split("//")[1].split("/")[0]
        down = f'shenron_endpoint_up{{backend="pool",endpoint="{label}"}} 0.0'
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pages = [httpx.get(r + "/metrics").text for r in replicas]
            if all(down in page for page in pages):
                break
            time.sleep(0.2)
        took = 10 - (deadline - time.monotonic())
        assert all(down in page for page in pages), "every replica skips the dead server"
        assert took < 5, took


def test_degradation_counts_what_every_replica_has_in_flight(tmp_path: Path, redis_url: str,  # noqa: F811
                                                             redis_prefix: str) -> None:  # noqa: F811
    """`max-inflight = 2` means two across the fleet: with two slow requests on one replica, the other
    degrades the next request, saying why."""
    with running() as started:
        gpu, up = fake_upstream(tmp_path, "--latency-ms", "6000")
        started.append(gpu)
        config = f"""
[backends.smol]
url = "{up}"
model = "fake"

[models.agent-lite]
strategy = "single"
members = ["smol"]

[models.full-council]
strategy = "council"
members = ["smol", "smol", "smol"]
max-inflight = 2
degrade-to = "agent-lite"

[store]
redis-url = "{redis_url}"
redis-prefix = "{redis_prefix}"
"""
        bases = [base for _, base in _two_replicas(tmp_path, config, started)]
        ask = {"model": "full-council", "messages": [{"role": "user", "content": "hi"}]}

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(timeout=60) as client:
                slow = [asyncio.create_task(client.post(bases[0] + "/chat/completions", json=ask)) for _ in range(2)]
                await asyncio.sleep(2.5)  # replica 1's next heartbeat (every second) publishes, replica 2's reads
                other = await client.post(bases[1] + "/chat/completions", json=ask)
                await asyncio.gather(*slow)
                return other

        r = asyncio.run(go())
        council = r.json()["council"]
        assert council.get("degraded_from") == "full-council", council
        assert "max-inflight: 2 in flight >= 2" in council["degraded_because"]


def test_two_replicas_serve_on_while_redis_is_down_and_share_again_after(
        tmp_path: Path, own_redis: tuple[str, list[subprocess.Popen[bytes]]]) -> None:  # noqa: F811
    """Keys with a tier (rate limits and spend counted in Redis), cached answers, GPU slots: Redis killed
    under two replicas fails no request, both say so, and both go back to Redis when it answers."""
    from tests.procs import cli

    url, redis_procs = own_redis
    with running() as started:
        gpu, up = fake_upstream(tmp_path, "--latency-ms", "20")
        started.append(gpu)
        config = f"""
[server]
metrics-token = "ops-token"

[auth]
enabled = true

[tiers.team]
models = ["*"]
requests-per-minute = 1000

[backends.smol]
url = "{up}"
model = "fake"
gpu = "gpu0"

[gpus.gpu0]
vram-gb = 24
max-concurrent = 2

[models.ultra-instinct]
strategy = "single"
members = ["smol"]
cache-ttl-s = 60

[store]
path = "{tmp_path}/shared.db"
redis-url = "{url}"
redis-prefix = "blink:"
"""
        cfg = tmp_path / "shenron.toml"
        cfg.write_text(config)
        made = cli("keys", "create", "--name", "t", "--tier", "team", "--config", str(cfg), cwd=tmp_path)
        key = next(w for w in made.stdout.split() if w.startswith("sk-"))
        bases = []
        for _ in range(2):
            proc, base = shenron(tmp_path, None, "--config", str(cfg))
            started.append(proc)
            bases.append(base)
        auth = {"authorization": f"Bearer {key}"}

        def ask_all(tag: str) -> list[int]:
            with httpx.Client(timeout=30) as c:
                return [c.post(bases[i % 2] + "/chat/completions", headers=auth, json={
                    "model": "ultra-instinct", "stream": i % 3 == 0,
                    "messages": [{"role": "user", "content": f"{tag} {i % 4}"}]}).status_code for i in range(12)]

        assert ask_all("before") == [200] * 12
        redis_procs[0].kill()
        redis_procs[0].wait()
        assert ask_all("during") == [200] * 12, "no request fails because Redis went away"
        ops = {"authorization": "Bearer ops-token"}
        metrics = httpx.get(bases[0].removesuffix("/v1") + "/metrics", headers=ops).text
        assert "shenron_fleet_redis_up 0.0" in metrics
        assert "Redis unreachable" in httpx.get(bases[1].removesuffix("/v1") + "/status", headers=ops).text
        logs = "".join(p.log() for p in started[1:])
        assert "Redis unreachable" in logs
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        redis_procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                                             "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
        wait_port(port)
        time.sleep(2.5)  # a heartbeat, and the counters' one-second pause
        assert ask_all("after") == [200] * 12
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "shenron_fleet_redis_up 1.0" not in metrics:
            time.sleep(0.2)
            metrics = httpx.get(bases[0].removesuffix("/v1") + "/metrics", headers=ops).text
        assert "shenron_fleet_redis_up 1.0" in metrics
        assert "Redis answers again" in "".join(p.log() for p in started[1:])
