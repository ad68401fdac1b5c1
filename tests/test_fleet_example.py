"""examples/fleet/fleet.py as a user runs it: nginx in front of two replicas over PostgreSQL, Redis and a pool
of two model servers. Under a steady load of streamed and plain requests, a rolling restart of both replicas
fails nothing and loses no ledger row, no model server ever has more than max-concurrent requests, and an
agent's session stays on one model server whichever replica serves each turn."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.procs import ROOT, Proc, fake_upstream, free_port, running
from tests.services import missing, postgres_url, redis_prefix, redis_url  # noqa: F401

pytestmark = pytest.mark.integration


def _wait_for(proc: Proc, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.log():
            return
        if proc.p.poll() is not None:
            raise AssertionError(f"the fleet script exited ({proc.p.returncode}):\n{proc.log()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} within {timeout}s:\n{proc.log()[-3000:]}")


async def _load(base: str, stop: asyncio.Event, outcomes: list[str]) -> None:
    """Six clients asking one after another until told to stop; each outcome 'ok' or what went wrong."""
    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60) as c:
            n = 0
            while not stop.is_set():
                n += 1
                stream = (i + n) % 2 == 0
                body = {"model": "ultra-instinct", "stream": stream,
                        "messages": [{"role": "user", "content": f"client {i} request {n}"}]}
                try:
                    r = await c.post(base + "/chat/completions", json=body)
                    ok = r.status_code == 200 and (not stream or r.text.rstrip().endswith("data: [DONE]"))
                    outcomes.append("ok" if ok else f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    outcomes.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(client(i) for i in range(6)))


def test_the_fleet_example_rolls_a_restart_under_load_and_loses_nothing(
        tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        missing("nginx is not installed (Debian package nginx; .ci/run installs it)")
    import psycopg

    with running() as started:
        servers = []
        for _ in range(2):
            proc, url = fake_upstream(tmp_path, "--latency-ms", "60", "--token-ms", "5")
            started.append(proc)
            servers.append(url)
        port = free_port()
        fleet = Proc([sys.executable, str(ROOT / "examples" / "fleet" / "fleet.py"), "--servers", ",".join(servers),
                      "--model", "fake", "--port", str(port), "--database-url", postgres_url, "--redis-url", redis_url,
                      "--redis-prefix", redis_prefix, "--drain-s", "1", "--nginx", str(nginx),
                      "--state", str(tmp_path / "fleet")], tmp_path / "fleet.log", cwd=tmp_path)
        started.append(fleet)
        _wait_for(fleet, "fleet ready:")
        base = f"http://127.0.0.1:{port}/v1"

        async def restart_under_load() -> list[str]:
            outcomes: list[str] = []
            stop = asyncio.Event()
            load = asyncio.create_task(_load(base, stop, outcomes))
            await asyncio.sleep(1.0)
            fleet.p.send_signal(signal.SIGHUP)
            await asyncio.to_thread(_wait_for, fleet, "fleet: rolling restart done", 120)
            await asyncio.sleep(1.0)
            stop.set()
            await load
            return outcomes

        outcomes = asyncio.run(restart_under_load())
        failed = [o for o in outcomes if o != "ok"]
        assert len(outcomes) > 50 and not failed, f"{len(failed)} of {len(outcomes)} failed: {failed[:5]}"
        assert fleet.log().count("restarting the replica on") == 2

        peaks = [httpx.get(u.removesuffix("/v1") + "/stats").json()["peak"] for u in servers]
        assert max(peaks) <= 2, f"max-concurrent 2 per model server across both replicas; peaks {peaks}"

        with httpx.Client(timeout=30) as c:
            turns = []
            for t in range(10):
                r = c.post(base + "/chat/completions", headers={"x-shenron-session": "agent-7"}, json={
                    "model": "ultra-instinct", "messages": [{"role": "user", "content": f"turn {t}"}]})
                turns.append(r.json()["council"]["members"][0]["endpoint"])
        assert len(set(turns)) == 1, f"a session's turns on one model server through both replicas: {turns}"

        time.sleep(1.5)  # the replicas' group commits
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute("SELECT count(*) FROM ledger WHERE status = 200").fetchone()
        assert rows is not None and rows[0] == len(outcomes) + 10, "one ledger row per answered request"

        fleet.p.send_signal(signal.SIGTERM)
        assert fleet.p.wait(60) == 0
        assert fleet.log().rstrip().endswith("fleet: stopped")


def test_the_kubernetes_manifests_parse_and_fit_together(tmp_path: Path) -> None:
    import yaml

    from routing.config import load
    from routing.upstream.pool import _expandable

    docs = list(yaml.safe_load_all((ROOT / "examples" / "fleet" / "k8s" / "shenron.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    models = kinds[("Service", "vllm-qwen")]
    assert models["spec"]["clusterIP"] == "None", "the model servers' Service is headless: DNS lists every pod"
    toml = tmp_path / "shenron.toml"
    toml.write_text(kinds[("ConfigMap", "shenron")]["data"]["shenron.toml"])
    cfg = load(toml)
    url = cfg.backends["qwen"].urls[0]
    assert isinstance(url, str) and _expandable(url) == ("vllm-qwen.default.svc.cluster.local", 8000)
    assert url.split("//")[1].startswith(models["metadata"]["name"] + ".")
    assert cfg.store.redis_url and cfg.store.database_url and cfg.auth.enabled
    deploy = kinds[("Deployment", "shenron")]["spec"]
    pod = deploy["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:2] == ["shenron", "serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert pod["terminationGracePeriodSeconds"] > cfg.server.drain_s + cfg.server.drain_timeout_s
    assert deploy["replicas"] >= 2 and deploy["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    front = kinds[("Service", "shenron")]["spec"]
    assert front["selector"] == deploy["selector"]["matchLabels"] and front["ports"][0]["targetPort"] == cfg.server.port
