"""cascade with in-process fakes: each escalation rule, the one that does not fire, and what it costs."""

from __future__ import annotations

import math
from typing import Any

import pytest

from routing.decide.budget import Budget
from routing.models import CascadeModel, CouncilModel
from routing.request import Request
from routing.strategies import Call, Council, Single
from routing.strategies.cascade import Cascade
from tests.fakes import FakeBackend, ScriptedBackend, chat, chat_stream


class Sure(FakeBackend):
    """Answers with token logprobs when asked for them."""

    def __init__(self, name: str, answer: str, p: float) -> None:
        super().__init__(name, answer)
        self.p = p

    async def respond(self, body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        out = await super().respond(body, model)
        if body.get("logprobs"):
            out["choices"][0]["logprobs"] = {"content": [{"token": t, "logprob": math.log(self.p)}
                                                         for t in self.answer.split()]}
        return out


def build(first: FakeBackend, second_opinion: FakeBackend | None = None,
          **kw: Any) -> tuple[Cascade, dict[str, FakeBackend]]:
    council = {n: FakeBackend(n, "The answer is 42.") for n in ("c1", "c2", "c3")}
    backends: dict[str, Any] = {"fast": first, **council}
    if second_opinion is not None:
        backends["other"] = second_opinion
    vm = CascadeModel(first="ultra-instinct", escalate_to="full-council",
                      second_opinion="other" if second_opinion else None, **kw)
    cascade = Cascade("cascade", vm, backends)
    cascade.bind({"ultra-instinct": Single("ultra-instinct", ["fast"], backends),
                  "full-council": Council("full-council", CouncilModel(members=list(council), early_decision=False),
                                          backends)})
    return cascade, backends


def call(text: str, stream: bool = False, **extras: Any) -> Call:
    return Call(request=Request.of({"model": "cascade", "messages": [{"role": "user", "content": text}]}),
                model="cascade",
                stream=stream, include_usage=False, id="chatcmpl-1", created=1, extras=extras)


async def test_an_ordinary_question_costs_one_call() -> None:
    cascade, b = build(Sure("fast", "Paris", 0.99))
    out = chat(await cascade.complete(call("What is the capital of France?")))
    assert out["choices"][0]["message"]["content"] == "Paris"
    assert out["choices"][0]["logprobs"] is None, "logprobs the client did not ask for are not returned"
    c = out["council"]
    assert c["escalated"] is False and c["confidence"] == 0.99 and c["confidence_source"] == "logprobs"
    assert len(b["fast"].bodies) == 1 and not any(b[n].bodies for n in ("c1", "c2", "c3"))


@pytest.mark.parametrize("text, word", [("Please DELETE the production database", "delete"),
                                        ("deploy it to live now", "deploy")])
async def test_a_risk_word_goes_straight_to_the_council(text: str, word: str) -> None:
    cascade, b = build(Sure("fast", "ok", 0.99))
    out = chat(await cascade.complete(call(text)))
    c = out["council"]
    assert c["escalated"] and c["escalated_because"] == "risk-word" and word in c["why"]
    assert c["answered_by"] == "full-council" and not b["fast"].bodies


async def test_the_client_can_ask_for_the_council() -> None:
    cascade, b = build(Sure("fast", "ok", 0.99))
    out = chat(await cascade.complete(call("hello", validate=True)))
    assert out["council"]["escalated_because"] == "asked" and not b["fast"].bodies


async def test_low_confidence_escalates_and_keeps_the_first_answers_metadata() -> None:
    cascade, _b = build(Sure("fast", "maybe 41", 0.5))
    out = chat(await cascade.complete(call("What is 6 x 7?")))
    c = out["council"]
    assert c["escalated_because"] == "low-confidence" and c["confidence"] == 0.5
    assert c["first"]["winner"] == "fast" and out["choices"][0]["message"]["content"] == "The answer is 42."
    assert [m["name"] for m in c["members"]] == ["fast", "c1", "c2", "c3"] and c["members"][0]["role"] == "first"
    assert out["usage"]["total_tokens"] == 15  # the answer the client got: one member's call, not four
    assert c["usage"]["total_tokens"] == 4 * 15  # what the cascade spent


async def test_without_logprobs_a_second_opinion_measures_agreement() -> None:
    cascade, _ = build(FakeBackend("fast", "42"), FakeBackend("other", "The answer is 42."))
    out = chat(await cascade.complete(call("What is 6 x 7?")))
    assert out["council"]["confidence"] == 1.0 and out["council"]["confidence_source"] == "second-opinion"
    assert not out["council"]["escalated"]
    cascade, _b = build(FakeBackend("fast", "42"), FakeBackend("other", "I believe it is 48."))
    out = chat(await cascade.complete(call("What is 6 x 7?")))
    assert out["council"]["escalated_because"] == "low-confidence"


async def test_a_cloud_second_opinion_is_a_member_with_its_cost_usage_and_budget() -> None:
    """It used to be asked off the books: missing from the members, the cost and the budget."""
    cloud = ScriptedBackend("other", ["42"], price_in=100.0, price_out=100.0, url="https://api.example.com/v1")
    cascade, _ = build(FakeBackend("fast", "42"), cloud)
    c = call("What is 6 x 7?")
    c.budget = Budget(limit_usd=1.0)
    out = chat(await cascade.complete(c))
    second = [m for m in out["council"]["members"] if m["name"] == "other"]
    assert len(second) == 1 and second[0]["role"] == "second-opinion" and second[0]["status"] == "ok"
    assert second[0]["cost_usd"] == pytest.approx(150 * 100 / 1e6) and second[0]["cloud"] is True
    assert out["council"]["cost_usd"] == pytest.approx(0.015)
    assert out["council"]["usage"]["total_tokens"] == 15 + 150
    assert c.budget.spent_usd == pytest.approx(0.015)


async def test_a_second_opinion_outside_the_budget_is_skipped_and_said_so() -> None:
    cloud = ScriptedBackend("other", ["42"], price_in=100.0, price_out=100.0, url="https://api.example.com/v1")
    cascade, _ = build(FakeBackend("fast", "42"), cloud)
    c = call("What is 6 x 7?")
    c.budget = Budget(limit_usd=0.0)
    out = chat(await cascade.complete(c))
    second = [m for m in out["council"]["members"] if m["name"] == "other"]
    assert second and second[0]["status"] == "skipped" and not cloud.bodies
    assert out["council"]["confidence_source"].startswith("none")


async def test_without_logprobs_or_second_opinion_the_confidence_is_unknown_and_not_escalated() -> None:
    cascade, _b = build(FakeBackend("fast", "42"))
    out = chat(await cascade.complete(call("What is 6 x 7?")))
    assert out["council"]["confidence"] is None
    assert out["council"]["confidence_source"] == ("none: the first answer came without token logprobs and no "
                                                   "second-opinion is configured")
    assert not out["council"]["escalated"]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


async def test_streams_escalated_before_asking_live() -> None:
    cascade, _b = build(Sure("fast", "ok", 0.99))
    chunks = [c async for c in chat_stream(cascade.stream(call("drop the table", stream=True)))]
    assert text_of(chunks) == "The answer is 42." and chunks[-1]["council"]["escalated_because"] == "risk-word"
    roles = [c for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("role")]
    assert len(roles) == 1


async def test_a_buffered_stream_replays_the_first_answer_or_hands_over() -> None:
    cascade, _ = build(Sure("fast", "Paris", 0.99))
    chunks = [c async for c in chat_stream(cascade.stream(call("capital of France?", stream=True)))]
    assert text_of(chunks) == "Paris" and chunks[-1]["council"]["escalated"] is False
    cascade, _b = build(Sure("fast", "maybe 41", 0.4))
    chunks = [c async for c in chat_stream(cascade.stream(call("6 x 7?", stream=True)))]
    assert text_of(chunks) == "The answer is 42." and chunks[-1]["council"]["escalated_because"] == "low-confidence"
    roles = [c for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("role")]
    assert len(roles) == 1, "the council's own role chunk is not sent twice"


@pytest.mark.parametrize("first, error", [("nope", "'nope' is not another virtual model"),
                                          ("c", "'c' is not another virtual model"),
                                          ("c2", "'c2' is itself a cascade")])
def test_cascade_targets_are_checked(first: str, error: str) -> None:
    from routing import config

    text = ('[backends.a]\nurl = "http://127.0.0.1:1/v1"\nmodel = "a"\n'
            '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n'
            f'[models.c]\nstrategy = "cascade"\nfirst = "{first}"\nescalate-to = "ultra-instinct"\n'
            '[models.c2]\nstrategy = "cascade"\nfirst = "ultra-instinct"\nescalate-to = "ultra-instinct"\n')
    with pytest.raises(config.ConfigError) as e:
        config.parse(text)
    assert error in str(e.value)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cascade_on_agreement_keeps_the_cheap_answer_when_two_quick_answers_agree(stream: bool) -> None:
    """`confidence = "agreement"`, for backends that give no logprobs: `first` is asked twice at once (as the
    client asked, and one sample); the same claim in other words keeps it, a different claim escalates."""
    by_temperature = ScriptedBackend("fast", lambda body: "Paris" if body.get("temperature") is None
                                     else "The capital of France is Paris.")
    cascade, b = build(by_temperature, confidence="agreement")
    if stream:
        chunks = [c async for c in chat_stream(cascade.stream(call("What is the capital of France?", stream=True)))]
        c = next(ch["council"] for ch in chunks if "council" in ch)
    else:
        c = chat(await cascade.complete(call("What is the capital of France?")))["council"]
    assert c["escalated"] is False and c["confidence"] == 1.0 and c["confidence_source"] == "agreement"
    asked = by_temperature.bodies
    assert len(asked) == 2 and {body.get("temperature") for body in asked} == {None, 0.7}
    assert not any(body.get("logprobs") for body in by_temperature.bodies)  # none asked: this backend gives none
    assert [m.get("role") for m in c["members"] if m["name"] == "fast"].count("agreement") == 1
    assert all(not x.bodies for n, x in b.items() if n.startswith("c"))  # the council was never asked

    unsure = ScriptedBackend("fast", lambda body: "Paris" if body.get("temperature") is None else "Lyon")
    cascade, b = build(unsure, confidence="agreement")
    out = chat(await cascade.complete(call("What is the capital of France?")))
    c = out["council"]
    assert c["escalated"] is True and c["confidence"] < 0.95 and c["escalated_because"] == "low-confidence"
    assert out["choices"][0]["message"]["content"] == "The answer is 42."  # the council's
