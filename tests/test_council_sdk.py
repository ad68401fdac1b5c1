"""Integration: full-council through `shenron serve` and the openai SDK, over six fake upstreams that disagree."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.procs import events, fake_upstream, running, shenron

pytestmark = pytest.mark.integration
MSGS = [{"role": "user", "content": "What is six times seven?"}]

# name: (answer, latency ms, extra flags)
MEMBERS = {
    "goku": ("The answer is 42.", 50, ()),
    "vegeta": ("**42**", 80, ()),
    "piccolo": ("42", 110, ()),
    "gohan": ("I think it is 41.", 3000, ()),
    "krillin": ("43", 3000, ()),
    "frieza": ("unused", 0, ("--fail", "http500")),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("council")
    log = tmp / "upstream-events.jsonl"
    with running() as started:
        blocks = []
        for name, (answer, latency, extra) in MEMBERS.items():
            proc, url = fake_upstream(tmp, "--models", name, "--answer", answer, "--latency-ms", str(latency),
                                      "--log", str(log), *extra)
            started.append(proc)
            blocks.append(f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n')
            if name == "gohan":  # the same server, as a member that gives up before its council does
                blocks.append(f'[backends.gohan-brief]\nurl = "{url}"\nmodel = "{name}"\ntimeout-s = 2\n')
        members = json.dumps(list(MEMBERS))
        config = "\n".join(blocks) + f"""
[models.full-council]
strategy = "council"
members = {members}
timeout-s = 20
min-answers = 2

[models.slow-council]
strategy = "council"
members = {members}
early-decision = false
timeout-s = 20

[models.patient-council]
strategy = "council"
members = ["goku", "vegeta", "gohan-brief"]
early-decision = false
timeout-s = 30

[models.strict-council]
strategy = "council"
members = ["gohan", "frieza"]
timeout-s = 1
min-answers = 2
"""
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        yield {"base": base, "log": log}


@pytest.fixture
def sdk(stack: dict[str, object]) -> openai.OpenAI:
    return openai.OpenAI(base_url=str(stack["base"]), api_key="unused", max_retries=0, timeout=30)


def test_a_fast_agreeing_majority_answers_without_the_slow_members(sdk: openai.OpenAI,
                                                                  stack: dict[str, object]) -> None:
    log = Path(str(stack["log"]))
    log.write_text("")
    r = sdk.chat.completions.create(model="full-council", messages=MSGS)  # type: ignore[arg-type]
    council = r.model_extra["council"]  # type: ignore[index]
    assert r.choices[0].message.content == "The answer is 42."
    assert council["decided_by"] == "early" and council["winner"] == "goku"
    status = {m["name"]: m["status"] for m in council["members"]}
    assert status == {"goku": "ok", "vegeta": "ok", "piccolo": "ok", "gohan": "cancelled", "krillin": "cancelled",
                      "frieza": "error"}
    assert council["degraded"] is True  # frieza failed, and the metadata says so
    deadline = time.monotonic() + 10  # the upstream notices the closed connection asynchronously
    while len([e for e in events(log) if e["event"] == "disconnect"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    disconnected = {e["port"] for e in events(log) if e["event"] == "disconnect"}
    assert len(disconnected) == 2  # the cancelled members' upstream connections were closed


def test_without_early_decision_every_answer_is_counted(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="slow-council", messages=MSGS)  # type: ignore[arg-type]
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["decided_by"] == "vote" and council["agreement"] == pytest.approx(3 / 5)
    previews = sorted(c["preview"] for c in council["clusters"])
    assert previews == ["43", "I think it is 41.", "The answer is 42."]
    winner = next(m for m in council["members"] if m["name"] == council["winner"])
    assert r.usage is not None and r.usage.total_tokens == winner["usage"]["total_tokens"]
    assert council["usage"]["total_tokens"] == sum(
        m["usage"]["total_tokens"] for m in council["members"] if m["status"] == "ok")


def test_streamed_council_through_the_sdk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="full-council", messages=MSGS, stream=True,  # type: ignore[arg-type]
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The answer is 42."
    assert chunks[-2].usage is not None and chunks[-1].model_extra["council"]["winner"] == "goku"  # type: ignore[index]


def test_too_few_answers_is_a_gateway_timeout_listing_each_member(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        sdk.chat.completions.create(model="strict-council", messages=MSGS)  # type: ignore[arg-type]
    assert e.value.status_code == 504
    assert "gohan: no answer within the council's 1s" in e.value.message
    assert "frieza: HTTP 500" in e.value.message


def test_a_member_that_gives_up_before_its_council_ends_by_its_own_deadline(sdk: openai.OpenAI) -> None:
    """A member call's own deadline is not armed where its council's comes first (the council cancels it);
    one that comes first still ends the call, with the member's own reason, long before the council's."""
    start = time.monotonic()
    r = sdk.chat.completions.create(model="patient-council", messages=MSGS)  # type: ignore[arg-type]
    took = time.monotonic() - start
    council = r.model_extra["council"]  # type: ignore[index]
    brief = next(m for m in council["members"] if m["name"] == "gohan-brief")
    assert brief["status"] == "timeout" and brief["error"] == "no answer within 2s"  # before its 3 s answer
    assert council["winner"] in ("goku", "vegeta") and 2 <= took < 10
