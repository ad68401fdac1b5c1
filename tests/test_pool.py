"""One model on several servers (`urls = [...]`): load spread by what each has outstanding, a dead server
costing no failed request, an agent's session kept on one server, each server's own GPU slots, and host
names that resolve to several addresses."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.config import BackendConfig, ConfigError, load
from routing.errors import MemberFailure, MemberTimeout, UpstreamStatus
from routing.request import Message, Request
from routing.upstream.kinds import build
from routing.upstream.pool import PooledBackend, retryable
from tests.procs import fake_upstream, running, shenron

ASK = {"model": "pool", "messages": [{"role": "user", "content": "hi"}]}


def _stats(url: str) -> dict[str, int]:
    return httpx.get(url.removesuffix("/v1") + "/stats").json()  # type: ignore[no-any-return]


def _config(urls: list[str], extra: str = "", tmp: Path | None = None) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    store = f'\n[store]\npath = "{tmp}/ledger.db"\n' if tmp else ""
    return f"""
[backends.pool]
urls = [{listed}]
model = "fake"
{extra}
{store}"""


def _endpoint(r: httpx.Response) -> str:
    return str(r.json()["council"]["members"][0]["endpoint"])


def _label(url: str) -> str:
    return url.split("//")[1].split("/")[0]


@pytest.mark.integration
def test_load_spreads_over_every_server_of_the_pool(tmp_path: Path) -> None:
    with running() as started:
        ups = []
        for _ in range(3):
            proc, url = fake_upstream(tmp_path, "--latency-ms", "200")
            started.append(proc)
            ups.append(url)
        proxy, base = shenron(tmp_path, _config(ups, 'affinity = "none"'))
        started.append(proxy)

        async def ask_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(client.post(base + "/chat/completions", json=ASK) for _ in range(12)))

        answers = asyncio.run(ask_all())
        assert [r.status_code for r in answers] == [200] * 12
        counts = [_stats(u)["requests"] for u in ups]
        assert sum(counts) == 12 and min(counts) >= 2, f"least outstanding spread 12 requests as {counts}"
        assert {_endpoint(r) for r in answers} == {_label(u) for u in ups}


@pytest.mark.integration
def test_a_dead_server_costs_no_failed_request_and_status_shows_it(tmp_path: Path) -> None:
    with running() as started:
        live, live_url = fake_upstream(tmp_path)
        dead, dead_url = fake_upstream(tmp_path)
        started += [live, dead]
        proxy, base = shenron(tmp_path, _config([dead_url, live_url], 'affinity = "none"', tmp_path))
        started.append(proxy)
        dead.stop()
        with httpx.Client(timeout=30) as client:
            plain = [client.post(base + "/chat/completions", json=ASK) for _ in range(8)]
            streamed = [client.post(base + "/chat/completions", json={**ASK, "stream": True}) for _ in range(4)]
        assert [r.status_code for r in plain + streamed] == [200] * 12, [r.text for r in plain if r.status_code != 200]
        assert {_endpoint(r) for r in plain} == {_label(live_url)}
        assert all("data: [DONE]" in r.text for r in streamed)
        page = httpx.get(base.removesuffix("/v1") + "/status").text
        assert f"pool @ {_label(dead_url)}" in page and f"pool @ {_label(live_url)}" in page
        metrics = httpx.get(base.removesuffix("/v1") + "/metrics").text
        assert f'shenron_endpoint_up{{backend="pool",endpoint="{_label(live_url)}"}} 1.0' in metrics
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        members = [json.loads(m)[0] for (m,) in conn.execute("SELECT members FROM ledger WHERE stream = 0")]
    assert members and all(m["endpoint"] == _label(live_url) for m in members), members


@pytest.mark.integration
def test_an_agents_session_stays_on_one_server(tmp_path: Path) -> None:
    with running() as started:
        ups = []
        for _ in range(3):
            proc, url = fake_upstream(tmp_path)
            started.append(proc)
            ups.append(url)
        proxy, base = shenron(tmp_path, _config(ups))
        started.append(proxy)
        seen: dict[str, list[str]] = {}
        with httpx.Client(timeout=30) as client:
            for session in ("agent-a", "agent-b", "agent-c", "agent-d", "agent-e", "agent-f"):
                messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent."}]
                for turn in range(8):
                    messages.append({"role": "user", "content": f"turn {turn}"})
                    r = client.post(base + "/chat/completions", json={**ASK, "messages": messages},
                                    headers={"x-shenron-session": session})
                    assert r.status_code == 200
                    seen.setdefault(session, []).append(_endpoint(r))
                    messages.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]})
            # without a session key, the prompt's prefix keeps a conversation in place just the same
            prefix = [_endpoint(client.post(base + "/chat/completions", json={**ASK, "messages": [
                {"role": "user", "content": "the same first question"}, *([{"role": "assistant", "content": "a"},
                                                                           {"role": "user", "content": "more"}] * t)]}))
                      for t in range(5)]
        assert all(len(set(turns)) == 1 for turns in seen.values()), seen
        assert len({turns[0] for turns in seen.values()}) >= 2, "different sessions spread over the servers"
        assert len(set(prefix)) == 1, prefix


@pytest.mark.integration
def test_each_server_of_a_pool_has_its_own_gpu_slots(tmp_path: Path) -> None:
    with running() as started:
        ups = []
        for _ in range(2):
            proc, url = fake_upstream(tmp_path, "--latency-ms", "150")
            started.append(proc)
            ups.append(url)
        proxy, base = shenron(tmp_path, _config(ups, 'gpu = "a100"\naffinity = "none"\n\n'
                                                     "[gpus.a100]\nvram-gb = 80\nmax-concurrent = 1\n"))
        started.append(proxy)

        async def ask_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(client.post(base + "/chat/completions", json=ASK) for _ in range(8)))

        answers = asyncio.run(ask_all())
        assert [r.status_code for r in answers] == [200] * 8
        peaks = [_stats(u)["peak"] for u in ups]
        assert peaks == [1, 1], f"max-concurrent 1 per server, got peaks {peaks}"
        assert any(r.json()["council"]["members"][0].get("queue_ms", 0) > 0 for r in answers)


@pytest.mark.integration
def test_a_server_failing_with_500_is_passed_over_before_the_first_byte(tmp_path: Path) -> None:
    with running() as started:
        bad, bad_url = fake_upstream(tmp_path, "--fail", "http500")
        good, good_url = fake_upstream(tmp_path)
        started += [bad, good]
        proxy, base = shenron(tmp_path, _config([bad_url, good_url], 'affinity = "none"'))
        started.append(proxy)
        with httpx.Client(timeout=30) as client:
            rs = [client.post(base + "/chat/completions", json={**ASK, "stream": i % 2 == 1}) for i in range(20)]
        assert [r.status_code for r in rs] == [200] * 20
        assert _stats(bad_url)["requests"] >= 1, "the failing server was asked, and its failures hidden"


def test_url_or_urls_not_both(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[backends.a]\nurl = "http://x/v1"\nurls = ["http://y/v1"]\nmodel = "m"\n')
    with pytest.raises(ConfigError, match="not both"):
        load(cfg)
    cfg.write_text('[backends.a]\nmodel = "m"\n')
    with pytest.raises(ConfigError, match="missing required key `url`"):
        load(cfg)
    cfg.write_text('[backends.a]\nurls = ["http://y/v1", {url = "ftp://z", capacity = 0}]\nmodel = "m"\n')
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert "backends.a.urls[1]`: must start with http://" in str(e.value) and "capacity`: must be > 0" in str(e.value)


def test_failures_another_server_may_answer() -> None:
    assert retryable(MemberFailure("p", "connection refused"))
    assert retryable(UpstreamStatus("p", 503, "busy", None, None, None))
    assert retryable(UpstreamStatus("p", 429, "slow down", None, None, None))
    assert not retryable(UpstreamStatus("p", 400, "bad request", None, None, None))
    assert not retryable(MemberTimeout("p", "no answer within 120s"))
    connect = MemberTimeout("p", "no answer")
    connect.__cause__ = httpx.ConnectTimeout("connect")
    assert retryable(connect)


async def test_a_host_name_with_several_addresses_is_several_endpoints() -> None:
    answers: dict[str, list[str]] = {"gpus.example.internal": ["10.1.0.5", "10.1.0.6"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    cfg = BackendConfig(model="m", urls=["http://gpus.example.internal:8000/v1", "http://127.0.0.1:9000/v1"],
                        url="http://gpus.example.internal:8000/v1")
    async with httpx.AsyncClient() as client:
        pool = build("p", cfg, client)
        assert isinstance(pool, PooledBackend)
        pool._resolver = resolver
        await pool.resolve()
        labels = [e.label for e in pool.endpoints]
        assert labels == ["gpus.example.internal:8000/10.1.0.5", "gpus.example.internal:8000/10.1.0.6",
                          "127.0.0.1:9000"]
        assert pool.endpoints[1].backend.chat_url == "http://10.1.0.6:8000/v1/chat/completions"
        kept = pool.endpoints[1]
        answers["gpus.example.internal"] = ["10.1.0.6", "10.1.0.7"]  # a pod replaced
        await pool.resolve()
        assert [e.label for e in pool.endpoints][:2] == ["gpus.example.internal:8000/10.1.0.6",
                                                         "gpus.example.internal:8000/10.1.0.7"]
        assert pool.endpoints[0] is kept, "an endpoint that stays keeps its health and load"


async def test_bounded_load_passes_an_overloaded_favourite_over() -> None:
    cfg = BackendConfig(model="m", url="http://a:1/v1", urls=["http://a:1/v1", "http://b:1/v1", "http://c:1/v1"])
    req = Request(messages=[Message("user", "hi")], session="agent-1")
    async with httpx.AsyncClient() as client:
        pool = build("p", cfg, client)
        assert isinstance(pool, PooledBackend)
        favourite = pool.order(req)[0]
        assert all(pool.order(req)[0] is favourite for _ in range(20)), "rendezvous hashing is stable"
        favourite.outstanding = 5  # busy with other sessions
        assert pool.order(req)[0] is not favourite
        favourite.outstanding = 0
        spread = Counter(pool.order(Request(messages=[Message("user", "hi")], session=f"s{i}"))[0].label
                         for i in range(300))
        assert len(spread) == 3


@pytest.mark.integration
def test_an_agents_turns_are_one_session_in_the_ledger_and_in_usage(tmp_path: Path) -> None:
    """Codex's `session-id`, Claude Code's `x-claude-code-session-id` and the Responses `prompt_cache_key`
    each make a session; the ledger keeps a hash of it (never the key), `council.session` names it, and
    `shenron usage --by session` sums its turns."""
    from tests.procs import cli

    with running() as started:
        up_proc, up = fake_upstream(tmp_path)
        started.append(up_proc)
        cfg = tmp_path / "shenron.toml"
        proxy, base = shenron(tmp_path, _config([up], tmp=tmp_path), cfg_path=cfg)
        started.append(proxy)
        with httpx.Client(timeout=30) as c:
            codex = [c.post(base + "/chat/completions", json=ASK, headers={"session-id": "0199-codex-thread"})
                     for _ in range(3)]
            claude = [c.post(base + "/messages", json={**ASK, "max_tokens": 10},
                             headers={"x-claude-code-session-id": "cc-42", "anthropic-version": "2023-06-01"})
                      for _ in range(2)]
            cache_key = c.post(base + "/responses", json={"model": "pool", "input": "hi",
                                                          "prompt_cache_key": "codex-cache-1"})
            plain = c.post(base + "/chat/completions", json=ASK)
        sessions = [r.json()["council"]["session"] for r in codex]
        assert len(set(sessions)) == 1 and sessions[0].startswith("s_") and "codex" not in sessions[0]
        assert {r.json()["council"]["session"] for r in claude} != set(sessions)
        assert cache_key.json()["council"]["session"].startswith("s_")
        assert "session" not in plain.json()["council"]
        done = cli("usage", "--by", "session", "--format", "json", "--config", str(cfg), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        rows = {r["group"]: r for r in json.loads(done.stdout)["rows"]}
        assert rows[sessions[0]]["requests"] == 3 and rows["(no session)"]["requests"] == 1
        assert rows[claude[0].json()["council"]["session"]]["requests"] == 2
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        stored = {s for (s,) in conn.execute("SELECT session FROM ledger")}
    assert not any("codex" in (s or "") or "cc-42" in (s or "") for s in stored), stored


@pytest.mark.integration
def test_a_member_whose_window_cannot_hold_the_turn_is_skipped_with_both_numbers(tmp_path: Path) -> None:
    """Windows configured (`context-tokens`), read from vLLM's /v1/models (`max_model_len`) and from
    llama.cpp's /props (`n_ctx`): a long agent turn skips the members that cannot hold it instead of
    asking them to fail, and the council answers with the one that can."""
    with running() as started:
        big, big_url = fake_upstream(tmp_path, "--answer", "Paris.")
        vllm, vllm_url = fake_upstream(tmp_path, "--max-model-len", "2048", "--answer", "Paris.")
        llama, llama_url = fake_upstream(tmp_path, "--n-ctx", "1024", "--answer", "Paris.")
        started += [big, vllm, llama]
        proxy, base = shenron(tmp_path, f"""
[server]
health-interval-s = 0.2

[backends.big]
url = "{big_url}"
model = "fake"
context-tokens = 131072

[backends.small]
url = "{vllm_url}"
model = "fake"
server = "vllm"

[backends.tiny]
url = "{llama_url}"
model = "fake"
server = "llamacpp"

[models.full-council]
strategy = "council"
members = ["big", "small", "tiny"]
min-answers = 1
early-decision = false
""")
        started.append(proxy)
        long_turn = [{"role": "user", "content": "word " * 4000}]  # about 5,000 tokens
        time.sleep(1.0)  # a probe round reads llama.cpp's /props
        with httpx.Client(timeout=30) as c:
            r = c.post(base + "/chat/completions", json={"model": "full-council", "messages": long_turn,
                                                          "max_tokens": 500})
            asked = [_stats(vllm_url)["requests"], _stats(llama_url)["requests"]]
            short = c.post(base + "/chat/completions", json={"model": "full-council", "messages": ASK["messages"]})
        assert r.status_code == 200, r.text
        members = {m["name"]: m for m in r.json()["council"]["members"]}
        assert r.status_code == 200 and members["big"]["status"] == "ok"
        assert members["small"]["status"] == "skipped"
        assert "context window 2048 tokens < 5500 needed (prompt ~5000 + max_tokens 500)" in members["small"]["error"]
        assert members["tiny"]["status"] == "skipped" and "context window 1024 tokens" in members["tiny"]["error"]
        assert asked == [0, 0], "never asked to fail"
        assert all(m["status"] == "ok" for m in short.json()["council"]["members"]), "a short turn fits all"
