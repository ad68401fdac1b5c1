"""Guards, GPU pools and the council's use of them, in process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import respx

from routing import config
from routing.config import BackendConfig
from routing.decide import spend
from routing.decide.budget import Budget
from routing.errors import MemberFailure, UpstreamStatus
from routing.member import Members
from routing.models import CouncilModel
from routing.request import Request
from routing.strategies import Call, Council
from routing.upstream.guard import Guard, Pool
from routing.upstream.health import Health
from tests.fakes import FakeBackend, chat


def guard(**kw: Any) -> Guard:
    now = [0.0]
    g = Guard("a", BackendConfig(url="http://a.test/v1", model="m"), clock=lambda: now[0], **kw)
    g.now = now  # type: ignore[attr-defined]
    return g


async def fail(g: Guard, exc: MemberFailure) -> None:
    try:
        async with g.call():
            raise exc
    except MemberFailure:
        pass


async def test_repeated_failures_open_the_breaker_and_time_half_opens_it() -> None:
    g = guard(threshold=3, open_s=10)
    for _ in range(3):
        assert g.usable() is None
        await fail(g, MemberFailure("a", "connection refused"))
    assert g.state == "open" and "connection refused" in (g.usable() or "")
    g.now[0] = 11  # type: ignore[attr-defined]
    assert g.state == "half-open" and g.usable() is None
    async with g.call():
        pass
    assert g.state == "closed"


async def test_a_success_between_failures_starts_the_count_again() -> None:
    """Failures in a row open the breaker; a success between them resets the count and the last error."""
    g = guard(threshold=3)
    for _ in range(2):
        await fail(g, MemberFailure("a", "connection refused"))
    assert g.breaker.failures == 2 and g.last_error
    async with g.call():
        pass
    assert g.breaker.failures == 0 and g.last_error is None
    for _ in range(2):
        await fail(g, MemberFailure("a", "connection refused"))
    assert g.state == "closed"
    await fail(g, MemberFailure("a", "connection refused"))
    assert g.state == "open"


async def test_loading_and_client_errors_do_not_count_against_the_backend() -> None:
    g = guard(threshold=1)
    await fail(g, UpstreamStatus("a", 400, "bad temperature", "invalid_request_error", None, None))
    assert g.state == "closed"
    await fail(g, UpstreamStatus("a", 503, "Loading model", "unavailable_error", None, None))
    assert g.state == "closed" and g.loading and "loading" in (g.usable() or "")
    async with g.call():
        pass
    assert not g.loading


async def test_a_pool_of_one_queues_the_second_request_in_order() -> None:
    pool = Pool("gpu0", 1)
    order: list[str] = []
    waits: dict[str, int] = {}

    async def work(name: str) -> None:
        async with pool.slot() as waited:
            waits[name] = waited
            order.append(name)
            await asyncio.sleep(0.1)

    await asyncio.gather(work("a"), work("b"), work("c"))
    assert order == ["a", "b", "c"] and pool.inflight == 0
    assert waits["a"] < 50 and 80 <= waits["b"] < 400 and waits["c"] >= 180


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    pool = Pool("gpu0", 1)
    async with pool.slot():
        waiter = asyncio.create_task(pool.slot().__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    async with pool.slot() as waited:
        assert waited < 50 and pool.inflight == 1
    assert pool.inflight == 0


async def test_the_council_skips_a_member_whose_breaker_is_open_and_says_why() -> None:
    backends = {n: FakeBackend(n, "42") for n in ("a", "b", "c")}
    dead = Guard("c", backends["c"].cfg, threshold=1)
    dead.record(False, "connection refused")
    backends["c"].guard = dead  # type: ignore[attr-defined]
    council = Council("agent-lite", CouncilModel(members=["a", "b", "c"], early_decision=False), backends)
    out = chat(await council.complete(Call(request=Request.of({"messages": [{"role": "user", "content": "x"}]}),
                                           model="agent-lite",
                                      stream=False, include_usage=False, id="1", created=1)))
    c = {m["name"]: m for m in out["council"]["members"]}
    assert c["c"]["status"] == "skipped" and "circuit open" in c["c"]["error"] and not backends["c"].bodies
    assert out["council"]["degraded"] is True


CFG = """
[gpus.gpu0]
vram-gb = 24
max-concurrent = 1

[backends.ollama]
url = "http://ollama.test:11434/v1"
model = "qwen2.5:7b"
gpu = "gpu0"
keep-alive = true

[backends.llama]
url = "http://llama.test/v1"
model = "tiny"
server = "llamacpp"
gpu = "gpu0"

[models.ultra-instinct]
strategy = "single"
members = ["ollama"]
"""


async def test_probes_per_server_kind_and_cold_starts() -> None:
    cfg = config.parse(CFG)
    async with httpx.AsyncClient() as client:
        from routing.upstream.kinds import build
        backends = {n: build(n, b, client) for n, b in cfg.backends.items()}
        health = Health(cfg, backends, client)
        with respx.mock(assert_all_called=False) as m:
            m.get("http://ollama.test:11434/api/version").respond(json={"version": "0.12.0"})
            m.get("http://ollama.test:11434/api/ps").respond(json={"models": [{"name": "llama3.2:3b"}]})
            m.get("http://llama.test/health").respond(503, json={"error": {"code": 503, "message": "Loading model"}})
            generate = m.post("http://ollama.test:11434/api/generate").respond(json={"done": True})
            chat = m.post("http://ollama.test:11434/v1/chat/completions").respond(json={
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})
            await health.probe_all()
            assert health.guards["ollama"].loaded is False and health.guards["llama"].loading
            assert "loading" in (health.guards["llama"].usable() or "")
            made = spend.begin()
            members = Members(backends, Budget())
            await members.ask("ollama", Request.of({"messages": [{"role": "user", "content": "hi"}]}))
            assert made[0].notes["cold_start"] is True and made[0].notes["queue_ms"] >= 0
            assert members.reports[0].cold_start and members.reports[0].queue_ms is not None
            assert health.guards["ollama"].loaded is True
            await health.warm_all()
            sent = generate.calls[0].request
            assert b'"keep_alive"' in sent.content and b'"qwen2.5:7b"' in sent.content
            assert chat.call_count == 1


async def test_each_report_carries_its_own_calls_notes() -> None:
    """Notes were keyed by member name: every call of a member asked twice in a debate reported the same
    cold start. The proposer's call loaded the model; the refiner's, by the same member, did not."""
    from routing.models import DuoDebateModel
    from routing.strategies import Call, ThinkingStrategy

    cfg = config.parse('[backends.lead]\nurl = "http://lead.test/v1"\nmodel = "l"\n'
                       '[backends.critic]\nurl = "http://critic.test/v1"\nmodel = "c"\n')
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    async with httpx.AsyncClient() as client:
        from routing.upstream.kinds import build
        backends = {n: build(n, b, client) for n, b in cfg.backends.items()}
        backends["lead"].guard.loaded = False  # not loaded: the first call is a cold start
        with respx.mock() as m:
            m.post("http://lead.test/v1/chat/completions").respond(json=answer)
            m.post("http://critic.test/v1/chat/completions").respond(json=answer)
            spend.begin()
            s = ThinkingStrategy("duo", DuoDebateModel(members=["lead", "critic"]), backends)
            out = chat(await s.complete(Call(request=Request.of({"messages": [{"role": "user", "content": "6 x 7?"}]}),
                                             model="duo",
                                        stream=False, include_usage=False, id="x", created=0)))
    members = out["council"]["members"]
    assert [(m["name"], m["role"]) for m in members] == [("lead", "proposer"), ("critic", "critic"),
                                                         ("lead", "refiner")]
    assert [m.get("cold_start", False) for m in members] == [True, False, False]
