"""Property-based: nothing a client sends, and nothing an upstream answers, reaches a 500.

Every body gets a 200 or OpenAI's error envelope with a 4xx; every upstream answer of the wrong
shape is that member's failure, and the healthy members still answer. No traceback is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from proxy.app import create_app
from routing import config

CONFIG = """
[server]
breaker-failures = 1000000

[backends.goku]
url = "http://goku.test/v1"
model = "qwen"

[backends.vegeta]
url = "http://vegeta.test/v1"
model = "llama"

[backends.piccolo]
url = "http://piccolo.test/v1"
model = "mistral"

[models.ultra-instinct]
strategy = "single"
members = ["goku"]

[models.fallback]
strategy = "single"
members = ["vegeta"]
fallbacks = ["piccolo"]

[models.full-council]
strategy = "council"
members = ["goku", "vegeta", "piccolo"]
early-decision = false
min-answers = 1
"""
GOOD = {"id": "u", "object": "chat.completion", "created": 1, "model": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _upstream(request: httpx.Request) -> httpx.Response:
    """A good answer in the shape asked for: a stream to a streamed request, so the fuzzer's `stream: true`
    tests Shenron's stream (an upstream that answers a stream with a whole JSON answer is a 502:
    `test_a_stream_answered_whole_is_the_member_s_failure`)."""
    try:
        streamed = json.loads(request.content).get("stream") is True
    except (ValueError, AttributeError):
        streamed = False
    if streamed:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_sse(
            {"id": "u", "object": "chat.completion.chunk", "created": 1, "model": "x",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris"}, "finish_reason": None}]},
            {"id": "u", "object": "chat.completion.chunk", "created": 1, "model": "x",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    return httpx.Response(200, json=GOOD)

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer"]) | json_values
parts = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]) | json_values},
                                       optional={"text": json_values, "image_url": json_values}) | json_values,
                 max_size=3)
messages = st.lists(st.fixed_dictionaries({"role": roles}, optional={
    "content": st.text(max_size=10) | parts | json_values, "name": json_values, "tool_calls": json_values,
    "tool_call_id": json_values}) | json_values, max_size=3)
FIELDS = ["temperature", "top_p", "max_tokens", "n", "stream", "stream_options", "tools", "tool_choice", "stop",
          "seed", "logprobs", "top_logprobs", "response_format", "user", "metadata", "shenron", "logit_bias",
          "presence_penalty", "parallel_tool_calls"]
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["ultra-instinct", "full-council"]) | json_values, "messages": messages | json_values},
    optional={k: json_values for k in FIELDS})


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[TestClient[Any], respx.MockRouter]]:
    with respx.mock(assert_all_called=False) as mock:
        for host in ("goku", "vegeta", "piccolo"):
            mock.get(f"http://{host}.test/v1/models").respond(json={"data": []})
            mock.post(f"http://{host}.test/v1/chat/completions").mock(side_effect=_upstream)
        with TestClient(create_app(config.parse(CONFIG))) as c:
            yield c, mock


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.ERROR)
    yield caplog.records


def _envelope_or_answer(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["message"]


@FUZZ
@given(body=bodies)
def test_no_request_body_reaches_a_500(client: tuple[TestClient[Any], respx.MockRouter], body: Any,
                                       errors_logged: list[logging.LogRecord]) -> None:
    r = client[0].post("/v1/chat/completions", content=json.dumps(body))
    _envelope_or_answer(r)
    if r.status_code == 400:
        assert r.json()["error"]["param"] is not None or r.json()["error"]["code"] in ("invalid_json", "too_deep",
                                                                                       "invalid_type")
    assert not [rec for rec in errors_logged if rec.exc_info]


blocks = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document"]) | json_values},
    optional={"text": json_values, "source": json_values, "id": json_values, "name": json_values,
              "input": json_values, "tool_use_id": json_values, "content": json_values, "thinking": json_values})
    | json_values, max_size=3)
anthropic_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["ultra-instinct", "full-council"]) | json_values,
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"])
                                                 | json_values},
                                                optional={"content": st.text(max_size=8) | blocks | json_values})
                          | json_values, max_size=3) | json_values},
    optional={k: json_values for k in ("max_tokens", "system", "tools", "tool_choice", "stop_sequences",
                                       "temperature", "top_p", "top_k", "stream", "metadata", "thinking")})
items = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning",
                              "custom_tool_call"]) | json_values},
    optional={"role": roles, "content": st.text(max_size=8) | json_values, "call_id": json_values,
              "name": json_values, "arguments": json_values, "output": json_values}) | json_values, max_size=3)
responses_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["ultra-instinct", "full-council"]) | json_values,
     "input": st.text(max_size=8) | items | json_values},
    optional={k: json_values for k in ("instructions", "tools", "tool_choice", "text", "reasoning", "stream",
                                       "max_output_tokens", "temperature", "metadata", "store", "include",
                                       "previous_response_id", "parallel_tool_calls")})


@FUZZ
@given(body=anthropic_bodies)
def test_no_messages_body_reaches_a_500(client: tuple[TestClient[Any], respx.MockRouter], body: Any,
                                        errors_logged: list[logging.LogRecord]) -> None:
    r = client[0].post("/v1/messages", content=json.dumps(body))
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["type"] == "error" and r.json()["error"]["message"]
    assert not [rec for rec in errors_logged if rec.exc_info]


@FUZZ
@given(body=responses_bodies)
def test_no_responses_body_reaches_a_500(client: tuple[TestClient[Any], respx.MockRouter], body: Any,
                                         errors_logged: list[logging.LogRecord]) -> None:
    r = client[0].post("/v1/responses", content=json.dumps(body))
    _envelope_or_answer(r)
    assert not [rec for rec in errors_logged if rec.exc_info]


@pytest.mark.parametrize("raw", [
    b'{"model": "ultra-instinct", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    b"[" * 100000 + b"]" * 100000,
    b'{"model": "ultra-instinct", "messages": [{"role": ["user"], "content": "x"}]}',
    b'{"model": "ultra-instinct", "messages": [{"role": {"a": 1}, "content": "x"}]}',
    b'{"model": "ultra-instinct", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
])
def test_the_fuzzers_finds_are_envelopes_naming_the_field(client: tuple[TestClient[Any], respx.MockRouter],
                                                           raw: bytes) -> None:
    r = client[0].post("/v1/chat/completions", content=raw)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] or err["code"] == "too_deep"


chunk_like = st.fixed_dictionaries({}, optional={
    "choices": st.lists(st.fixed_dictionaries({}, optional={
        "index": json_values, "message": st.fixed_dictionaries({}, optional={
            "content": json_values, "tool_calls": json_values, "role": json_values}) | json_values,
        "finish_reason": json_values}) | json_values, max_size=2) | json_values,
    "usage": st.fixed_dictionaries({}, optional={"prompt_tokens": json_values, "completion_tokens": json_values})
    | json_values})


@FUZZ
@given(bad=chunk_like | json_values, stream=st.booleans())
def test_a_council_member_answering_nonsense_fails_alone(client: tuple[TestClient[Any], respx.MockRouter], bad: Any,
                                                         stream: bool, errors_logged: list[logging.LogRecord]) -> None:
    c, mock = client
    mock.post("http://vegeta.test/v1/chat/completions").respond(json=bad)
    for host in ("goku", "piccolo"):
        mock.post(f"http://{host}.test/v1/chat/completions").respond(json=GOOD)
    r = c.post("/v1/chat/completions", json={"model": "full-council", "messages": [{"role": "user", "content": "?"}],
                                             "stream": stream})
    assert r.status_code == 200, r.text
    if stream:
        chunks = [json.loads(b[6:]) for b in r.text.split("\n\n") if b.startswith("data: {")]
        council = chunks[-1]["council"]
        assert "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"]) == "Paris"
    else:
        council = r.json()["council"]
        assert r.json()["choices"][0]["message"]["content"] == "Paris"
    status = {m["name"]: m["status"] for m in council["members"]}
    assert status["goku"] == status["piccolo"] == "ok"
    vegeta = next(m for m in council["members"] if m["name"] == "vegeta")
    assert vegeta["status"] == "ok" or vegeta["error"]  # a failure names its reason
    assert not [rec for rec in errors_logged if rec.exc_info]


def _sse(*events: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


@FUZZ
@given(bad=chunk_like | json_values, stream=st.booleans())
def test_a_streamed_member_sending_nonsense_falls_back_or_ends_with_an_error_event(
        client: tuple[TestClient[Any], respx.MockRouter], bad: Any, stream: bool,
        errors_logged: list[logging.LogRecord]) -> None:
    c, mock = client
    mock.post("http://vegeta.test/v1/chat/completions").respond(200, content=_sse(bad),
                                                                headers={"content-type": "text/event-stream"})
    paris = _sse({"choices": [{"index": 0, "delta": {"content": "Paris"}}]},
                 {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    mock.post("http://piccolo.test/v1/chat/completions").respond(200, content=paris,
                                                                 headers={"content-type": "text/event-stream"})
    r = c.post("/v1/chat/completions", json={"model": "fallback", "messages": [{"role": "user", "content": "?"}],
                                             "stream": True})
    assert r.status_code in (200, 502), r.text
    if r.status_code == 200:
        chunks = [json.loads(b[6:]) for b in r.text.split("\n\n") if b.startswith("data: {")]
        last = chunks[-1]
        assert "council" in last or "error" in last  # an answer with its metadata, or an error event
        if "council" in last and last["council"]["winner"] == "piccolo":
            assert last["council"]["members"][0]["error"]  # vegeta's failure is named
    assert not [rec for rec in errors_logged if rec.exc_info]


def test_a_stream_of_only_done_falls_back(client: tuple[TestClient[Any], respx.MockRouter]) -> None:
    c, mock = client
    mock.post("http://goku.test/v1/chat/completions").respond(200, content=b"data: [DONE]\n\n",
                                                              headers={"content-type": "text/event-stream"})
    r = c.post("/v1/chat/completions", json={"model": "ultra-instinct", "stream": True,
                                             "messages": [{"role": "user", "content": "?"}]})
    assert r.status_code == 502
    assert "stream ended without an answer" in r.json()["error"]["message"]


def test_a_stream_answered_whole_is_the_member_s_failure(client: tuple[TestClient[Any], respx.MockRouter]) -> None:
    c, mock = client
    mock.post("http://goku.test/v1/chat/completions").respond(json=GOOD)  # the whole answer, to a stream request
    r = c.post("/v1/chat/completions", json={"model": "ultra-instinct", "stream": True,
                                             "messages": [{"role": "user", "content": "?"}]})
    assert r.status_code == 502 and "goku" in r.json()["error"]["message"], r.text
