"""Cloud spend per request: every member that spends is charged; once the budget is spent cloud members are skipped."""

from __future__ import annotations

import pytest

from routing.config import BackendConfig
from routing.decide.budget import EXHAUSTED, Budget
from routing.errors import AllMembersFailed
from routing.models import CouncilModel
from routing.strategies import Council, Single
from tests.fakes import FakeBackend, chat
from tests.test_council import call

PRICED = {"price_in": 1000.0, "price_out": 2000.0}  # 10 in + 5 out tokens: $0.02 a call


def cloud(name: str, fail: str | None = None) -> FakeBackend:
    b = FakeBackend(name, fail=fail)
    b.cfg = BackendConfig(url="https://api.cloud.test/v1", model=b.model, **PRICED)  # type: ignore[arg-type]
    return b


def local(name: str, fail: str | None = None) -> FakeBackend:
    b = FakeBackend(name, fail=fail)
    b.cfg = BackendConfig(url="http://127.0.0.1:11434/v1", model=b.model, **PRICED)  # type: ignore[arg-type]
    return b


def test_who_counts_as_cloud() -> None:
    def is_cloud(url: str, **kw: bool) -> bool:
        return BackendConfig(url=url, model="m", **kw).is_cloud  # type: ignore[arg-type]

    assert is_cloud("https://api.openai.com/v1") and is_cloud("https://api.anthropic.com")
    assert not is_cloud("http://127.0.0.1:8080/v1") and not is_cloud("http://localhost:11434/v1")
    assert not is_cloud("http://192.168.1.20:8000/v1") and not is_cloud("http://gpu-box:8000/v1")
    assert not is_cloud("http://ollama.lan:11434/v1")
    assert is_cloud("http://10.0.0.5:8000/v1", cloud=True)


async def test_each_cloud_fallback_that_spends_is_charged_and_the_next_is_skipped() -> None:
    members = {"gpt": cloud("gpt"), "claude": cloud("claude"), "goku": local("goku")}
    budget = Budget(0.015)  # enough to start one cloud call, not a second
    c = call()
    c.budget = budget
    out = chat(await Single("ultra-instinct", ["gpt"], members).complete(c))
    assert budget.spent_usd == pytest.approx(0.02) and out["council"]["cost_usd"] == pytest.approx(0.02)
    c2 = call()
    c2.budget = budget
    out = chat(await Single("ultra-instinct", ["claude", "goku"], members).complete(c2))
    by_name = {m["name"]: m for m in out["council"]["members"]}
    assert by_name["claude"]["status"] == "skipped" and by_name["claude"]["error"] == EXHAUSTED
    assert by_name["goku"]["status"] == "ok" and by_name["goku"]["cost_usd"] == pytest.approx(0.02)
    assert members["claude"].history == []  # never asked
    assert budget.spent_usd == pytest.approx(0.02)  # a local member's cost is not cloud spend
    assert out["council"]["degraded"] is True


async def test_a_council_skips_its_cloud_members_when_nothing_is_left() -> None:
    members = [local("goku"), local("vegeta"), cloud("gpt")]
    backends = {b.name: b for b in members}
    council = Council("full-council", CouncilModel(members=list(backends), early_decision=False), backends)  # type: ignore[arg-type]
    c = call()
    c.budget = Budget(0.0)
    out = chat(await council.complete(c))
    status = {m["name"]: m["status"] for m in out["council"]["members"]}
    assert status == {"goku": "ok", "vegeta": "ok", "gpt": "skipped"}
    assert backends["gpt"].history == []
    only_cloud = Council("c", CouncilModel(members=["gpt"], min_answers=1), {"gpt": cloud("gpt")})  # type: ignore[dict-item]
    c = call()
    c.budget = Budget(0.0)
    with pytest.raises(AllMembersFailed, match="cloud budget is spent"):
        chat(await only_cloud.complete(c))
