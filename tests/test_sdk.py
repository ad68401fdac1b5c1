"""Integration: `shenron serve` as a user starts it, fake upstreams on real sockets, the official SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests import conformance
from tests.procs import fake_upstream, running, shenron

pytestmark = pytest.mark.integration
MSGS = [{"role": "user", "content": "What is six times seven?"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("sdk")
    with running() as started:
        goku, goku_url = fake_upstream(tmp, "--models", "qwen", "--answer", "The answer is 42.", "--no-role",
                                       "--no-usage")
        started.append(goku)
        vegeta, vegeta_url = fake_upstream(tmp, "--models", "llama", "--answer", "Forty-two, says vegeta.")
        started.append(vegeta)
        flaky, flaky_url = fake_upstream(tmp, "--models", "flaky", "--answer", "one two three four", "--fail",
                                         "truncate")
        started.append(flaky)
        config = f"""
[backends.goku]
url = "{goku_url}"
model = "qwen"
[backends.vegeta]
url = "{vegeta_url}"
model = "llama"
[backends.dead]
url = "http://127.0.0.1:9/v1"
model = "dead-model"
[backends.flaky]
url = "{flaky_url}"
model = "flaky"
[models.ultra-instinct]
strategy = "single"
members = ["goku"]
fallbacks = ["vegeta"]
[models.phoenix]
strategy = "single"
members = ["dead"]
fallbacks = ["vegeta"]
"""
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        yield {"base": base, "goku": goku, "proxy": proxy, "tmp": tmp}


@pytest.fixture
def sdk(stack: dict[str, object]) -> openai.OpenAI:
    return openai.OpenAI(base_url=str(stack["base"]), api_key="unused", max_retries=0)


@pytest.fixture
def async_sdk(stack: dict[str, object]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(stack["base"]), api_key="unused", max_retries=0)


def test_sync_non_stream(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="ultra-instinct", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "The answer is 42."
    assert r.model == "ultra-instinct" and r.usage is not None and r.usage.total_tokens > 0
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["winner"] == "goku" and council["members"][0]["status"] == "ok"


def test_sync_stream_with_usage_even_where_upstream_ignores_it(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model="ultra-instinct", messages=MSGS, stream=True,  # type: ignore[arg-type]
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The answer is 42."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens > 0
    council = [c.model_extra["council"] for c in chunks if c.model_extra and "council" in c.model_extra]
    assert len(council) == 1 and council[0]["members"][0]["usage_estimated"] is True


async def test_async_non_stream_and_stream(async_sdk: openai.AsyncOpenAI) -> None:
    r = await async_sdk.chat.completions.create(model="llama", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Forty-two, says vegeta."
    assert r.model_extra["council"]["strategy"] == "passthrough"  # type: ignore[index]
    stream = await async_sdk.chat.completions.create(model="vegeta", messages=MSGS, stream=True)  # type: ignore[arg-type]
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Forty-two, says vegeta."


def test_fallback_when_the_first_member_is_down(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="phoenix", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Forty-two, says vegeta."
    council = r.model_extra["council"]  # type: ignore[index]
    assert council["winner"] == "vegeta" and council["degraded"] is True
    assert council["members"][0] == {**council["members"][0], "name": "dead", "status": "error",
                                     "error": "connection refused"}


def test_unknown_model_is_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        sdk.chat.completions.create(model="gpt-17", messages=MSGS)  # type: ignore[arg-type]
    assert "ultra-instinct" in e.value.message


def test_bad_request_names_the_field(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="ultra-instinct", messages=MSGS, temperature=7)  # type: ignore[arg-type]
    assert e.value.param == "temperature"  # type: ignore[attr-defined]


def test_dead_passthrough_is_a_server_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as e:
        sdk.chat.completions.create(model="dead", messages=MSGS)  # type: ignore[arg-type]
    assert e.value.status_code == 502 and "connection refused" in e.value.message


def test_a_cut_stream_raises_mid_stream(sdk: openai.OpenAI) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError) as e:
        for c in sdk.chat.completions.create(model="flaky", messages=MSGS, stream=True):  # type: ignore[arg-type]
            if c.choices:
                got.append(c.choices[0].delta.content or "")
    assert "flaky" in e.value.message and "ended before the answer was complete" in e.value.message
    assert "".join(got) == "one two"


def test_models_list_through_the_sdk(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert ids[0] == "ultra-instinct" and {"qwen", "llama", "phoenix"} <= set(ids)


def test_every_shape_conforms_to_openais_schemas(stack: dict[str, object]) -> None:
    base = str(stack["base"])
    with httpx.Client(base_url=base, timeout=10) as c:
        conformance.check("ListModelsResponse", c.get("/models").json())
        for model in ("ultra-instinct", "phoenix", "llama"):
            conformance.check("CreateChatCompletionResponse",
                              c.post("/chat/completions", json={"model": model, "messages": MSGS}).json())
            r = c.post("/chat/completions", json={"model": model, "messages": MSGS, "stream": True,
                                                  "stream_options": {"include_usage": True}})
            events = conformance.check_stream(r.text)
            assert events[-1] == "[DONE]" and events[-2]["council"]
        r = c.post("/chat/completions", json={"model": "flaky", "messages": MSGS, "stream": True})
        assert "error" in conformance.check_stream(r.text)[-2]
        for bad in ({"model": "nope", "messages": MSGS}, {"model": "dead", "messages": MSGS}, {"model": 1}):
            r = c.post("/chat/completions", json=bad)
            assert r.status_code >= 400
            conformance.check("ErrorResponse", r.json())


def test_the_proxy_log_never_shows_a_traceback(stack: dict[str, object]) -> None:
    log = stack["proxy"].log()  # type: ignore[attr-defined]
    assert "Traceback" not in log and "config:" in log


