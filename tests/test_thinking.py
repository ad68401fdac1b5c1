"""The five thinking strategies: who is asked what, in which role, and which answer comes out."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from routing.decide.budget import Budget
from routing.errors import AllMembersFailed, MemberFailure
from routing.models import DebateModel, DuoDebateModel, SoloModel, TrioConsensusModel, VoteModel
from routing.request import Message, Request
from routing.strategies import Call
from routing.strategies.thinking import ThinkingStrategy
from routing.thinking import THINKERS, Asker, Options
from tests.fakes import FakeBackend, ScriptedBackend, chat, chat_stream

Q = [{"role": "user", "content": "What is 6 * 7?"}]
MESSAGES = [Message.of(m) for m in Q]


def asker(*backends: FakeBackend) -> Asker:
    return Asker.for_request({b.name: b for b in backends}, Budget(),
                             Request.of({"messages": Q, "temperature": 0.2, "stream": True, "tools": []}))


def last_text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


async def test_solo_asks_one_model_once() -> None:
    a = FakeBackend("a", "42")
    ask = asker(a)
    thought = await THINKERS["solo"](ask, MESSAGES, "a", [], Options())
    assert thought.text == "42" and thought.by == "a" and len(a.bodies) == 1
    assert "stream" not in a.bodies[0] and "tools" not in a.bodies[0] and a.bodies[0]["temperature"] == 0.2
    assert [(r.name, r.role, r.status) for r in ask.reports] == [("a", "solo", "ok")]


async def test_duo_debate_proposes_critiques_and_refines() -> None:
    lead = ScriptedBackend("lead", ["The answer is 41.", "The answer is 42."])
    critic = ScriptedBackend("critic", ["6 * 7 is 42, not 41."])
    ask = asker(lead, critic)
    thought = await THINKERS["duo-debate"](ask, MESSAGES, "lead", ["critic"], Options())
    assert thought.text == "The answer is 42." and thought.decided_by == "refined"
    assert "The answer is 41." in last_text(critic.bodies[0])
    assert "6 * 7 is 42, not 41." in last_text(lead.bodies[1])
    assert [r.role for r in ask.reports] == ["proposer", "critic", "refiner"]


async def test_duo_debate_keeps_the_proposal_when_the_critic_fails() -> None:
    lead = ScriptedBackend("lead", ["The answer is 42."])
    critic = FakeBackend("critic", fail="connection refused")
    ask = asker(lead, critic)
    thought = await THINKERS["duo-debate"](ask, MESSAGES, "lead", ["critic"], Options())
    assert thought.text == "The answer is 42." and thought.note and "critic" in thought.note
    assert [r.status for r in ask.reports] == ["ok", "error"]


async def test_trio_consensus_uses_the_weighted_vote() -> None:
    a, b, c = FakeBackend("a", "The answer is 41."), FakeBackend("b", "42"), FakeBackend("c", "**42**")
    thought = await THINKERS["trio-consensus"](asker(a, b, c), MESSAGES, "a", ["b", "c"], Options(weights={"a": 5.0}))
    assert thought.by == "a"  # a outweighs b and c together
    thought = await THINKERS["trio-consensus"](asker(a, b, c), MESSAGES, "a", ["b", "c"], Options())
    assert thought.by in ("b", "c") and thought.agreement == pytest.approx(2 / 3, abs=0.01)


async def test_vote_is_one_member_one_vote() -> None:
    a, b, c = FakeBackend("a", "41"), FakeBackend("b", "42"), FakeBackend("c", "The answer is 42.")
    thought = await THINKERS["vote"](asker(a, b, c), MESSAGES, "a", ["b", "c"], Options(weights={"a": 10.0}))
    assert thought.by == "b" and thought.text == "42"


async def test_vote_fails_only_when_nobody_answers() -> None:
    a, b = FakeBackend("a", fail="down"), FakeBackend("b", fail="down")
    with pytest.raises(AllMembersFailed) as e:
        await THINKERS["vote"](asker(a, b), MESSAGES, "a", ["b"], Options())
    assert {f.member for f in e.value.failures} == {"a", "b"}


async def test_debate_shows_each_member_the_others_last_answers() -> None:
    def stubborn(body: dict[str, Any]) -> str:
        return "42"

    def persuadable(body: dict[str, Any]) -> str:
        return "42" if "42" in last_text(body) and len(body["messages"]) > 1 else "41"

    a, b, c = ScriptedBackend("a", stubborn), ScriptedBackend("b", persuadable), ScriptedBackend("c", stubborn)
    ask = asker(a, b, c)
    thought = await THINKERS["debate"](ask, MESSAGES, "a", ["b", "c"], Options(rounds=2))
    assert len(b.bodies) == 2
    round2 = last_text(b.bodies[1])
    assert "--- a ---\n42" in round2 and "--- c ---\n42" in round2 and "--- b ---" not in round2
    assert b.bodies[1]["messages"][-2] == {"role": "assistant", "content": "41"}
    assert thought.text == "42" and thought.agreement == 1.0
    assert sorted(r.role or "" for r in ask.reports) == ["debater r1"] * 3 + ["debater r2"] * 3


async def test_a_failed_lead_fails_solo() -> None:
    with pytest.raises(MemberFailure):
        await THINKERS["solo"](asker(FakeBackend("a", fail="boom")), MESSAGES, "a", [], Options())


def call(stream: bool = False) -> Call:
    return Call(request=Request.of({"model": "duo", "messages": Q}), model="duo", stream=stream, include_usage=True,
                id="chatcmpl-1", created=1)


async def test_a_thinking_strategy_as_a_virtual_model() -> None:
    lead = ScriptedBackend("lead", ["41", "42"])
    critic = ScriptedBackend("critic", ["It is 42."])
    s = ThinkingStrategy("duo", DuoDebateModel(members=["lead", "critic"]), {"lead": lead, "critic": critic})
    out = chat(await s.complete(call()))
    assert out["choices"][0]["message"]["content"] == "42"
    council = out["council"]
    assert council["strategy"] == "duo-debate" and council["winner"] == "lead"
    assert [m["role"] for m in council["members"]] == ["proposer", "critic", "refiner"]
    assert out["usage"]["total_tokens"] == 150 and council["usage"]["total_tokens"] == 450


async def test_a_thinking_virtual_model_streams_its_steps_as_reasoning() -> None:
    lead = ScriptedBackend("lead", ["41", "42"])
    critic = ScriptedBackend("critic", ["It is 42."])
    s = ThinkingStrategy("duo", DuoDebateModel(members=["lead", "critic"]), {"lead": lead, "critic": critic})
    chunks = [c async for c in chat_stream(s.stream(call(stream=True)))]
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "critic critiques" in reasoning and "lead refines" in reasoning
    assert content == "42" and chunks[-1]["council"]["decided_by"] == "refined"


@pytest.mark.parametrize("model", [SoloModel, DuoDebateModel, TrioConsensusModel, DebateModel, VoteModel])
def test_every_thinking_model_is_a_config_strategy(model: type) -> None:
    vm = model(members=["a", "b", "c"])
    encoded = msgspec.to_builtins(vm)
    assert encoded["strategy"] == vm.thinking
