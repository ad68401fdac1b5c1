"""Property-based, every endpoint: what clients send and what upstreams answer never reaches a 500.

`tests/test_fuzz.py` covers chat, Messages and Responses bodies and chat answers. Here: bodies of
embeddings, legacy completions and `count_tokens`; upstream answers of every endpoint (embeddings,
completions, Messages pass-through to an Anthropic backend, `count_tokens`), and the fields the engine
reads inside a chat answer (`logprobs`, `usage` and its details, streamed tool-call deltas), through a
pass-through, a council and a cascade that reads the first answer's logprobs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from proxy.app import create_app
from routing import config
from tests.test_fuzz import FUZZ, GOOD, json_values

LOCAL, OTHER, THIRD, CLAUDE = ("http://local.test/v1", "http://other.test/v1", "http://third.test/v1",
                               "https://api.anthropic.test/v1")
CONFIG = f"""
[server]
breaker-failures = 1000000

[backends.local]
url = "{LOCAL}"
model = "qwen"

[backends.other]
url = "{OTHER}"
model = "other"

[backends.third]
url = "{THIRD}"
model = "third"

[backends.claude]
url = "{CLAUDE}"
model = "claude-sonnet-4"
kind = "anthropic"

[models.first]
strategy = "single"
members = ["local"]

[models.stronger]
strategy = "single"
members = ["other"]

[models.cascade]
strategy = "cascade"
first = "first"
escalate-to = "stronger"
min-confidence = 0.5

[models.council]
strategy = "council"
members = ["local", "other", "third"]
early-decision = false
min-answers = 1
"""
MSGS = [{"role": "user", "content": "?"}]


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[TestClient[Any], respx.MockRouter]]:
    with respx.mock(assert_all_called=False) as mock:
        for url in (LOCAL, OTHER, THIRD, CLAUDE):
            mock.get(f"{url}/models").respond(json={"data": []})
        with TestClient(create_app(config.parse(CONFIG))) as c:
            yield c, mock


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.ERROR)
    yield caplog.records


def _no_500(r: httpx.Response, errors_logged: list[logging.LogRecord]) -> None:
    assert r.status_code < 500 or r.status_code in (502, 503, 504), r.text
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], r.text
    assert "Internal error" not in r.text
    assert not [rec for rec in errors_logged if rec.exc_info]


models = st.sampled_from(["local", "claude", "first", "council"]) | json_values
embedding_bodies = st.fixed_dictionaries({"model": models}, optional={
    k: json_values for k in ("input", "encoding_format", "dimensions", "user", "stream")})
completion_bodies = st.fixed_dictionaries({"model": models}, optional={
    k: json_values for k in ("prompt", "suffix", "max_tokens", "stream", "temperature", "logprobs", "echo")})
count_bodies = st.fixed_dictionaries({"model": models}, optional={
    k: json_values for k in ("messages", "system", "tools")})


@FUZZ
@given(path=st.sampled_from(["/v1/embeddings", "/v1/completions", "/v1/messages/count_tokens"]),
       data=st.data())
def test_no_body_on_the_other_endpoints_reaches_a_500(client: tuple[TestClient[Any], respx.MockRouter], path: str,
                                                      data: st.DataObject,
                                                      errors_logged: list[logging.LogRecord]) -> None:
    c, mock = client
    mock.post(f"{LOCAL}/embeddings").respond(json={"object": "list", "data": [], "model": "qwen"})
    mock.post(f"{LOCAL}/completions").respond(json={"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}]})
    mock.post(f"{CLAUDE}/messages/count_tokens").respond(json={"input_tokens": 3})
    strategy = {"/v1/embeddings": embedding_bodies, "/v1/completions": completion_bodies,
                "/v1/messages/count_tokens": count_bodies}[path]
    r = c.post(path, content=json.dumps(data.draw(strategy | json_values)))
    _no_500(r, errors_logged)


upstream_answers = json_values | st.fixed_dictionaries({}, optional={
    "data": st.lists(st.fixed_dictionaries({}, optional={"index": json_values, "embedding": json_values})
                     | json_values, max_size=2) | json_values,
    "choices": st.lists(st.fixed_dictionaries({}, optional={"index": json_values, "text": json_values,
                                                            "finish_reason": json_values}) | json_values,
                        max_size=2) | json_values,
    "usage": json_values, "input_tokens": json_values, "content": json_values, "type": json_values,
    "role": json_values, "stop_reason": json_values})


@FUZZ
@given(answer=upstream_answers, stream=st.booleans())
def test_no_upstream_answer_on_the_other_endpoints_reaches_a_500(client: tuple[TestClient[Any], respx.MockRouter],
                                                                 answer: Any, stream: bool,
                                                                 errors_logged: list[logging.LogRecord]) -> None:
    c, mock = client
    for route in (f"{LOCAL}/embeddings", f"{LOCAL}/completions", f"{CLAUDE}/messages/count_tokens",
                  f"{CLAUDE}/messages"):
        mock.post(route).respond(200, json=answer)
    sent = [c.post("/v1/embeddings", json={"model": "local", "input": ["a", "b"]}),
            c.post("/v1/completions", json={"model": "local", "prompt": "x"}),
            c.post("/v1/messages/count_tokens", json={"model": "claude", "messages": MSGS}),
            c.post("/v1/messages", json={"model": "claude", "max_tokens": 5, "messages": MSGS}),
            c.post("/v1/chat/completions", json={"model": "claude", "messages": MSGS, "stream": stream})]
    for r in sent:
        _no_500(r, errors_logged)


usage_like = st.fixed_dictionaries({}, optional={
    "prompt_tokens": json_values, "completion_tokens": json_values, "total_tokens": json_values,
    "prompt_tokens_details": st.fixed_dictionaries({}, optional={"cached_tokens": json_values}) | json_values,
    "completion_tokens_details": json_values, "cache_read_input_tokens": json_values,
    "cache_creation_input_tokens": json_values}) | json_values
logprobs_like = st.fixed_dictionaries({}, optional={
    "content": st.lists(st.fixed_dictionaries({}, optional={
        "token": json_values, "logprob": json_values, "top_logprobs": json_values}) | json_values, max_size=3)
    | json_values}) | json_values
tool_calls_like = st.lists(st.fixed_dictionaries({}, optional={
    "index": json_values, "id": json_values, "type": json_values,
    "function": st.fixed_dictionaries({}, optional={"name": json_values, "arguments": json_values}) | json_values})
    | json_values, max_size=2) | json_values


def _answer(logprobs: Any, usage: Any, tool_calls: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "Paris"}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {**GOOD, "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}],
            "usage": usage}


def _stream(logprobs: Any, usage: Any, tool_calls: Any) -> bytes:
    delta: dict[str, Any] = {"content": "Paris"}
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    events = [{"choices": [{"index": 0, "delta": delta, "logprobs": logprobs}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, {"choices": [], "usage": usage}]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


@FUZZ
@given(logprobs=logprobs_like, usage=usage_like, tool_calls=st.none() | tool_calls_like, stream=st.booleans(),
       model=st.sampled_from(["first", "cascade", "council"]))
def test_the_fields_the_engine_reads_never_reach_a_500(client: tuple[TestClient[Any], respx.MockRouter], logprobs: Any,
                                                       usage: Any, tool_calls: Any, stream: bool, model: str,
                                                       errors_logged: list[logging.LogRecord]) -> None:
    """Fuzzed logprobs, usage (and its cached-token details) and tool calls in the local member's answer; the
    other members answer well. A pass-through answers or names the member's failure; the cascade reads the
    logprobs for its confidence; the council goes on without a member that answered nonsense."""
    c, mock = client
    if stream:
        mock.post(f"{LOCAL}/chat/completions").respond(200, content=_stream(logprobs, usage, tool_calls),
                                                        headers={"content-type": "text/event-stream"})
    else:
        mock.post(f"{LOCAL}/chat/completions").respond(200, json=_answer(logprobs, usage, tool_calls))
    for url in (OTHER, THIRD):
        mock.post(f"{url}/chat/completions").respond(200, json=GOOD)
    r = c.post("/v1/chat/completions", json={"model": model, "messages": MSGS, "stream": stream, "logprobs": True})
    _no_500(r, errors_logged)
    if model == "council":
        assert r.status_code == 200, r.text  # two good members: the council answers whatever the third sent
