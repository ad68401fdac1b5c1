"""The HTTP edge, in process: Litestar's TestClient in front, respx standing in for the backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from litestar.testing import TestClient

from proxy.app import create_app
from routing import config

CONFIG = """
[server]
max-body-mb = 0.01

[backends.goku]
url = "http://goku.test/v1"
model = "qwen"
timeout-s = 2

[backends.vegeta]
url = "http://vegeta.test/v1"
model = "llama"

[models.ultra-instinct]
strategy = "single"
members = ["goku"]
fallbacks = ["vegeta"]
"""

MSGS = [{"role": "user", "content": "hi"}]


def answer(text: str, model: str = "x") -> dict[str, Any]:
    return {"id": "u", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def sse(*texts: str, finish: bool = True, done: bool = True) -> httpx.Response:
    events = [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    if finish:
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return httpx.Response(200, content=body + (b"data: [DONE]\n\n" if done else b""),
                          headers={"content-type": "text/event-stream"})


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as m:
        for host, ids in (("goku", ["qwen"]), ("vegeta", ["llama", "llama-extra"])):
            m.get(f"http://{host}.test/v1/models").respond(json={"data": [{"id": i} for i in ids]})
        yield m


@pytest.fixture
def client(mock: respx.MockRouter) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(config.parse(CONFIG))) as c:
        yield c


def events(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_ultra_instinct_answers_from_its_member(client: TestClient[Any], mock: respx.MockRouter) -> None:
    route = mock.post("http://goku.test/v1/chat/completions").respond(json=answer("42"))
    r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS, "seed": 3,
                                                  "some_vendor_extra": {"a": [1]}})
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "42" and body["model"] == "ultra-instinct"
    assert body["council"]["winner"] == "goku" and body["council"]["strategy"] == "single"
    assert body["council"]["members"][0]["usage"]["total_tokens"] == 5
    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "qwen" and sent["seed"] == 3 and sent["some_vendor_extra"] == {"a": [1]}


def test_fallback_answers_and_the_metadata_says_why(client: TestClient[Any], mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    mock.post("http://vegeta.test/v1/chat/completions").respond(json=answer("from vegeta"))
    body = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS}).json()
    assert body["choices"][0]["message"]["content"] == "from vegeta"
    council = body["council"]
    assert council["winner"] == "vegeta" and council["degraded"] is True
    assert [(m["name"], m["status"]) for m in council["members"]] == [("goku", "error"), ("vegeta", "ok")]
    assert "cannot connect" in council["members"][0]["error"]


def test_stream_falls_back_before_the_first_byte(client: TestClient[Any], mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").respond(500, text="dead")
    mock.post("http://vegeta.test/v1/chat/completions").mock(return_value=sse("a", "b"))
    r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS, "stream": True,
                                                  "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = events(r.text)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "ab"
    assert len({c["id"] for c in chunks}) == 1
    usage_chunk, council_chunk = chunks[-2], chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 2
    assert council_chunk["choices"] == [] and council_chunk["council"]["winner"] == "vegeta"
    assert council_chunk["council"]["members"][0]["error"].startswith("HTTP 500")


def test_a_stream_cut_midway_ends_with_an_error_event(client: TestClient[Any], mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").mock(return_value=sse("a", finish=False, done=False))
    r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS, "stream": True})
    ev = events(r.text)
    assert ev[-1] == "[DONE]"
    assert "goku" in ev[-2]["error"]["message"] and ev[-2]["error"]["type"] == "upstream_error"
    assert not any(c["choices"] and c["choices"][0].get("finish_reason") for c in ev[:-2])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSGS}, "model"),
        ({"model": "ultra-instinct"}, "messages"),
        ({"model": "ultra-instinct", "messages": []}, "messages"),
        ({"model": "ultra-instinct", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "ultra-instinct", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "ultra-instinct", "messages": MSGS, "temperature": 9}, "temperature"),
        ({"model": "ultra-instinct", "messages": MSGS, "max_tokens": 0}, "max_tokens"),
        ({"model": "ultra-instinct", "messages": MSGS, "stream": "yes"}, "stream"),
    ],
)
def test_validation_errors_name_the_field(client: TestClient[Any], body: dict[str, Any], param: str) -> None:
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = error_of(r)
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_malformed_json_is_a_400(client: TestClient[Any]) -> None:
    r = client.post("/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"


def test_unknown_model_is_a_404_listing_the_available_ones(client: TestClient[Any]) -> None:
    r = client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": MSGS})
    assert r.status_code == 404
    err = error_of(r)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "ultra-instinct" in err["message"] and "qwen" in err["message"]


def test_oversized_body_is_a_413(client: TestClient[Any]) -> None:
    big = [{"role": "user", "content": "x" * 20_000}]
    r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": big})
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"


def test_every_member_failing_is_a_502_naming_each(client: TestClient[Any], mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    mock.post("http://vegeta.test/v1/chat/completions").respond(503, json={"error": {"message": "overloaded"}})
    r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS})
    assert r.status_code == 502
    msg = error_of(r)["message"]
    assert "goku: cannot connect" in msg and "vegeta: HTTP 503: overloaded" in msg


def test_timeouts_are_a_504(client: TestClient[Any], mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    r = client.post("/v1/chat/completions", json={"model": "goku", "messages": MSGS})
    assert r.status_code == 504 and error_of(r)["type"] == "timeout_error"
    assert "goku" in error_of(r)["message"]


def test_an_upstream_4xx_comes_back_as_it_was(client: TestClient[Any], mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").respond(
        400, json={"error": {"message": "context length exceeded", "type": "invalid_request_error",
                             "param": "messages", "code": "context_length_exceeded"}})
    r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS})
    assert r.status_code == 400
    assert error_of(r) == {"message": "context length exceeded", "type": "invalid_request_error",
                           "param": "messages", "code": "context_length_exceeded"}


@pytest.mark.parametrize("name", ["goku", "qwen", "llama-extra"])
def test_passthrough_by_backend_name_model_id_or_served_model(
    client: TestClient[Any], mock: respx.MockRouter, name: str
) -> None:
    host = "vegeta" if name == "llama-extra" else "goku"
    route = mock.post(f"http://{host}.test/v1/chat/completions").respond(json=answer("hi"))
    body = client.post("/v1/chat/completions", json={"model": name, "messages": MSGS}).json()
    assert body["council"]["strategy"] == "passthrough" and body["council"]["winner"] == host
    assert json.loads(route.calls.last.request.content)["model"] == ("llama-extra" if host == "vegeta" else "qwen")


def test_models_lists_virtual_and_passthrough_models(client: TestClient[Any]) -> None:
    data = client.get("/v1/models").json()["data"]
    ids = [m["id"] for m in data]
    assert ids[0] == "ultra-instinct" and {"qwen", "llama", "llama-extra"} <= set(ids)
    assert all(set(m) == {"id", "object", "created", "owned_by"} for m in data)
    assert client.get("/v1/models/ultra-instinct").json()["id"] == "ultra-instinct"


def test_health_and_ready(client: TestClient[Any]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["reachable"] == ["goku", "vegeta"]


def test_unknown_path_is_an_envelope(client: TestClient[Any]) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and "GET /v1/nothing" in error_of(r)["message"]


def test_no_backends_means_a_clear_503() -> None:
    with TestClient(create_app(config.Config(source="discovery"))) as c:
        r = c.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS})
        assert r.status_code == 503 and "no backends" in error_of(r)["message"]
        assert c.get("/ready").status_code == 503


def test_a_failed_request_still_counts_its_members_in_metrics(client: TestClient[Any],
                                                              mock: respx.MockRouter) -> None:
    mock.post("http://goku.test/v1/chat/completions").respond(500, json={"error": {"message": "boom"}})
    mock.post("http://vegeta.test/v1/chat/completions").respond(500, json={"error": {"message": "boom"}})
    assert client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS}).status_code == 502
    text = client.get("/metrics").text
    assert 'shenron_member_calls_total{member="goku",status="error"} 1.0' in text
    assert 'shenron_member_calls_total{member="vegeta",status="error"} 1.0' in text
    assert 'shenron_requests_total{model="ultra-instinct",status="502"} 1.0' in text


def test_the_base_url_answers_a_probe_and_unknown_paths_name_what_is_served(client: TestClient[Any]) -> None:
    assert client.head("/").status_code == 200  # Claude Code sends HEAD / before anything else
    assert "POST /v1/chat/completions" in client.get("/").json()["endpoints"]
    r = client.post("/v1/unknown-endpoint", json={})
    err = error_of(r)
    assert r.status_code == 404 and "POST /v1/unknown-endpoint" in err["message"]
    assert "POST /v1/chat/completions" in err["message"] and "GET /v1/models" in err["message"]
    r = client.delete("/v1/models")
    assert r.status_code == 405 and "Method not allowed: DELETE /v1/models" in error_of(r)["message"]


def test_cors_is_off_unless_origins_are_configured(mock: respx.MockRouter) -> None:
    preflight = {"origin": "https://chat.example.com", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type"}
    with TestClient(create_app(config.parse(CONFIG))) as c:
        r = c.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(config.parse('[server]\ncors-origins = ["https://chat.example.com"]\n' +
                                            CONFIG.replace("[server]\n", "")))) as c:
        r = c.options("/v1/chat/completions", headers=preflight)
        assert r.status_code in (200, 204)
        assert r.headers["access-control-allow-origin"] == "https://chat.example.com"
        mock.post("http://goku.test/v1/chat/completions").respond(json=answer("42"))
        r = c.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": MSGS},
                   headers={"origin": "https://chat.example.com"})
        assert r.headers["access-control-allow-origin"] == "https://chat.example.com"


@pytest.mark.parametrize(("keep", "asked", "kept"), [
    ("requested", None, True), ("requested", False, False), ("never", None, False), ("never", True, False),
])
def test_responses_are_kept_as_the_operator_and_the_request_say(mock: respx.MockRouter, tmp_path: Any,
                                                                keep: str, asked: bool | None, kept: bool) -> None:
    import sqlite3
    import time

    mock.post("http://goku.test/v1/chat/completions").respond(json=answer("42"))
    db = tmp_path / "store.db"
    cfg = config.parse(CONFIG + f'\n[store]\npath = "{db}"\nkeep-responses = "{keep}"\nkeep-responses-days = 2\n')
    with TestClient(create_app(cfg)) as c:
        body: dict[str, Any] = {"model": "ultra-instinct", "input": "hi"}
        if asked is not None:
            body["store"] = asked
        r = c.post("/v1/responses", json=body)
        assert r.status_code == 200 and r.json()["store"] is kept  # the answer says what was done
        rid = r.json()["id"]
        assert c.get(f"/v1/responses/{rid}").status_code == (200 if kept else 404)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT expires FROM responses").fetchall()
    assert len(rows) == (1 if kept else 0)
    if kept:
        assert abs(rows[0][0] - (time.time() + 2 * 86400)) < 120
