"""The council with in-process fake members: fan-out, early decision, cancellation, failures, synthesis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from proxy.errors import status_of
from routing.errors import AllMembersFailed
from routing.models import CouncilModel
from routing.request import Request
from routing.strategies import Call, Council
from tests.fakes import FakeBackend, chat, chat_stream


def call(stream: bool = False) -> Call:
    return Call(request=Request.of({"model": "c", "messages": [{"role": "user", "content": "6*7?"}]}),
                model="c", stream=stream,
                include_usage=True, id="chatcmpl-x", created=1)


def council(members: list[FakeBackend], **kw: Any) -> Council:
    backends = {b.name: b for b in members}
    vm = CouncilModel(members=list(backends), **kw)
    return Council("full-council", vm, backends)  # type: ignore[arg-type]


def status(out: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["status"] for m in out["council"]["members"]}


async def test_weighted_majority_wins_and_usage_is_the_winners() -> None:
    c = council([FakeBackend("goku", "41", weight=3.0), FakeBackend("vegeta", "42"), FakeBackend("piccolo", "42")],
                early_decision=False)
    out = chat(await c.complete(call()))
    assert out["choices"][0]["message"]["content"] == "41"
    meta = out["council"]
    assert meta["winner"] == "goku" and meta["decided_by"] == "vote" and meta["agreement"] == 0.6
    assert out["usage"]["total_tokens"] == 15  # the answer's, as agents read their context from it
    assert meta["usage"]["total_tokens"] == 45  # what the three members spent
    assert [cl["members"] for cl in meta["clusters"]] == [["goku"], ["vegeta", "piccolo"]]
    assert {m["name"]: m["cluster"] for m in meta["members"]} == {"goku": 0, "vegeta": 1, "piccolo": 1}


async def test_members_are_asked_at_once() -> None:
    c = council([FakeBackend(n, "42", delay=0.3) for n in ("a", "b", "c", "d")], early_decision=False)
    start = time.perf_counter()
    chat(await c.complete(call()))
    assert time.perf_counter() - start < 0.9  # sequential would be 1.2 s


async def test_a_fast_agreeing_majority_decides_early_and_the_slow_are_cancelled() -> None:
    slow = [FakeBackend(n, "7", delay=5) for n in ("gohan", "krillin")]
    fast = [FakeBackend(n, "The answer is 42.", delay=0.01 * i) for i, n in enumerate(("goku", "vegeta", "piccolo"))]
    c = council(fast + slow)
    out = chat(await c.complete(call()))
    meta = out["council"]
    assert out["choices"][0]["message"]["content"] == "The answer is 42."
    assert meta["decided_by"] == "early" and meta["degraded"] is False
    assert status(out) == {"goku": "ok", "vegeta": "ok", "piccolo": "ok", "gohan": "cancelled",
                           "krillin": "cancelled"}
    assert all(b.history == ["request", "cancelled"] for b in slow)


async def test_two_failures_still_answer_degraded() -> None:
    members = [FakeBackend("a", "42"), FakeBackend("b", "42"), FakeBackend("c", "42"),
               FakeBackend("d", fail="connection refused"), FakeBackend("e", fail="timeout")]
    out = chat(await council(members, early_decision=False).complete(call()))
    assert out["council"]["degraded"] is True
    assert status(out) == {"a": "ok", "b": "ok", "c": "ok", "d": "error", "e": "timeout"}
    assert [m.get("error") for m in out["council"]["members"]][3] == "connection refused"


async def test_fewer_answers_than_min_answers_is_a_502_listing_every_failure() -> None:
    members = [FakeBackend("a", "42"), FakeBackend("b", fail="HTTP 500: boom"), FakeBackend("c", fail="refused")]
    with pytest.raises(AllMembersFailed) as e:
        chat(await council(members, min_answers=2).complete(call()))
    assert status_of(e.value) == 502
    assert "got 1 answer(s) but needs 2" in e.value.message
    assert "b: HTTP 500: boom" in e.value.message and "c: refused" in e.value.message


async def test_the_deadline_is_a_504_and_stops_the_stragglers() -> None:
    members = [FakeBackend("a", "42"), FakeBackend("b", delay=5), FakeBackend("c", delay=5)]
    with pytest.raises(AllMembersFailed) as e:
        chat(await council(members, min_answers=2, timeout_s=0.2).complete(call()))
    assert status_of(e.value) == 504 and "b: no answer within the council's 0.2s" in e.value.message
    assert members[1].history == ["request", "cancelled"]


async def test_tool_calls_win_verbatim_with_finish_reason_tool_calls() -> None:
    def tc(args: str, id: str) -> list[dict[str, Any]]:
        return [{"id": id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]

    members = [FakeBackend("a", tool_calls=tc('{"city": "Paris"}', "call_a")),
               FakeBackend("b", tool_calls=tc('{ "city":"Paris" }', "call_b")),
               FakeBackend("c", tool_calls=tc('{"city": "Rome"}', "call_c"))]
    c = council(members, early_decision=False)
    out = chat(await c.complete(call()))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == tc('{"city": "Paris"}', "call_a")
    chunks = [ch async for ch in chat_stream(c.stream(call(stream=True)))]
    deltas = [ch["choices"][0]["delta"] for ch in chunks if ch["choices"]]
    first_tool = next(d for d in deltas if "tool_calls" in d)["tool_calls"][0]
    assert first_tool["index"] == 0 and first_tool["id"] == "call_a" and first_tool["function"]["name"] == "get_weather"
    finishes = [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]]
    assert finishes[-1] == "tool_calls"


async def test_synthesis_by_the_chairman_and_its_fallback() -> None:
    members = [FakeBackend("a", "42"), FakeBackend("b", "42"), FakeBackend("c", "41")]
    chair = FakeBackend("chair", "Forty-two, all things considered.")
    backends = {b.name: b for b in [*members, chair]}
    vm = CouncilModel(members=["a", "b", "c"], merge="synthesize", chairman="chair", early_decision=False)
    out = chat(await Council("full-council", vm, backends).complete(call()))  # type: ignore[arg-type]
    assert out["choices"][0]["message"]["content"] == "Forty-two, all things considered."
    assert out["council"]["decided_by"] == "synthesis" and out["council"]["winner"] == "chair"
    brief = chair.bodies[0]["messages"][1]["content"]
    assert "6*7?" in brief and "vote share 67%" in brief and "goku" not in brief
    assert out["usage"]["total_tokens"] == 15 and out["council"]["usage"]["total_tokens"] == 60

    chair.fail = "connection refused"
    out = chat(await Council("full-council", vm, backends).complete(call()))  # type: ignore[arg-type]
    assert out["choices"][0]["message"]["content"] == "42"
    assert "chairman 'chair' failed" in out["council"]["note"] and out["council"]["degraded"] is True


async def test_stream_sends_the_role_at_once_heartbeats_then_the_winner() -> None:
    c = council([FakeBackend("a", "The answer is 42.", delay=0.35), FakeBackend("b", "42", delay=0.35)],
                heartbeat_s=0.1)
    chunks = [ch async for ch in chat_stream(c.stream(call(stream=True)))]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    heartbeats = [ch for ch in chunks[1:] if ch["choices"] and ch["choices"][0]["delta"] == {"content": ""}]
    assert len(heartbeats) >= 2
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == "The answer is 42."
    assert chunks[-2]["usage"]["total_tokens"] == 15 and chunks[-1]["council"]["agreement"] == 1.0
    assert chunks[-1]["council"]["usage"]["total_tokens"] == 30


async def test_a_client_that_goes_away_cancels_every_member() -> None:
    members = [FakeBackend(n, delay=5) for n in ("a", "b", "c")]
    stream = chat_stream(council(members, heartbeat_s=0.05).stream(call(stream=True)))
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    await asyncio.sleep(0)
    assert all(b.history == ["request", "cancelled"] for b in members)


class Sampled(FakeBackend):
    """One model sampled several times: the answer and its delay depend on the request's seed."""

    def __init__(self, name: str, by_seed: dict[int, tuple[str, float]]) -> None:
        super().__init__(name)
        self.by_seed = by_seed

    async def respond(self, body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        answer, delay = self.by_seed[body["seed"]]
        self.bodies.append(body)
        await asyncio.sleep(delay)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


async def test_a_member_named_three_times_is_three_samples_with_their_own_seeds() -> None:
    smol = Sampled("smol", {1: ("Paris", 0.0), 2: ("The capital of France is Paris.", 0.0), 3: ("Lyon", 0.0)})
    vm = CouncilModel(members=["smol", "smol", "smol"], sample_temperature=0.7, early_decision=False)
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    out = chat(await Council("c", vm, {"smol": smol}).complete(  # type: ignore[dict-item]
        Call(request=Request.of(body), model="c", stream=False, include_usage=False, id="x", created=1)))
    assert sorted(b["seed"] for b in smol.bodies) == [1, 2, 3]
    assert {b["temperature"] for b in smol.bodies} == {0.7}
    meta = out["council"]
    assert [m["name"] for m in meta["members"]] == ["smol#1", "smol#2", "smol#3"]
    assert all(m["model"] == "smol-model" for m in meta["members"])
    assert [c["members"] for c in meta["clusters"]] == [["smol#1", "smol#2"], ["smol#3"]]
    assert meta["agreement"] == pytest.approx(2 / 3, abs=1e-3) and meta["majority"] is True


async def test_samples_keep_the_clients_temperature_and_seed_and_decide_early() -> None:
    smol = Sampled("smol", {11: ("42", 0.0), 12: ("42", 0.0), 13: ("41", 1.0)})
    vm = CouncilModel(members=["smol", "smol", "smol", "big"], sample_temperature=0.7, weights={"smol#3": 0.5})
    big = FakeBackend("big", "42", delay=1.0)
    c = Council("c", vm, {"smol": smol, "big": big})  # type: ignore[dict-item]
    body = {"model": "c", "messages": [{"role": "user", "content": "6*7?"}], "temperature": 0.2, "seed": 10}
    t = time.perf_counter()
    out = chat(await c.complete(Call(request=Request.of(body),
                                     model="c", stream=False, include_usage=False, id="x", created=1)))
    assert time.perf_counter() - t < 0.9, "two of 3.5 weight agreeing cannot be overtaken by 1.5: decided early"
    assert {b["temperature"] for b in smol.bodies} == {0.2} and sorted(b["seed"] for b in smol.bodies) == [11, 12, 13]
    assert big.bodies[0]["seed"] == 10, "a member named once is asked as the client asked"
    meta = out["council"]
    assert meta["decided_by"] == "early"
    by_name = {m["name"]: m for m in meta["members"]}
    assert by_name["smol#3"]["status"] == "cancelled" and by_name["big"]["status"] == "cancelled"
    assert by_name["smol#3"]["weight"] == 0.5 and by_name["smol#1"]["weight"] == 1.0


async def test_a_tie_between_rival_claims_is_reported_as_no_majority_and_goes_to_the_first_listed() -> None:
    """The member listed first answers last: the tie is still its, not the fastest member's."""
    out = chat(await council([FakeBackend("a", "41", delay=0.2), FakeBackend("b", "42"), FakeBackend("c", "43")],
                        early_decision=False).complete(call()))
    meta = out["council"]
    assert meta["majority"] is False and meta["decided_by"] == "tie-break: order"
    assert meta["winner"] == "a" and out["choices"][0]["message"]["content"] == "41"


async def test_a_judge_names_the_most_consistent_answer_universal_self_consistency() -> None:
    members = [FakeBackend("goku", "Paris"), FakeBackend("vegeta", "It is Paris."), FakeBackend("piccolo", "Lyon")]
    judge = FakeBackend("whis", "The most consistent response is Response 2, which Response 1 agrees with.")
    backends = {b.name: b for b in [*members, judge]}
    vm = CouncilModel(members=["goku", "vegeta", "piccolo"], merge="judge", judge="whis", early_decision=False)
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    out = chat(await Council("c", vm, backends).complete(  # type: ignore[arg-type]
        Call(request=Request.of(body), model="c", stream=False, include_usage=False, id="x", created=1)))
    meta = out["council"]
    assert meta["decided_by"] == "judge" and meta["winner"] == "vegeta"
    assert out["choices"][0]["message"]["content"] == "It is Paris."
    brief = judge.bodies[0]["messages"][1]["content"]
    assert "Response 3\nLyon" in brief and "goku" not in brief and "piccolo" not in brief  # anonymized
    judged = [m for m in meta["members"] if m.get("role") == "judge"]
    assert judged and judged[0]["name"] == "whis" and judged[0]["status"] == "ok"
    assert meta["usage"]["total_tokens"] == 4 * 15  # the judge's call is spent too


async def test_a_judge_s_grouping_is_the_council_s_clusters_and_agreement() -> None:
    """The words split 'the City of Light' from 'Paris'; the judge says they agree: its grouping is what the
    council reports (clusters, agreement, majority), not the word clusters it overruled."""
    members = [FakeBackend("goku", "Paris"), FakeBackend("vegeta", "The City of Light."),
               FakeBackend("piccolo", "Lyon"), FakeBackend("krillin", "Marseille")]
    judge = FakeBackend("whis", "The most consistent response is Response 1. Responses 2 agrees with it; "
                                "responses 3 and 4 do not.")
    backends = {b.name: b for b in [*members, judge]}
    vm = CouncilModel(members=[m.name for m in members], merge="judge", judge="whis", early_decision=False)
    body = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    out = chat(await Council("c", vm, backends).complete(  # type: ignore[arg-type]
        Call(request=Request.of(body), model="c", stream=False, include_usage=False, id="x", created=1)))
    meta = out["council"]
    assert meta["decided_by"] == "judge" and meta["winner"] == "goku"
    assert sorted(meta["clusters"][0]["members"]) == ["goku", "vegeta"]
    assert meta["agreement"] == 0.5 and meta["majority"] is False  # two of four, as the judge grouped them
    by_name = {m["name"]: m for m in meta["members"]}
    assert by_name["goku"]["cluster"] == by_name["vegeta"]["cluster"] != by_name["piccolo"]["cluster"]


async def test_a_judge_that_names_nothing_leaves_the_vote_standing_and_says_so() -> None:
    members = [FakeBackend("goku", "42"), FakeBackend("vegeta", "42"), FakeBackend("piccolo", "41")]
    judge = FakeBackend("whis", "They are all lovely.")
    backends = {b.name: b for b in [*members, judge]}
    vm = CouncilModel(members=["goku", "vegeta", "piccolo"], merge="judge", judge="whis", early_decision=False)
    out = chat(await Council("c", vm, backends).complete(call()))  # type: ignore[arg-type]
    assert out["council"]["decided_by"] == "vote" and out["choices"][0]["message"]["content"] == "42"
    assert "judge 'whis' named no response" in out["council"]["note"]
    judge.fail = "connection refused"
    out = chat(await Council("c", vm, backends).complete(call()))  # type: ignore[arg-type]
    assert "judge 'whis' failed (connection refused)" in out["council"]["note"]
    assert out["council"]["degraded"] is True


class Embedder(FakeBackend):
    """A backend serving an embedding model: each known text has a vector."""

    def __init__(self, name: str, vectors: dict[str, list[float]]) -> None:
        super().__init__(name)
        self.vectors = vectors

    async def forward(self, path: str, body: dict[str, Any], model: str | None = None) -> Any:
        import httpx

        assert path == "/embeddings"
        self.bodies.append(body)
        data = [{"object": "embedding", "index": i, "embedding": self.vectors.get(t)}  # unknown: unreadable
                for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"object": "list", "data": data, "usage": {"prompt_tokens": 9,
                                                                                   "total_tokens": 9}})


async def test_a_similarity_backend_joins_answers_whose_meaning_matches_but_words_do_not() -> None:
    long_a = "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen " * 3
    long_b = "Using light energy, green plants make glucose from CO2 and water, releasing O2 as a by-product " * 3
    long_c = "Photosynthesis happens at night in animal cells when they digest food and release heat " * 3
    members = [FakeBackend("a", long_a), FakeBackend("b", long_b), FakeBackend("c", long_c)]
    embed = Embedder("e5", {long_a: [1.0, 0.1], long_b: [0.98, 0.15], long_c: [0.1, 1.0]})
    backends = {b.name: b for b in [*members, embed]}
    words_only = chat(await Council("c", CouncilModel(members=["a", "b", "c"]), backends).complete(call()))  # type: ignore[arg-type]
    assert len(words_only["council"]["clusters"]) == 3 and words_only["council"]["majority"] is False
    vm = CouncilModel(members=["a", "b", "c"], similarity_backend="e5")
    out = chat(await Council("c", vm, backends).complete(call()))  # type: ignore[arg-type]
    meta = out["council"]
    assert [c["members"] for c in meta["clusters"]] == [["a", "b"], ["c"]] and meta["majority"] is True
    role = [m for m in meta["members"] if m.get("role") == "similarity"]
    assert role[0]["name"] == "e5" and role[0]["usage"]["total_tokens"] == 9
    assert embed.bodies[0]["input"] == [long_a, long_b, long_c]


async def test_a_failing_similarity_backend_falls_back_to_words_and_says_so() -> None:
    members = [FakeBackend("a", "42"), FakeBackend("b", "42"), FakeBackend("c", "41")]
    embed = Embedder("e5", {})  # knows no text: its answer cannot be read
    out = chat(await Council("c", CouncilModel(members=["a", "b", "c"], similarity_backend="e5"),
                        {b.name: b for b in [*members, embed]}).complete(call()))  # type: ignore[arg-type]
    assert out["choices"][0]["message"]["content"] == "42"
    assert "similarity backend 'e5'" in out["council"]["note"] and "clustered by their words" in out["council"]["note"]


async def test_greedy_first_the_models_likeliest_answer_stands_unless_samples_agree_on_another() -> None:
    q = {"model": "c", "messages": [{"role": "user", "content": "What is the capital of France?"}]}

    async def vote(answers: dict[int, str]) -> dict[str, Any]:
        smol = Sampled("smol", {seed: (text, 0.0) for seed, text in answers.items()})
        vm = CouncilModel(members=["smol"] * len(answers), sample_temperature=0.7, greedy_first=True,
                          early_decision=False)
        out = chat(await Council("c", vm, {"smol": smol}).complete(  # type: ignore[dict-item]
            Call(request=Request.of(q), model="c", stream=False, include_usage=False, id="x", created=1)))
        temps = {b["seed"]: b["temperature"] for b in smol.bodies}
        assert temps[1] == 0.0 and {t for s, t in temps.items() if s != 1} == {0.7}
        return out

    lone = await vote({1: "Paris", 2: "Lyon", 3: "Nice"})  # three rival claims: the greedy one weighs 1.5
    assert lone["choices"][0]["message"]["content"] == "Paris" and lone["council"]["decided_by"] == "vote"
    agreed = await vote({1: "Paris", 2: "Lyon", 3: "It is Lyon."})  # two samples agree: 2.0 > 1.5
    assert agreed["choices"][0]["message"]["content"] == "Lyon"
    by_name = {m["name"]: m for m in agreed["council"]["members"]}
    assert by_name["smol#1"]["weight"] == 1.5 and by_name["smol#2"]["weight"] == 1.0


async def test_a_tie_can_be_broken_by_a_judge_shown_only_the_tied_answers() -> None:
    members = [FakeBackend("a", "41"), FakeBackend("b", "42"), FakeBackend("c", "43")]
    judge = FakeBackend("whis", "The most consistent response is Response 2")
    vm = CouncilModel(members=["a", "b", "c"], tie_break="judge", judge="whis", early_decision=False)
    out = chat(await Council("c", vm, {b.name: b for b in [*members, judge]}).complete(call()))  # type: ignore[arg-type]
    assert out["council"]["decided_by"] == "tie-break: judge" and out["choices"][0]["message"]["content"] == "42"
    assert out["council"]["majority"] is False
    brief = judge.bodies[0]["messages"][1]["content"]
    assert brief.count("### Response") == 3
    no_tie = [FakeBackend("a", "42"), FakeBackend("b", "42"), FakeBackend("c", "43")]
    out = chat(await Council("c", vm, {b.name: b for b in [*no_tie, judge]}).complete(call()))  # type: ignore[arg-type]
    assert out["council"]["decided_by"] == "vote" and len(judge.bodies) == 1, "no tie: the judge is not asked"


def test_a_chairman_tie_break_needs_a_chairman() -> None:
    from routing import config

    with pytest.raises(config.ConfigError, match='tie-break = "chairman" needs a chairman'):
        config.parse('[backends.a]\nurl = "http://x/v1"\nmodel = "a"\n[models.ultra-instinct]\nstrategy = "single"\n'
                     'members = ["a"]\n[models.c]\nstrategy = "council"\nmembers = ["a", "a"]\n'
                     'tie-break = "chairman"\n')


async def test_a_streamed_council_opens_the_stream_before_it_has_decided() -> None:
    """Headers and the role chunk go out at once, not after the first heartbeat interval: a client sees
    the answer begin while the members think (Open WebUI and the agents show it as working)."""
    members = [FakeBackend(n, delay=2) for n in ("a", "b", "c")]
    stream = chat_stream(council(members, heartbeat_s=30).stream(call(stream=True)))
    try:
        first = await asyncio.wait_for(anext(stream), timeout=1.5)
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert all(b.history == ["request"] for b in members), "nobody has answered yet"
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
