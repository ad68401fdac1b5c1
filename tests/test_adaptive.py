"""`samples = "adaptive"`: a council of samples asks a first wave, more only while the answer is unsettled;
the vote after each wave is reported, recorded, and replayed under another `adaptive-confidence`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from routing import config
from routing.decide.governor import DecisionLog, Governed
from routing.decide.replay import replay
from routing.models import CouncilModel
from routing.request import Request
from routing.strategies import Call, Council
from tests.fakes import chat
from tests.test_council import Sampled


async def _recorded(tmp_path: Path, vm: CouncilModel, backends: list[Sampled]) -> list[dict[str, Any]]:
    """The decision records of one governed request to `vm` per backend (ids r0, r1, ...)."""
    log = DecisionLog(str(tmp_path / "decisions.jsonl"))
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    for i, smol in enumerate(backends):
        governed = Governed("c", vm, Council("c", vm, {"smol": smol}), {}, lambda: 1,  # type: ignore[dict-item]
                            lambda: None, log)
        await governed.complete(Call(request=Request.of(body), model="c", stream=False, include_usage=False,
                                     id=f"r{i}", created=1))
    log.close()
    return [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]


def _config(line: str) -> config.Config:
    return config.parse('[backends.smol]\nurl = "http://smol.test/v1"\nmodel = "smol"\n[models.c]\n'
                        'strategy = "council"\nmembers = ["smol", "smol", "smol", "smol", "smol", "smol"]\n'
                        f'greedy-first = true\nsamples = "adaptive"\n{line}\n')


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


async def test_an_adaptive_council_s_waves_are_recorded_and_replayed_under_another_confidence(tmp_path: Path) -> None:
    """The decision record keeps the vote after each wave; `shenron replay` decides again with the new
    config's `adaptive-confidence`: a laxer one stops at an earlier wave, a stricter one wants samples that
    were never asked (unknown, not guessed)."""
    vm = CouncilModel(members=["smol"] * 6, greedy_first=True, samples="adaptive", early_decision=False)
    split, agreed = await _recorded(tmp_path, vm, [
        Sampled("smol", {seed: (text, 0.0) for seed, text in enumerate(answers, 1)})
        for answers in (["Paris", "Lyon", "Paris", "Paris", "Paris", "Paris"], ["Paris"] * 6)])
    assert split["sampling"]["waves"][-1]["asked"] > 2 and agreed["sampling"]["waves"][-1]["asked"] == 2

    def cfg(confidence: float) -> config.Config:
        return _config(f"adaptive-confidence = {confidence}")

    lax, _ = replay([split, agreed], cfg(0.3))
    asked = split["sampling"]["waves"][-1]["asked"]
    assert [(c.id, c.rule, c.before, c.after) for c in lax] == [("r0", "sampling", f"{asked} asked", "2 asked")]
    _, stats = replay([split, agreed], cfg(0.999))
    assert stats["samples unknown"] == 1  # the agreed one stopped at 0.91: a stricter rule wants unasked samples
    assert replay([split, agreed], cfg(0.9))[0] == []


class Sure(Sampled):
    """Samples that say how sure they are: each answer's tokens at one probability (its logprob confidence),
    sent only when asked for, as llama.cpp's server does."""

    def __init__(self, name: str, by_seed: dict[int, tuple[str, float]]) -> None:
        super().__init__(name, {seed: (text, 0.0) for seed, (text, _) in by_seed.items()})
        self.sure = {seed: p for seed, (_, p) in by_seed.items()}

    async def respond(self, body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        out = await super().respond(body, model)
        if body.get("logprobs"):
            text, p = out["choices"][0]["message"]["content"], self.sure[body["seed"]]
            out["choices"][0]["logprobs"] = {"content": [{"token": w, "logprob": math.log(p), "bytes": None,
                                                          "top_logprobs": []} for w in text.split()]}
        return out


def _confident_vm(confident: float | None = 0.8) -> CouncilModel:
    return CouncilModel(members=["smol"] * 6, greedy_first=True, samples="adaptive", early_decision=False,
                        confident_first=confident)


async def test_a_first_answer_the_model_is_sure_of_stands_alone_and_an_unsure_one_asks_more() -> None:
    """`confident-first`: the greedy answer is asked alone, for logprobs; sure enough, it is the answer after
    one call (the client, who asked for no logprobs, gets none); less sure, or with no logprobs to read,
    the council goes on in waves, and the first wave's confidence is in the report."""
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}

    async def run(smol: Sampled, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return chat(await Council("c", _confident_vm(), {"smol": smol}).complete(  # type: ignore[dict-item]
            Call(request=Request.of(body | (extra or {})), model="c", stream=False, include_usage=False, id="x",
                 created=1)))

    sure = Sure("smol", {1: ("Paris is the capital.", 0.9)} | {s: ("Lyon", 0.9) for s in range(2, 7)})
    out = await run(sure)
    meta = out["council"]
    assert len(sure.bodies) == 1 and sure.bodies[0]["logprobs"] is True and sure.bodies[0]["top_logprobs"] == 1
    assert meta["samples_asked"] == 1 and meta["sampling_stopped"].startswith("confident: ")
    assert meta["decided_by"] == "confident-first"
    assert out["choices"][0]["message"]["content"] == "Paris is the capital."
    assert out["choices"][0].get("logprobs") is None and meta["sampling_waves"][0]["confidence"] == 0.9

    unsure = Sure("smol", {1: ("Paris", 0.5)} | {s: ("Lyon", 0.9) for s in range(2, 7)})
    out = await run(unsure)
    meta = out["council"]
    assert len(unsure.bodies) > 1 and meta["sampling_waves"][0] == {"asked": 1, "weights": [1.5], "confidence": 0.5}
    assert out["choices"][0]["message"]["content"] == "Lyon"
    assert not meta["sampling_stopped"].startswith("confident")

    silent = Sampled("smol", {s: ("Paris", 0.0) for s in range(1, 7)})  # sends no logprobs: never "confident"
    meta = (await run(silent))["council"]
    assert len(silent.bodies) > 1 and meta["sampling_stopped"].startswith("settled")

    sure = Sure("smol", {s: ("Paris", 0.9) for s in range(1, 7)})
    out = await run(sure, {"logprobs": True})
    assert len(sure.bodies) == 1 and out["choices"][0]["logprobs"]["content"][0]["token"] == "Paris"


async def test_a_confident_first_answer_is_replayed_under_another_threshold(tmp_path: Path) -> None:
    """The first wave's confidence is in the decision record: a stricter `confident-first` wants samples never
    asked (unknown), a laxer one stops an unsure record at its first answer, and a config without it
    (whose first wave is two) cannot be told from a record whose first wave was one."""
    sure, unsure = await _recorded(tmp_path, _confident_vm(), [
        Sure("smol", {1: ("Paris", first)} | {s: ("Lyon", 0.9) for s in range(2, 7)}) for first in (0.9, 0.5)])
    assert sure["sampling"]["waves"] == [{"asked": 1, "weights": [1.5], "confidence": 0.9}]
    assert sure["sampling"]["confident_first"] == 0.8
    asked = unsure["sampling"]["waves"][-1]["asked"]
    assert asked > 1

    assert replay([sure, unsure], _config("confident-first = 0.8"))[0] == []
    changes, stats = replay([sure, unsure], _config("confident-first = 0.4"))
    assert [(c.id, c.before, c.after) for c in changes] == [("r1", f"{asked} asked", "1 asked")]
    _, stats = replay([sure, unsure], _config("confident-first = 0.95"))
    assert stats["samples unknown"] == 1
    _, stats = replay([sure, unsure], _config(""))
    assert stats["samples unknown"] == 2


def test_confident_first_is_checked_at_load() -> None:
    base = ('[backends.smol]\nurl = "http://smol.test/v1"\nmodel = "smol"\n[models.c]\nstrategy = "council"\n'
            'members = ["smol", "smol"]\n')
    with pytest.raises(config.ConfigError, match="confident-first`: must be in"):
        config.parse(base + 'samples = "adaptive"\nconfident-first = 1.5\n')
    with pytest.raises(config.ConfigError, match="confident-first`: needs samples"):
        config.parse(base + "confident-first = 0.8\n")
