"""No 500, second pass: an upstream's 200 that is not what its endpoint answers is that backend's failure
(a 502 naming it, its breaker told), on embeddings, legacy completions and count_tokens; a first answer
with malformed logprobs is the member's failure, never a TypeError in the cascade."""

from __future__ import annotations

import pytest
import respx
from litestar.testing import TestClient

from proxy.app import create_app
from routing import config

LOCAL = "http://local.test/v1"
CLAUDE = "https://api.anthropic.test/v1"
CONFIG = f"""
[backends.local]
url = "{LOCAL}"
model = "qwen"

[backends.claude]
url = "{CLAUDE}"
model = "claude-sonnet-4"
kind = "anthropic"

[backends.other]
url = "http://other.test/v1"
model = "other"

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
"""


@pytest.mark.parametrize("body", [b"<html>502 from a load balancer</html>", b"[1, 2]", b"\xff\xfe", b""])
def test_a_200_that_is_not_an_answer_is_the_backends_failure(body: bytes) -> None:
    with respx.mock(assert_all_called=False) as m:
        for url in (LOCAL, CLAUDE, "http://other.test/v1"):
            m.get(f"{url}/models").respond(json={"data": []})
        m.post(f"{LOCAL}/embeddings").respond(200, content=body, headers={"content-type": "application/json"})
        m.post(f"{LOCAL}/completions").respond(200, content=body, headers={"content-type": "application/json"})
        m.post(f"{CLAUDE}/messages/count_tokens").respond(200, content=body)
        with TestClient(create_app(config.parse(CONFIG))) as client:
            answers = [client.post("/v1/embeddings", json={"model": "local", "input": "x"}),
                       client.post("/v1/completions", json={"model": "local", "prompt": "x"}),
                       client.post("/v1/messages/count_tokens", json={
                           "model": "claude", "messages": [{"role": "user", "content": "hi"}]})]
    for r in answers:
        assert r.status_code == 502, r.text
        assert "malformed response" in r.text and "Internal error" not in r.text


@pytest.mark.parametrize("logprobs", [{"content": 5}, {"content": [{"token": "a", "logprob": "x"}]}, "high", [1]])
def test_a_first_answer_with_malformed_logprobs_is_not_a_500(logprobs: object) -> None:
    with respx.mock(assert_all_called=False) as m:
        for url in (LOCAL, CLAUDE, "http://other.test/v1"):
            m.get(f"{url}/models").respond(json={"data": []})
        m.post(f"{LOCAL}/chat/completions").respond(json={"choices": [{
            "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop", "logprobs": logprobs}]})
        m.post("http://other.test/v1/chat/completions").respond(json={"choices": [{
            "message": {"role": "assistant", "content": "Paris, surely"}, "finish_reason": "stop"}]})
        with TestClient(create_app(config.parse(CONFIG))) as client:
            r = client.post("/v1/chat/completions", json={"model": "cascade",
                                                          "messages": [{"role": "user", "content": "capital?"}]})
            direct = client.post("/v1/chat/completions", json={"model": "local",
                                                               "messages": [{"role": "user", "content": "capital?"}]})
    assert r.status_code in (200, 502) and "Internal error" not in r.text, r.text
    assert direct.status_code == 502 and "logprobs" in direct.json()["error"]["message"]
