"""The code ladder with scripted coders and validators: checks, scores, retries, the budget, the answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing import config
from routing.decide.budget import Budget
from routing.errors import AllMembersFailed
from routing.models import EscalateModel, Rung
from routing.request import Request
from routing.router import Router
from routing.strategies import Call
from routing.strategies.escalate import Escalate
from tests.fakes import ScriptedBackend, chat, chat_stream
from tests.procs import ROOT

ASK = [{"role": "user", "content": "Write a Python function add(a, b) that returns their sum."}]
BROKEN = "Here you go:\n```python\ndef add(a, b)\n    return a + b\n```"
GOOD = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"


def verdict(score: float, *issues: str) -> str:
    return json.dumps({"score": score, "issues": list(issues)})


def call(stream: bool = False, budget: Budget | None = None, **extras: Any) -> Call:
    return Call(request=Request.of({"model": "codegen-escalate", "messages": ASK, "temperature": 0.2}),
                model="codegen-escalate",
                stream=stream, include_usage=True, id="chatcmpl-1", created=1, extras=extras,
                budget=budget or Budget())


def ladder(vm: EscalateModel, *backends: ScriptedBackend) -> Escalate:
    return Escalate("codegen-escalate", vm, {b.name: b for b in backends})


async def test_a_failed_check_scores_zero_and_its_output_goes_into_the_next_attempt(tmp_path: Path) -> None:
    coder = ScriptedBackend("coder", [BROKEN, GOOD])
    v1 = ScriptedBackend("v1", [verdict(9)])
    v2 = ScriptedBackend("v2", [verdict(8, "no docstring")])
    vm = EscalateModel(rungs=[Rung(coder="coder", attempts=3, validators=["v1", "v2"])])
    out = chat(await ladder(vm, coder, v1, v2).complete(call()))
    its = out["council"]["iterations"]
    assert [(i["compiled"], i["score"]) for i in its] == [(False, 0.0), (True, 8.5)]
    assert "SyntaxError" in its[0]["check_output"] and its[0]["scores"] == {}
    assert len(v1.bodies) == 1, "validators are not asked about code that does not compile"
    second = coder.bodies[1]["messages"]
    assert "SyntaxError" in second[-1]["content"] and "def add(a, b)" in second[-2]["content"]
    assert out["choices"][0]["message"]["content"] == GOOD
    council = out["council"]
    assert council["decided_by"] == "passed" and council["score"] == 8.5 and council["winner"] == "coder"
    assert its[1]["scores"] == {"v1": 9.0, "v2": 8.0} and its[1]["issues"] == ["no docstring"]
    assert council["rungs"][0] == {"rung": 1, "coder": "coder", "thinking": "solo", "status": "passed",
                                   "attempts": 2}


async def test_the_ladder_climbs_when_a_rung_cannot_pass_and_carries_the_issues() -> None:
    small = ScriptedBackend("small", [GOOD])
    big = ScriptedBackend("big", [GOOD.replace("a + b", "sum((a, b))")])
    va = ScriptedBackend("va", lambda body: verdict(9) if "sum((a, b))" in body["messages"][-1]["content"]
                         else verdict(5, "use sum for style"))
    vm = EscalateModel(rungs=[Rung(coder="small", attempts=2, validators=["va"]), Rung(coder="big", attempts=2)])
    out = chat(await ladder(vm, small, big, va).complete(call()))
    its = out["council"]["iterations"]
    assert [(i["coder"], i["score"]) for i in its] == [("small", 5.0), ("small", 5.0), ("big", 9.0)]
    assert "use sum for style" in big.bodies[0]["messages"][-1]["content"]
    assert [r["status"] for r in out["council"]["rungs"]] == ["failed", "passed"]


async def test_disagreeing_and_nonsense_validators_with_the_seed_weights() -> None:
    coder = ScriptedBackend("coder", [GOOD])
    vals = {
        "phi4": verdict(9), "gemma3": verdict(7, "edge case: None"), "qwen-coder": "I think it is fine!",
        "deepseek-sec": verdict(8), "llama": "{'score': banana}",
    }
    backends = [coder] + [ScriptedBackend(n, [t]) for n, t in vals.items()]
    weights = {"phi4": 0.20, "gemma3": 0.25, "qwen-coder": 0.20, "deepseek-sec": 0.20, "llama": 0.15}
    vm = EscalateModel(rungs=[Rung(coder="coder", validators=list(vals))], validator_weights=weights,
                       pass_score=7.5)
    out = chat(await ladder(vm, *backends).complete(call()))
    it = out["council"]["iterations"][0]
    assert set(it["invalid"]) == {"qwen-coder", "llama"} and "no usable score" in it["invalid"]["qwen-coder"]
    assert it["scores"] == {"phi4": 9.0, "gemma3": 7.0, "deepseek-sec": 8.0}
    assert it["score"] == round((0.2 * 9 + 0.25 * 7 + 0.2 * 8) / 0.65, 2)
    assert out["council"]["decided_by"] == "passed"


async def test_when_nothing_passes_the_best_code_comes_back_with_a_warning() -> None:
    coder = ScriptedBackend("coder", [GOOD, BROKEN, GOOD.replace("a + b", "b + a")])
    v = ScriptedBackend("v", [verdict(6, "needs tests"), verdict(4, "worse")])
    vm = EscalateModel(rungs=[Rung(coder="coder", attempts=5, validators=["v"])], max_iterations=3)
    out = chat(await ladder(vm, coder, v).complete(call()))
    council = out["council"]
    assert len(council["iterations"]) == 3 and council["decided_by"] == "best-effort" and council["degraded"]
    text = out["choices"][0]["message"]["content"]
    assert text.startswith(GOOD) and "did not reach the bar" in text and "6 of 10" in text
    assert "needs tests" in text and council["score"] == 6.0


async def test_the_cloud_budget_stops_the_cloud_rungs_and_says_so() -> None:
    local = ScriptedBackend("local", [BROKEN])
    sonnet = ScriptedBackend("sonnet", [GOOD], url="https://api.anthropic.com/v1", price_in=3.0, price_out=15.0)
    opus = ScriptedBackend("opus", [GOOD], url="https://api.anthropic.com/v1", price_in=15.0, price_out=75.0)
    v = ScriptedBackend("v", [verdict(9)])
    rungs = [Rung(coder="local", attempts=2, validators=["v"]), Rung(coder="sonnet", attempts=2),
             Rung(coder="opus", attempts=2)]
    vm = EscalateModel(rungs=rungs, cloud_budget_usd=0.02, expected_tokens=1000)
    out = chat(await ladder(vm, local, sonnet, opus, v).complete(call()))
    council = out["council"]
    statuses = [(r["coder"], r["status"]) for r in council["rungs"]]
    # sonnet: ~0.015 per attempt fits once in 0.02; opus (~0.075) never fits
    assert statuses == [("local", "failed"), ("sonnet", "passed"), ("opus", "not reached")]
    assert len(sonnet.bodies) == 1 and not opus.bodies
    assert council["cost_usd"] <= 0.02

    tight = EscalateModel(rungs=rungs, cloud_budget_usd=0.001)
    local2, sonnet2, opus2 = (ScriptedBackend(b.name, b.script, url=b.cfg.url, price_in=b.cfg.price_in,
                                              price_out=b.cfg.price_out) for b in (local, sonnet, opus))
    out = chat(await ladder(tight, local2, sonnet2, opus2, ScriptedBackend("v", [verdict(9)])).complete(call()))
    rungs_out = out["council"]["rungs"]
    assert [r["status"] for r in rungs_out] == ["failed", "skipped", "skipped"]
    assert "cloud budget" in rungs_out[1]["reason"] and not sonnet2.bodies and not opus2.bodies
    assert out["council"]["cost_usd"] == 0.0 and "did not reach the bar" in out["choices"][0]["message"]["content"]


async def test_the_keys_budget_also_caps_the_ladder() -> None:
    sonnet = ScriptedBackend("sonnet", [GOOD], url="https://api.anthropic.com/v1", price_in=3.0, price_out=15.0)
    v = ScriptedBackend("v", [verdict(9)])
    vm = EscalateModel(rungs=[Rung(coder="sonnet", validators=["v"])], cloud_budget_usd=1.0)
    with pytest.raises(AllMembersFailed) as e:
        chat(await ladder(vm, sonnet, v).complete(call(budget=Budget(0.0001))))
    assert "cloud budget" in str(e.value) and not sonnet.bodies


async def test_generated_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"```python\nimport os\nopen({str(marker)!r}, 'w').write('ran')\nos.system('touch {marker}')\n```"
    coder = ScriptedBackend("coder", [evil])
    v = ScriptedBackend("v", [verdict(9)])
    out = chat(await ladder(EscalateModel(rungs=[Rung(coder="coder", validators=["v"])]), coder, v).complete(call()))
    assert out["council"]["iterations"][0]["compiled"] is True
    assert not marker.exists()


async def test_duo_debate_rung_takes_its_critic_from_the_validators() -> None:
    coder = ScriptedBackend("coder", [BROKEN, GOOD])
    critic = ScriptedBackend("critic", lambda body: verdict(9) if body["messages"][0]["role"] == "system" and
                             "reviewer" in body["messages"][0]["content"] and "JSON" in body["messages"][0]["content"]
                             else "The signature lacks a colon.")
    vm = EscalateModel(rungs=[Rung(coder="coder", thinking="duo-debate", validators=["critic"])])
    out = chat(await ladder(vm, coder, critic).complete(call()))
    it = out["council"]["iterations"][0]
    assert it["thinking"] == "duo-debate" and it["compiled"] is True and it["score"] == 9.0
    roles = [m["role"] for m in out["council"]["members"]]
    assert roles == ["proposer", "critic", "refiner", "validator"]
    assert "lacks a colon" in coder.bodies[1]["messages"][-1]["content"]


async def test_the_language_comes_from_the_request_when_the_fence_has_none() -> None:
    coder = ScriptedBackend("coder", ["```\nfunction f(a { return a; }\n```", "```\nfunction f(a) { return a; }\n```"])
    v = ScriptedBackend("v", [verdict(9)])
    out = chat(await ladder(EscalateModel(rungs=[Rung(coder="coder", attempts=2, validators=["v"])]), coder, v) \
        .complete(call(language="javascript")))
    its = out["council"]["iterations"]
    assert its[0]["language"] == "javascript"
    if shutil.which("node"):
        assert [i["compiled"] for i in its] == [False, True]
    assert "```javascript" in coder.bodies[0]["messages"][0]["content"]


async def test_streaming_shows_each_attempt_as_reasoning_then_the_code() -> None:
    coder = ScriptedBackend("coder", [BROKEN, GOOD])
    v = ScriptedBackend("v", [verdict(8.4)])
    vm = EscalateModel(rungs=[Rung(coder="coder", attempts=2, validators=["v"])])
    chunks = [c async for c in chat_stream(ladder(vm, coder, v).stream(call(stream=True)))]
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "attempt 1 · coder · solo · does not compile · score 0\n" in reasoning
    assert "attempt 2 · coder · solo · compiles · score 8.4\n" in reasoning
    assert content.startswith("```python\ndef add(a: int")
    assert chunks[-2]["usage"]["total_tokens"] > 0 and chunks[-1]["council"]["decided_by"] == "passed"
    first_reasoning = next(i for i, c in enumerate(chunks) if c["choices"] and
                           c["choices"][0]["delta"].get("reasoning_content"))
    first_content = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert first_reasoning < first_content


def test_the_issues_config_parses() -> None:
    cfg = config.load(ROOT / "examples" / "codegen.toml")
    vm = cfg.models["codegen-escalate"]
    assert isinstance(vm, EscalateModel) and vm.cloud_budget_usd == 0.5 and vm.pass_score == 8.0
    assert [(r.coder, r.thinking, r.attempts) for r in vm.rungs] == [
        ("deepseek-coder", "solo", 2), ("qwen-coder", "duo-debate", 2), ("codestral", "trio-consensus", 2),
        ("claude-sonnet", "debate", 2), ("claude-opus", "vote", 2)]
    assert vm.validator_weights == {"phi4": 0.2, "gemma3": 0.25, "qwen-coder": 0.2, "deepseek-sec": 0.2, "llama": 0.15}
    ladder = Router(cfg, httpx.AsyncClient()).virtual["codegen-escalate"].inner  # type: ignore[attr-defined]
    assert isinstance(ladder, Escalate)
    assert ladder.validators[3] == ladder.validators[2] == ["phi4", "gemma3", "qwen-coder", "deepseek-sec", "llama"]


@pytest.mark.parametrize("rungs, error", [
    ('[{ coder = "a" }]', "rungs[0].validators`: the first rung needs validators"),
    ('[{ coder = "nope", validators = ["a"] }]', "rungs[0].coder`: unknown backend 'nope'"),
    ('[{ coder = "a", validators = ["a"], thinking = "yolo" }]', "thinking"),
    ('[{ coder = "a", validators = ["a"], attempts = 0 }]', "attempts`: must be >= 1"),
])
def test_escalate_config_mistakes_are_named(rungs: str, error: str) -> None:
    text = (f'[backends.a]\nurl = "http://127.0.0.1:1/v1"\nmodel = "a"\n'
            f'[models.c]\nstrategy = "escalate"\nrungs = {rungs}\n')
    with pytest.raises(config.ConfigError) as e:
        config.parse(text)
    assert error in str(e.value)
