"""The governor in front of every virtual model: the decision record keeps the load each decision saw,
and a model that neither degrades nor records reads no load at all."""

from __future__ import annotations

import json
from pathlib import Path

from routing.decide.governor import DecisionLog, Governed
from routing.models import SingleModel
from routing.request import Request
from routing.strategies import Call, Single
from tests.fakes import FakeBackend

BODY = {"model": "u", "messages": [{"role": "user", "content": "What is the capital of France?"}]}


async def _ask(governed: Governed, n: int) -> None:
    for i in range(n):
        await governed.complete(Call(request=Request.of(BODY), model="u", stream=False, include_usage=False,
                                     id=f"r{i}", created=1))


async def test_the_decision_record_keeps_the_load_the_decision_saw(tmp_path: Path) -> None:
    log = DecisionLog(str(tmp_path / "decisions.jsonl"))
    smol = FakeBackend("smol", "Paris")
    governed = Governed("u", SingleModel(members=["smol"]), Single("u", ["smol"], {"smol": smol}),  # type: ignore[dict-item]
                        {}, lambda: 3, lambda: 42.0, log)
    await _ask(governed, 2)
    log.close()
    first, second = [json.loads(line)["load"] for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert first == {"inflight": 0, "p95_ms": None, "healthy_members": 3, "mem_available_pct": 42.0}
    assert second["p95_ms"] is not None and second["p95_ms"] >= 0, "the first request's latency, seen by the second"


async def test_a_model_that_neither_degrades_nor_records_reads_no_load() -> None:
    reads: list[str] = []
    smol = FakeBackend("smol", "Paris")

    def health() -> int:
        reads.append("health")
        return 1

    def memory() -> float | None:
        reads.append("memory")
        return None

    governed = Governed("u", SingleModel(members=["smol"]), Single("u", ["smol"], {"smol": smol}),  # type: ignore[dict-item]
                        {}, health, memory, DecisionLog("off"))
    await _ask(governed, 3)
    assert reads == [] and len(smol.bodies) == 3
