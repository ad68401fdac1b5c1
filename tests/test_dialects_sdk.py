"""Integration: the Responses and Messages dialects, embeddings and legacy completions through
`shenron serve`, called with the official `openai` and `anthropic` SDKs over fake upstreams."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests import conformance
from tests.procs import events, fake_upstream, running, shenron

pytestmark = pytest.mark.integration

ANSWERS = {"goku": "The answer is 42.", "vegeta": "42", "piccolo": "It is 42."}
WEATHER = '{"city":"Paris"}'
TOOLS = ["bulma", "trunks", "goten"]
MODELS = ["ultra-instinct", "full-council", "cascade"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dialects")
    log = tmp / "upstream-events.jsonl"
    with running() as started:
        blocks = []
        for name, answer in ANSWERS.items():
            proc, url = fake_upstream(tmp, "--models", name, "--answer", answer, "--log", str(log),
                                      "--logprob", "-0.05")
            started.append(proc)
            blocks.append(f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n')
        for name in TOOLS:
            proc, url = fake_upstream(tmp, "--models", name, "--answer", "It is sunny in Paris.",
                                      "--tool-call", f"get_weather:{WEATHER}", "--log", str(log))
            started.append(proc)
            blocks.append(f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n')
        config = "\n".join(blocks) + f"""
[models.ultra-instinct]
strategy = "single"
members = ["goku"]

[models.full-council]
strategy = "council"
members = {json.dumps(list(ANSWERS))}
early-decision = false
timeout-s = 20

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
min-confidence = 0.5

[models.tool-single]
strategy = "single"
members = ["bulma"]

[models.tool-council]
strategy = "council"
members = {json.dumps(TOOLS)}
timeout-s = 20
"""
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        yield {"base": base, "log": log, "proxy": proxy}


@pytest.fixture
def oai(stack: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack["base"], api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def claude(stack: dict[str, Any]) -> anthropic.Anthropic:
    root = stack["base"].removesuffix("/v1")  # the anthropic SDK adds /v1 itself, as Claude Code does
    return anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0, timeout=30)


def requests_to(log: Path, since: float, model: str) -> list[dict[str, Any]]:
    return [e["body"] for e in events(log)
            if e["event"] == "request" and e["t"] >= since and e["body"]["model"] == model]


# --- Responses API -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_responses_create_answers_every_model_in_the_published_shape(oai: openai.OpenAI, stack: dict[str, Any],
                                                                    model: str) -> None:
    ask = {"model": model, "input": "What is six times seven?", "instructions": "Answer briefly."}
    conformance.check("Response", httpx.post(stack["base"] + "/responses", json=ask, timeout=30).json())
    r = oai.responses.create(**ask)  # type: ignore[call-overload]
    raw = r.model_dump()
    assert r.status == "completed" and "42" in r.output_text
    council = raw["council"]
    assert council["virtual_model"] == model
    assert r.usage is not None and r.usage.input_tokens == 7  # one answer's prompt, as the client's context
    if model == "full-council":
        assert council["usage"]["prompt_tokens"] == 21  # what the three members spent together


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream_sends_the_semantic_events_in_order(stack: dict[str, Any], model: str) -> None:
    with httpx.stream("POST", stack["base"] + "/responses", timeout=30,
                      json={"model": model, "input": "What is six times seven?", "stream": True}) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    events = [json.loads(block.split("data: ", 1)[1]) for block in text.split("\n\n") if "data: " in block]
    for e in events:
        conformance.check("ResponseStreamEvent", e)
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for want in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                 "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert want in types, want
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert "42" in deltas and final["output"][0]["content"][0]["text"] == deltas
    assert final["council"]["virtual_model"] == model
    for shell in (events[0]["response"], events[1]["response"]):  # one turn's shell, filled for each event
        assert (shell["status"], shell["output"], "usage" in shell, "council" in shell) == ("in_progress", [], False,
                                                                                              False)
        assert {k: v for k, v in shell.items() if k not in ("status", "output")} == \
            {k: v for k, v in final.items() if k not in ("status", "output", "usage", "council", "completed_at")}
    assert final["status"] == "completed" and list(final)[:4] == ["id", "object", "created_at", "status"]


def test_responses_stream_through_the_sdk(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="full-council", input="What is six times seven?") as s:
        pieces = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "42" in "".join(pieces) and final.output_text == "".join(pieces)


@pytest.mark.parametrize("model", ["tool-single", "tool-council"])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_tool_round_trip_with_previous_response_id(oai: openai.OpenAI, stack: dict[str, Any],
                                                                       model: str, stream: bool) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    if stream:
        with oai.responses.stream(model=model, input="Weather in Paris?", tools=tools) as s:
            for _ in s:
                pass
            first = s.get_final_response()
    else:
        first = oai.responses.create(model=model, input="Weather in Paris?", tools=tools)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    since = time.time()
    second = oai.responses.create(model=model, previous_response_id=first.id, tools=tools,
                                  input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                          "output": "sunny, 21 C"}])
    assert second.output_text == "It is sunny in Paris."
    # the second turn's request (a council's first-turn member, cancelled once the vote was decided, may reach
    # the upstream's log after the first answer did: seen once in CI)
    sent = next(r["messages"] for r in requests_to(stack["log"], since, "bulma") if r["messages"][-1]["role"] == "tool")
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]  # the stored turn came back
    assert sent[1]["tool_calls"][0]["id"] == calls[0].call_id and sent[2]["content"] == "sunny, 21 C"


def test_responses_previous_response_id_unknown_or_not_stored_is_a_clear_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="ultra-instinct", input="hi", previous_response_id="resp_nope")
    assert "resp_nope" in str(e.value) and e.value.body["param"] == "previous_response_id"  # type: ignore[index]
    unstored = oai.responses.create(model="ultra-instinct", input="hi", store=False)
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model="ultra-instinct", input="again", previous_response_id=unstored.id)


def test_responses_are_retrieved_and_deleted(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="ultra-instinct", input="What is six times seven?")
    assert oai.responses.retrieve(r.id).output_text == r.output_text
    oai.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)


def test_responses_bad_input_is_a_400_naming_the_field(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="ultra-instinct", input=[{"type": "message", "role": "wizard", "content": "x"}])
    assert e.value.body["param"] == "input[0].role"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="ultra-instinct", input="x", tools=[{"type": "computer"}])  # type: ignore[list-item]
    assert e.value.body["param"] == "tools[0]"  # type: ignore[index]


def test_responses_built_in_tools_are_left_out_and_said_so(oai: openai.OpenAI) -> None:
    """Codex offers `web_search` by default; no model here can run it, and the answer says it was left out."""
    r = oai.responses.create(model="ultra-instinct", input="x", tools=[{"type": "web_search"}],
                             include=["reasoning.encrypted_content"], prompt_cache_key="k")
    assert r.output_text and r.model_dump()["council"]["ignored_tools"] == ["web_search"]
    assert r.model_dump()["council"]["ignored"] == ["include", "prompt_cache_key"]


# --- Messages API --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_messages_create_answers_every_model(claude: anthropic.Anthropic, model: str) -> None:
    m = claude.messages.create(model=model, max_tokens=100, system="Answer briefly.",
                               thinking={"type": "enabled", "budget_tokens": 1024},
                               messages=[{"role": "user", "content": "What is six times seven?"}])
    assert m.type == "message" and m.role == "assistant" and m.stop_reason == "end_turn"
    assert "42" in m.content[0].text  # type: ignore[union-attr]
    assert m.usage.input_tokens == 7
    assert m.model_dump()["council"]["virtual_model"] == model
    assert m.model_dump()["council"]["ignored"] == ["thinking"]  # said, not dropped silently


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream_through_the_sdk(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(model=model, max_tokens=100,
                                messages=[{"role": "user", "content": "What is six times seven?"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert "42" in text and final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_messages_stream_events_in_order_with_beta_query(stack: dict[str, Any]) -> None:
    with httpx.stream("POST", stack["base"] + "/messages?beta=true", timeout=30,
                      headers={"x-api-key": "unused", "anthropic-version": "2023-06-01",
                               "anthropic-beta": "interleaved-thinking-2025-05-14"},
                      json={"model": "full-council", "max_tokens": 50, "stream": True,
                            "messages": [{"role": "user", "content": "What is six times seven?"}]}) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    names = [block.split("\n")[0].removeprefix("event: ") for block in text.strip().split("\n\n")]
    names = [n for n in names if n != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1] == "content_block_start" and "content_block_delta" in names and "content_block_stop" in names


@pytest.mark.parametrize("model", ["tool-single", "tool-council"])
@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_round_trip(claude: anthropic.Anthropic, model: str, stream: bool) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather in a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    ask: Any = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with claude.messages.stream(model=model, max_tokens=100, tools=tools, messages=ask) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(model=model, max_tokens=100, tools=tools, messages=ask)
    assert first.stop_reason == "tool_use"
    use = [b for b in first.content if b.type == "tool_use"]
    assert len(use) == 1 and use[0].name == "get_weather" and use[0].input == {"city": "Paris"}
    second = claude.messages.create(model=model, max_tokens=100, tools=tools, messages=[
        *ask, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id, "content": "sunny"}]}])
    assert second.content[0].text == "It is sunny in Paris." and second.stop_reason == "end_turn"  # type: ignore[union-attr]


def test_messages_count_tokens(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model="full-council", messages=[{"role": "user", "content": "hi"}])
    long = claude.messages.count_tokens(model="full-council", system="You are terse. " * 20,
                                        messages=[{"role": "user", "content": "hi"}])
    assert 0 < short.input_tokens < long.input_tokens


def test_messages_errors_come_in_anthropics_envelope(claude: anthropic.Anthropic, stack: dict[str, Any]) -> None:
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="ultra-instinct", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                       "message": "Invalid value for 'max_tokens': expected an "
                                                                  "integer >= 1."}}
    with pytest.raises(anthropic.NotFoundError) as nf:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    r = httpx.post(stack["base"] + "/messages", json={"model": "ultra-instinct", "messages": []}, timeout=10)
    assert r.status_code == 400 and r.json()["type"] == "error"


# --- embeddings and legacy completions -------------------------------------------------------------

def test_embeddings_pass_through_float_and_base64(oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="goku", input=["one", "two words"], dimensions=8)
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8
    raw = httpx.post(str(oai.base_url) + "embeddings", json={"model": "goku", "input": "one"}).json()
    conformance.check("CreateEmbeddingResponse", raw)
    b = oai.embeddings.create(model="goku", input="one", dimensions=8, encoding_format="base64")
    packed = base64.b64decode(str(b.data[0].embedding))
    assert list(struct.unpack("<8f", packed)) == pytest.approx(
        oai.embeddings.create(model="goku", input="one", dimensions=8).data[0].embedding)
    with pytest.raises(openai.NotFoundError) as e:
        oai.embeddings.create(model="full-council", input="x")
    assert "virtual model" in str(e.value)


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions_with_suffix(oai: openai.OpenAI, stream: bool) -> None:
    if stream:
        text = "".join(c.choices[0].text for c in oai.completions.create(
            model="vegeta", prompt="def f(", suffix="return x", stream=True) if c.choices)
    else:
        r = oai.completions.create(model="vegeta", prompt="def f(", suffix="return x")
        raw = httpx.post(str(oai.base_url) + "completions", json={"model": "vegeta", "prompt": "def f("}).json()
        conformance.check("CreateCompletionResponse", raw)
        text = r.choices[0].text
    assert "42" in text and "<suffix:return x>" in text


def test_models_lists_what_the_new_endpoints_can_use(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"ultra-instinct", "full-council", "goku", "vegeta"} <= ids


# --- usage: the client's context, not the council's spend -------------------------------------------

def test_chat_usage_is_the_answers_and_council_usage_is_the_spend(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="full-council", messages=[{"role": "user", "content": "6 x 7?"}])
    assert r.usage is not None and r.usage.prompt_tokens == 7
    assert r.model_dump()["council"]["usage"]["prompt_tokens"] == 21
    chunks = list(oai.chat.completions.create(model="full-council", stream=True, stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": "6 x 7?"}]))
    usage = next(c.usage for c in chunks if c.usage)
    assert usage.prompt_tokens == 7
