"""Integration with real upstreams: three llama.cpp servers (llama-cpp-python) on tiny generated models.

The models are random weights written by tests/tiny_gguf.py: their answers are readable
nonsense, so these tests check the plumbing (shapes, streaming, fallbacks, the council's
bookkeeping), not the quality of what is said.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests import conformance
from tests.procs import llama_server, running, shenron
from tests.tiny_gguf import write

pytestmark = pytest.mark.integration
MSGS = [{"role": "user", "content": "Say something about the river."}]
ALIASES = ("tiny-goku", "tiny-vegeta", "tiny-piccolo")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("llama")
    with running() as started:
        urls = {}
        for seed, alias in enumerate(ALIASES):
            model = write(tmp / f"{alias}.gguf", seed=seed)
            proc, url = llama_server(tmp, model, alias)
            started.append(proc)
            urls[alias] = (proc, url)
        backends = "\n".join(
            f'[backends.{alias.removeprefix("tiny-")}]\nurl = "{url}"\nmodel = "{alias}"\ntimeout-s = 60\n'
            for alias, (_, url) in urls.items())
        config = backends + """
[models.ultra-instinct]
strategy = "single"
members = ["goku"]
fallbacks = ["vegeta"]

[models.agent-lite]
strategy = "council"
members = ["goku", "vegeta", "piccolo"]
min-answers = 2

[models.solo-piccolo]
strategy = "single"
members = ["piccolo"]

[models.cascade]
strategy = "cascade"
first = "solo-piccolo"
escalate-to = "agent-lite"
min-confidence = 0.000001
"""
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        yield {"base": base, "servers": urls}


@pytest.fixture
def sdk(stack: dict[str, object]) -> openai.OpenAI:
    return openai.OpenAI(base_url=str(stack["base"]), api_key="unused", max_retries=0, timeout=60)


@pytest.mark.parametrize("model", ["tiny-vegeta", "vegeta", "ultra-instinct"])
def test_non_stream_through_real_llamacpp(sdk: openai.OpenAI, model: str) -> None:
    r = sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens <= 8
    assert r.model == model and r.model_extra["council"]["members"][-1]["status"] == "ok"  # type: ignore[index]


@pytest.mark.parametrize("model", ["tiny-piccolo", "ultra-instinct"])
async def test_stream_through_real_llamacpp_honours_the_contract(stack: dict[str, object], model: str) -> None:
    client = openai.AsyncOpenAI(base_url=str(stack["base"]), api_key="unused", max_retries=0, timeout=60)
    stream = await client.chat.completions.create(model=model, messages=MSGS, max_tokens=8, stream=True,  # type: ignore[arg-type]
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert with_choices[-1].choices[0].finish_reason in ("stop", "length")
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and 0 < usage[0].completion_tokens <= 8  # llama.cpp ignores include_usage; we don't


def test_council_over_three_real_servers(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="agent-lite", messages=MSGS, max_tokens=6, temperature=0)  # type: ignore[arg-type]
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["strategy"] == "council" and {m["name"] for m in council["members"]} == {"goku", "vegeta", "piccolo"}
    assert sum(len(c["members"]) for c in council["clusters"]) == 3
    assert r.usage is not None
    assert council["usage"]["total_tokens"] == sum(m["usage"]["total_tokens"] for m in council["members"])
    winner = next(m for m in council["members"] if m["name"] == council["winner"])
    assert r.usage.prompt_tokens == winner["usage"]["prompt_tokens"]  # one prompt, not three
    winner_cluster = next(c for c in council["clusters"] if council["winner"] in c["members"])
    assert council["agreement"] == pytest.approx(winner_cluster["weight"] / 3, abs=1e-3)


def test_every_shape_conforms(stack: dict[str, object]) -> None:
    with httpx.Client(base_url=str(stack["base"]), timeout=60) as c:
        conformance.check("ListModelsResponse", c.get("/models").json())
        for model in ("tiny-goku", "ultra-instinct", "agent-lite"):
            body = {"model": model, "messages": MSGS, "max_tokens": 5}
            conformance.check("CreateChatCompletionResponse", c.post("/chat/completions", json=body).json())
            r = c.post("/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
            assert conformance.check_stream(r.text)[-1] == "[DONE]"


def test_killing_the_first_member_makes_the_fallback_answer(stack: dict[str, object], sdk: openai.OpenAI) -> None:
    goku, _ = stack["servers"]["tiny-goku"]  # type: ignore[index]
    goku.stop()
    r = sdk.chat.completions.create(model="ultra-instinct", messages=MSGS, max_tokens=5)  # type: ignore[arg-type]
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["winner"] == "vegeta" and council["degraded"] is True
    assert [(m["name"], m["status"]) for m in council["members"]] == [("goku", "error"), ("vegeta", "ok")]
    assert council["members"][0]["error"] == "connection refused"
    stream = sdk.chat.completions.create(model="ultra-instinct", messages=MSGS, max_tokens=5, stream=True)  # type: ignore[arg-type]
    meta = [c.model_extra["council"] for c in stream if c.model_extra and "council" in c.model_extra]
    assert meta[0]["winner"] == "vegeta"
    # the council still answers with two of three, and says it is degraded
    r = sdk.chat.completions.create(model="agent-lite", messages=MSGS, max_tokens=5)  # type: ignore[arg-type]
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["degraded"] is True
    assert {m["name"]: m["status"] for m in council["members"]}["goku"] == "error"




def test_the_cascade_reads_llama_cpp_python_s_logprobs(sdk: openai.OpenAI) -> None:
    """llama-cpp-python returns logprobs only when `top_logprobs` is set too; without it the cascade was
    blind (`confidence: null, confidence_source: "none"`) on the most common local server."""
    r = sdk.chat.completions.create(model="cascade", messages=MSGS, max_tokens=8)  # type: ignore[arg-type]
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["confidence_source"] == "logprobs" and 0 < council["confidence"] <= 1
    assert r.choices[0].logprobs is None  # asked for the cascade's sake, not shown to a client that did not ask


@pytest.mark.parametrize("asked", [{"logprobs": True}, {"logprobs": True, "top_logprobs": 2}])
def test_the_cascade_reads_logprobs_however_the_client_asked_for_them(sdk: openai.OpenAI, asked: dict[str, Any]
                                                                      ) -> None:
    """`logprobs: true` without `top_logprobs` is what most clients send; llama-cpp-python answers it with
    no logprobs at all, and the cascade went blind. The client still gets exactly the shape it asked for."""
    r = sdk.chat.completions.create(model="cascade", messages=MSGS, max_tokens=8, **asked)  # type: ignore[arg-type]
    council = r.model_dump()["council"]
    assert council["confidence_source"] == "logprobs" and 0 < council["confidence"] <= 1
    tokens = r.choices[0].logprobs.content if r.choices[0].logprobs else None
    assert tokens, "the client asked for logprobs and gets them"
    if "top_logprobs" in asked:  # as the server gives them (llama-cpp-python adds the sampled token when it is not
        assert all(t.top_logprobs for t in tokens)  # among the top n)
    else:
        assert all(t.top_logprobs == [] for t in tokens)  # OpenAI's shape for `logprobs: true` alone


@pytest.mark.parametrize("model", ["ultra-instinct", "agent-lite", "cascade"])
def test_responses_and_messages_over_real_servers(stack: dict[str, object], sdk: openai.OpenAI, model: str) -> None:
    import anthropic

    r = sdk.responses.create(model=model, input="Say something about the river.", max_output_tokens=8,
                             temperature=0)
    assert r.status in ("completed", "incomplete") and r.output_text
    assert r.usage is not None and r.usage.output_tokens > 0
    with sdk.responses.stream(model=model, input="Say something.", max_output_tokens=8) as s:
        streamed = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        assert s.get_final_response().output_text == streamed
    claude = anthropic.Anthropic(base_url=str(stack["base"]).removesuffix("/v1"), api_key="unused", max_retries=0)
    m = claude.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": "Say something."}])
    assert m.content and m.content[0].type == "text" and m.stop_reason in ("end_turn", "max_tokens")
    with claude.messages.stream(model=model, max_tokens=8, messages=[{"role": "user", "content": "Hi."}]) as ms:
        text = "".join(ms.text_stream)
    assert ms.get_final_message().content[0].text == text  # type: ignore[union-attr]


def test_legacy_completions_pass_through_to_a_real_server(sdk: openai.OpenAI) -> None:
    c = sdk.completions.create(model="tiny-piccolo", prompt="The river", max_tokens=5)
    assert c.choices[0].text is not None and c.usage is not None and c.usage.completion_tokens > 0
    pieces = [ch.choices[0].text for ch in sdk.completions.create(model="tiny-piccolo", prompt="The river",
                                                                  max_tokens=5, stream=True) if ch.choices]
    assert pieces
