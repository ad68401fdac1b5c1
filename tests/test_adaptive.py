"""`samples = "adaptive"`: a council of samples asks a first wave, more only while the answer is unsettled;
the vote after each wave is reported, recorded, and replayed under another `adaptive-confidence`."""

from __future__ import annotations

from typing import Any

from routing.models import CouncilModel
from routing.request import Request
from routing.strategies import Call, Council
from tests.fakes import chat
from tests.test_council import Sampled


async def test_an_adaptive_council_asks_more_samples_only_while_the_answer_is_unsettled() -> None:
    """Greedy first and one sample agree: settled, four samples never asked. They disagree: more are asked,
    a wave at a time, until the leader is settled or cannot be overtaken; the report says how many and why."""
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}

    async def run(by_seed: dict[int, str]) -> tuple[dict[str, Any], Sampled]:
        smol = Sampled("smol", {seed: (text, 0.0) for seed, text in by_seed.items()})
        vm = CouncilModel(members=["smol"] * 6, greedy_first=True, samples="adaptive", early_decision=False)
        out = chat(await Council("c", vm, {"smol": smol}).complete(  # type: ignore[dict-item]
            Call(request=Request.of(body), model="c", stream=False, include_usage=False, id="x", created=1)))
        return out, smol

    agreed, smol = await run({s: "Paris" for s in range(1, 7)})
    meta = agreed["council"]
    assert len(smol.bodies) == 2 and meta["samples_asked"] == 2 and meta["sampling_stopped"].startswith("settled")
    assert [m["name"] for m in meta["members"]] == ["smol#1", "smol#2"]  # the others were never asked
    split, smol = await run({1: "Paris", 2: "Lyon", 3: "Paris", 4: "Paris", 5: "Lyon", 6: "Lyon"})
    meta = split["council"]
    assert 2 < len(smol.bodies) <= 6 and meta["samples_asked"] == len(smol.bodies)
    assert split["choices"][0]["message"]["content"] == "Paris" and meta["sampling_stopped"]
    everyone, smol = await run({1: "Paris", 2: "Lyon", 3: "Rome", 4: "Nice", 5: "Lyon", 6: "Paris"})
    assert len(smol.bodies) == 6 and everyone["council"]["sampling_stopped"] in (
        "every sample was asked", "the samples left could not change the winner")


async def test_an_adaptive_council_s_waves_are_recorded_and_replayed_under_another_confidence(tmp_path: Any) -> None:
    """The decision record keeps the vote after each wave; `shenron replay` decides again with the new
    config's `adaptive-confidence`: a laxer one stops at an earlier wave, a stricter one wants samples that
    were never asked (unknown, not guessed)."""
    import json

    from routing import config
    from routing.decide.governor import DecisionLog, Governed
    from routing.decide.replay import replay

    log = DecisionLog(str(tmp_path / "decisions.jsonl"))
    vm = CouncilModel(members=["smol"] * 6, greedy_first=True, samples="adaptive", early_decision=False)
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    for i, answers in enumerate((["Paris", "Lyon", "Paris", "Paris", "Paris", "Paris"], ["Paris"] * 6)):
        smol = Sampled("smol", {seed: (text, 0.0) for seed, text in enumerate(answers, 1)})
        governed = Governed("c", vm, Council("c", vm, {"smol": smol}), {}, lambda: 1,  # type: ignore[dict-item]
                            lambda: None, log)
        await governed.complete(Call(request=Request.of(body), model="c", stream=False, include_usage=False,
                                     id=f"r{i}", created=1))
    log.close()
    split, agreed = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert split["sampling"]["waves"][-1]["asked"] > 2 and agreed["sampling"]["waves"][-1]["asked"] == 2

    def cfg(confidence: float) -> config.Config:
        return config.parse('[backends.smol]\nurl = "http://smol.test/v1"\nmodel = "smol"\n[models.c]\n'
                            'strategy = "council"\nmembers = ["smol", "smol", "smol", "smol", "smol", "smol"]\n'
                            f'greedy-first = true\nsamples = "adaptive"\nadaptive-confidence = {confidence}\n')

    lax, _ = replay([split, agreed], cfg(0.3))
    asked = split["sampling"]["waves"][-1]["asked"]
    assert [(c.id, c.rule, c.before, c.after) for c in lax] == [("r0", "sampling", f"{asked} asked", "2 asked")]
    _, stats = replay([split, agreed], cfg(0.999))
    assert stats["samples unknown"] == 1  # the agreed one stopped at 0.91: a stricter rule wants unasked samples
    assert replay([split, agreed], cfg(0.9))[0] == []
