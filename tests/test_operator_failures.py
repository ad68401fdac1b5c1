"""An upstream's complaint about the operator's account is the backend's failure, not the client's: a
revoked operator key gives the fallback's answer or a 502 naming the backend, never the client a 401 or any
part of the operator's key; an exhausted quota a 503 with the upstream's Retry-After. A request's own 4xx
still goes back as it was."""

from __future__ import annotations

import logging

import pytest
import respx
from litestar.testing import TestClient

from proxy.app import create_app
from routing import config

CLOUD = "https://api.cloud.test/v1"
LOCAL = "http://local.test/v1"
REVOKED = {"error": {"message": "Incorrect API key provided: sk-proj-****************************abcd. You can "
                                "find your API key at https://platform.openai.com/account/api-keys.",
                     "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
QUOTA = {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                   "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "from the fallback"}, "finish_reason": "stop"}]}
CONFIG = f"""
[backends.cloudy]
url = "{CLOUD}"
model = "gpt-x"

[backends.local]
url = "{LOCAL}"
model = "qwen"

[models.ultra-instinct]
strategy = "single"
members = ["cloudy"]
fallbacks = ["local"]

[models.cloud-only]
strategy = "single"
members = ["cloudy"]
"""
ASK = {"messages": [{"role": "user", "content": "hi"}]}


def _mock(m: respx.MockRouter, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
    m.get(f"{CLOUD}/models").respond(json={"data": [{"id": "gpt-x"}]})
    m.get(f"{LOCAL}/models").respond(json={"data": [{"id": "qwen"}]})
    m.post(f"{CLOUD}/chat/completions").respond(status, json=body, headers=headers)
    m.post(f"{LOCAL}/chat/completions").respond(json=ANSWER)


def test_a_revoked_operator_key_is_the_backends_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shenron")
    with respx.mock(assert_all_called=False) as m:
        _mock(m, 401, REVOKED)
        with TestClient(create_app(config.parse(CONFIG))) as client:
            fell_back = client.post("/v1/chat/completions", json={**ASK, "model": "ultra-instinct"})
            alone = client.post("/v1/chat/completions", json={**ASK, "model": "cloud-only"})
            streamed = client.post("/v1/chat/completions", json={**ASK, "model": "cloud-only", "stream": True})
            messages = client.post("/v1/messages", json={**ASK, "model": "cloud-only", "max_tokens": 5})
            status = client.get("/status").text
    assert fell_back.status_code == 200 and fell_back.json()["choices"][0]["message"]["content"] == "from the fallback"
    assert fell_back.json()["council"]["members"][0]["status"] == "error"
    for r in (alone, streamed, messages):
        assert r.status_code == 502, r.text
        assert "cloudy" in r.text and "refused the credentials" in r.text
        assert "sk-" not in r.text and "abcd" not in r.text and "Incorrect API key" not in r.text
    assert alone.json()["error"]["code"] == "upstream_auth"
    assert "Incorrect API key provided" in status and "sk-proj" not in status, "the operator reads why, keyless"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Incorrect API key provided" in logged and "sk-proj" not in logged


def test_an_exhausted_quota_is_a_503_with_the_upstreams_retry_after() -> None:
    with respx.mock(assert_all_called=False) as m:
        _mock(m, 429, QUOTA, {"retry-after": "17"})
        with TestClient(create_app(config.parse(CONFIG))) as client:
            r = client.post("/v1/chat/completions", json={**ASK, "model": "cloud-only"})
            fell_back = client.post("/v1/chat/completions", json={**ASK, "model": "ultra-instinct"})
    assert r.status_code == 503 and r.headers["retry-after"] == "17"
    assert r.json()["error"]["code"] == "upstream_quota" and "exceeded your current quota" not in r.text
    assert fell_back.status_code == 200


def test_the_requests_own_4xx_still_reaches_the_client() -> None:
    bad = {"error": {"message": "max_tokens is too large: 99999999.", "type": "invalid_request_error",
                     "param": "max_tokens", "code": None}}
    with respx.mock(assert_all_called=False) as m:
        _mock(m, 400, bad)
        with TestClient(create_app(config.parse(CONFIG))) as client:
            r = client.post("/v1/chat/completions", json={**ASK, "model": "ultra-instinct"})
    assert r.status_code == 400 and r.json()["error"]["message"] == bad["error"]["message"]
    assert r.json()["error"]["param"] == "max_tokens"
