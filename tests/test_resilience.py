"""Integration: health, breakers, GPU pools, degradation and cascade through `shenron serve` and the openai SDK.

Upstreams are the fake OpenAI servers (real processes on real ports) that can be stopped,
restarted, made to report 503 "Loading model", slowed down or made unsure (logprobs).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.procs import Proc, cli, events, fake_upstream, free_port, shenron

pytestmark = pytest.mark.integration
Q = [{"role": "user", "content": "What is six times seven?"}]


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)


def council_of(resp: Any) -> dict[str, Any]:
    return resp.model_extra["council"]  # type: ignore[no-any-return]


def statuses(resp: Any) -> dict[str, str]:
    return {m["name"]: m["status"] for m in council_of(resp)["members"]}


FAST = """
[server]
health-interval-s = 0.3
breaker-failures = 2
breaker-open-s = 1
"""


def test_a_stopped_backend_is_skipped_within_seconds_and_used_again_when_it_returns(tmp_path: Path,
                                                                                     procs: list[Proc]) -> None:
    urls = {}
    ports = {}
    for name in ("a", "b", "c"):
        ports[name] = free_port()
        p, urls[name] = fake_upstream(tmp_path, "--models", name, "--answer", "42", port=ports[name])
        procs.append(p)
    blocks = "".join(f'[backends.{n}]\nurl = "{u}"\nmodel = "{n}"\n' for n, u in urls.items())
    proxy, base = shenron(tmp_path, FAST + blocks + '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n'
                          '[models.agent-lite]\nstrategy = "council"\nmembers = ["a", "b", "c"]\n'
                          'early-decision = false\n')
    procs.append(proxy)
    c = client(base)
    assert statuses(c.chat.completions.create(model="agent-lite", messages=Q)) == {"a": "ok", "b": "ok", "c": "ok"}  # type: ignore[arg-type]
    procs[2].stop()
    deadline = time.monotonic() + 10
    while True:
        resp = c.chat.completions.create(model="agent-lite", messages=Q)  # type: ignore[arg-type]
        if statuses(resp)["c"] == "skipped":
            break
        assert time.monotonic() < deadline, "the stopped member was never skipped"
        time.sleep(0.2)
    member = next(m for m in council_of(resp)["members"] if m["name"] == "c")
    assert "circuit open" in member["error"] and council_of(resp)["degraded"] is True
    assert resp.choices[0].message.content == "42"
    text = httpx.get(base.replace("/v1", "/metrics")).text
    assert 'shenron_breaker_state{backend="c"} 2.0' in text
    procs.append(fake_upstream(tmp_path, "--models", "c", "--answer", "42", port=ports["c"])[0])
    deadline = time.monotonic() + 10
    while statuses(c.chat.completions.create(model="agent-lite", messages=Q))["c"] != "ok":  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "the member that came back was never asked again"
        time.sleep(0.2)


def test_a_member_loading_its_model_is_skipped_not_broken(tmp_path: Path, procs: list[Proc]) -> None:
    a, url_a = fake_upstream(tmp_path, "--models", "a", "--answer", "42")
    b, url_b = fake_upstream(tmp_path, "--models", "b", "--answer", "42")
    loading, url_l = fake_upstream(tmp_path, "--models", "l", "--loading")
    procs += [a, b, loading]
    cfg = (FAST + f'[backends.a]\nurl = "{url_a}"\nmodel = "a"\n[backends.b]\nurl = "{url_b}"\nmodel = "b"\n'
           f'[backends.l]\nurl = "{url_l}"\nmodel = "l"\nserver = "llamacpp"\n'
           '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n'
           '[models.agent-lite]\nstrategy = "council"\nmembers = ["a", "b", "l"]\nearly-decision = false\n')
    proxy, base = shenron(tmp_path, cfg)
    procs.append(proxy)
    time.sleep(1)
    resp = client(base).chat.completions.create(model="agent-lite", messages=Q)  # type: ignore[arg-type]
    member = next(m for m in council_of(resp)["members"] if m["name"] == "l")
    assert member["status"] == "skipped" and "loading" in member["error"]
    assert 'shenron_breaker_state{backend="l"} 0.0' in httpx.get(base.replace("/v1", "/metrics")).text
    assert "loading model" in httpx.get(base.replace("/v1", "/status")).text


def test_a_gpu_pool_of_one_queues_the_second_member(tmp_path: Path, procs: list[Proc]) -> None:
    a, url_a = fake_upstream(tmp_path, "--models", "a", "--answer", "42", "--latency-ms", "400")
    b, url_b = fake_upstream(tmp_path, "--models", "b", "--answer", "42", "--latency-ms", "400")
    procs += [a, b]
    cfg = (f'[gpus.gpu0]\nvram-gb = 24\nmax-concurrent = 1\n'
           f'[backends.a]\nurl = "{url_a}"\nmodel = "a"\ngpu = "gpu0"\n'
           f'[backends.b]\nurl = "{url_b}"\nmodel = "b"\ngpu = "gpu0"\n'
           '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n'
           '[models.agent-lite]\nstrategy = "council"\nmembers = ["a", "b"]\nearly-decision = false\n')
    proxy, base = shenron(tmp_path, cfg)
    procs.append(proxy)
    resp = client(base).chat.completions.create(model="agent-lite", messages=Q)  # type: ignore[arg-type]
    queued = sorted(m["queue_ms"] for m in council_of(resp)["members"])
    assert queued[0] < 100 and queued[1] >= 300, queued
    assert council_of(resp)["latency_ms"] >= 750


def test_a_flood_demotes_full_council_to_agent_lite_and_says_so(tmp_path: Path, procs: list[Proc]) -> None:
    urls = {}
    for n in ("a", "b", "c", "d"):
        p, urls[n] = fake_upstream(tmp_path, "--models", n, "--answer", "42", "--latency-ms", "600")
        procs.append(p)
    log = tmp_path / "decisions.jsonl"
    blocks = "".join(f'[backends.{n}]\nurl = "{u}"\nmodel = "{n}"\n' for n, u in urls.items())
    proxy, base = shenron(tmp_path, f'[server]\ndecision-log = "{log}"\n' + blocks +
                          '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n'
                          '[models.agent-lite]\nstrategy = "council"\nmembers = ["a", "b"]\nearly-decision = false\n'
                          '[models.full-council]\nstrategy = "council"\nmembers = ["a", "b", "c", "d"]\n'
                          'early-decision = false\ndegrade-to = "agent-lite"\nmax-inflight = 2\n')
    procs.append(proxy)
    c = client(base)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: c.chat.completions.create(model="full-council", messages=Q),  # type: ignore[arg-type]
                                range(6)))
    demoted = [council_of(r) for r in results if council_of(r).get("degraded_from")]
    kept = [council_of(r) for r in results if not council_of(r).get("degraded_from")]
    assert demoted and kept, "some requests must be demoted and some not"
    assert all(d["degraded_from"] == "full-council" and "max-inflight" in d["degraded_because"]
               and d["virtual_model"] == "agent-lite" and len(d["members"]) == 2 for d in demoted)
    assert all(len(k["members"]) == 4 for k in kept)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 6 and sum(1 for r in records if r["degraded_to"] == "agent-lite") == len(demoted)

    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text((tmp_path / next(p.name for p in tmp_path.glob("shenron-*.toml"))).read_text()
                       .replace("max-inflight = 2", "max-inflight = 100"))
    done = cli("replay", str(log), "--config", str(relaxed), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"6 request(s) replayed, {len(demoted)} would route differently" in done.stdout
    assert "degrade: agent-lite -> no" in done.stdout


def test_cascade_answers_ordinary_questions_with_one_call_and_escalates_risk(tmp_path: Path,
                                                                             procs: list[Proc]) -> None:
    log_of_members = tmp_path / "events.jsonl"
    fast, url_f = fake_upstream(tmp_path, "--models", "fast", "--answer", "Paris", "--logprob", "-0.01",
                                "--log", str(log_of_members))
    procs.append(fast)
    council = {}
    for n in ("c1", "c2", "c3"):
        p, council[n] = fake_upstream(tmp_path, "--models", n, "--answer", "Please confirm first.", "--log",
                                      str(log_of_members))
        procs.append(p)
    log = tmp_path / "decisions.jsonl"
    blocks = f'[backends.fast]\nurl = "{url_f}"\nmodel = "fast"\n' + "".join(
        f'[backends.{n}]\nurl = "{u}"\nmodel = "{n}"\n' for n, u in council.items())
    cfg = (f'[server]\ndecision-log = "{log}"\n' + blocks +
           '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["fast"]\n'
           '[models.full-council]\nstrategy = "council"\nmembers = ["c1", "c2", "c3"]\n'
           '[models.cascade]\nstrategy = "cascade"\nfirst = "ultra-instinct"\nescalate-to = "full-council"\n'
           'min-confidence = 0.95\n')
    proxy, base = shenron(tmp_path, cfg)
    procs.append(proxy)
    c = client(base)

    def asked() -> dict[int, int]:
        counts: dict[int, int] = {}
        for e in events(log_of_members):
            if e["event"] == "request":
                counts[e["port"]] = counts.get(e["port"], 0) + 1
        return counts

    resp = c.chat.completions.create(model="cascade", messages=[{"role": "user", "content": "Capital of France?"}])
    meta = council_of(resp)
    assert resp.choices[0].message.content == "Paris" and meta["escalated"] is False
    assert meta["confidence"] == pytest.approx(0.99, abs=0.001) and meta["confidence_source"] == "logprobs"
    assert sum(asked().values()) == 1, "an ordinary question costs one member call"

    resp = c.chat.completions.create(model="cascade", messages=[{"role": "user",
                                                                 "content": "Delete the production database"}])
    meta = council_of(resp)
    assert meta["escalated"] and meta["escalated_because"] == "risk-word" and "'delete'" in meta["why"]
    assert resp.choices[0].message.content == "Please confirm first."

    resp = c.chat.completions.create(model="cascade", messages=[{"role": "user", "content": "Capital of Spain?"}],
                                     extra_headers={"x-shenron-validate": "1"})
    assert council_of(resp)["escalated_because"] == "asked"

    stream = c.chat.completions.create(model="cascade", messages=[{"role": "user", "content": "Capital?"}],
                                       stream=True)
    chunks = list(stream)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Paris"

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["model"] for r in records] == ["cascade"] * 4, "one decision record per request"
    assert [r["cascade"]["escalated_because"] for r in records] == [None, "risk-word", "asked", None]

    strict = tmp_path / "strict.toml"
    strict.write_text(cfg.replace("min-confidence = 0.95", "min-confidence = 0.999"))
    done = cli("replay", str(log), "--config", str(strict), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cascade: first -> escalated (low-confidence)" in done.stdout
    assert "Capital" not in log.read_text() and "production" not in log.read_text(), "records keep no prompt"


def test_keep_alive_members_are_warmed_at_start(tmp_path: Path, procs: list[Proc]) -> None:
    seen = tmp_path / "events.jsonl"
    up, url = fake_upstream(tmp_path, "--models", "a", "--answer", "hi", "--log", str(seen))
    procs.append(up)
    proxy, _ = shenron(tmp_path, f'[backends.a]\nurl = "{url}"\nmodel = "a"\nkeep-alive = true\n'
                                 '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n')
    procs.append(proxy)
    deadline = time.monotonic() + 10
    while not any(e["event"] == "request" for e in events(seen)):
        assert time.monotonic() < deadline, "the keep-alive member was never warmed"
        time.sleep(0.1)
    body = next(e["body"] for e in events(seen) if e["event"] == "request")
    assert body["model"] == "a" and body["max_tokens"] == 1
