"""kind = "anthropic": OpenAI chat to Anthropic Messages and back, streamed and not, against recorded-shape fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from litestar.testing import TestClient

from proxy.app import create_app
from proxy.errors import status_of
from proxy.store.sqlite import SQLiteStore
from routing import config
from routing.config import BackendConfig
from routing.core import Finish, TextDelta, ToolCallDelta, UsageEvent
from routing.errors import MemberFailure, UpstreamStatus
from routing.request import Request
from routing.tokens import Usage
from routing.upstream.anthropic import AnthropicBackend, to_messages

URL = "https://api.anthropic.test/v1"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city", "parameters": CITY}}]

MESSAGE = {  # the shape of a POST /v1/messages answer
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
    "content": [{"type": "text", "text": "It is 42."}],
    "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 5},
}
TOOL_MESSAGE = {**MESSAGE, "stop_reason": "tool_use", "content": [
    {"type": "text", "text": "Let me look."},
    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]}


def sse(*events: dict[str, Any]) -> httpx.Response:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


STREAM = [
    {"type": "message_start", "message": {"id": "msg_02", "type": "message", "role": "assistant", "content": [],
                                          "model": "claude-sonnet-4",
                                          "usage": {"input_tokens": 12, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "It is "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "42."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                  "name": "weather", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AnthropicBackend, respx.MockRouter]]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    cfg = BackendConfig(url=URL, model="claude-sonnet-4", kind="anthropic", api_key_env="TEST_ANTHROPIC_KEY")
    with respx.mock(assert_all_called=False) as m:
        yield AnthropicBackend("claude", cfg, httpx.AsyncClient()), m


def test_request_translation() -> None:
    body = {"model": "x", "max_tokens": 100, "temperature": 1.5, "stop": "END", "user": "u1",
            "tools": TOOLS, "tool_choice": "required", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": "Weather?"},
                {"role": "user", "content": [{"type": "text", "text": "In Paris."},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "toolu_1", "type": "function",
                     "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "user", "content": "Thanks"}]}
    out = to_messages(body, "claude-sonnet-4")
    assert out["system"] == "Be brief.\n\nUse tools."
    assert [t["role"] for t in out["messages"]] == ["user", "assistant", "user"]  # alternating, merged
    first = out["messages"][0]["content"]
    assert first[0] == {"type": "text", "text": "Weather?"} and first[2]["source"]["type"] == "base64"
    assert out["messages"][1]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                                              "input": {"city": "Paris"}}]
    assert out["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    assert out["max_tokens"] == 100 and out["temperature"] == 1.0 and out["stop_sequences"] == ["END"]
    assert out["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    assert out["tool_choice"] == {"type": "any"} and out["metadata"] == {"user_id": "u1"}
    assert to_messages({"messages": [{"role": "user", "content": "hi"}]}, "m")["max_tokens"] == 4096
    named = {"type": "function", "function": {"name": "weather"}}
    assert to_messages({"messages": [], "tool_choice": named}, "m")["tool_choice"] == {"type": "tool",
                                                                                       "name": "weather"}


async def test_complete_sends_anthropic_headers_and_translates_back(backend: Any) -> None:
    b, m = backend
    route = m.post(f"{URL}/messages").respond(json=TOOL_MESSAGE)
    out = await b.complete(Request.of({"model": "x", "messages": [{"role": "user", "content": "Weather in Paris?"}],
                                       "tools": TOOLS}))
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == "sk-ant-test" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert json.loads(sent.content)["model"] == "claude-sonnet-4"
    a = out.answer
    assert a.finish_reason == "tool_calls" and a.text == "Let me look."
    assert (a.tool_calls[0].name, a.tool_calls[0].arguments) == ("weather", '{"city":"Paris"}')
    assert out.usage == Usage(12, 5, 17)


@pytest.mark.parametrize(("reason", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                ("max_tokens", "length"), ("refusal", "content_filter")])
async def test_stop_reasons(backend: Any, reason: str, finish: str) -> None:
    b, m = backend
    m.post(f"{URL}/messages").respond(json={**MESSAGE, "stop_reason": reason})
    out = await b.complete(Request.of({"messages": [{"role": "user", "content": "hi"}]}))
    assert out.answer.finish_reason == finish


async def test_stream_events_become_the_engines_events(backend: Any) -> None:
    b, m = backend
    route = m.post(f"{URL}/messages").mock(return_value=sse(*STREAM))
    events = [e async for e in b.stream(Request.of({"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}))]
    assert json.loads(route.calls.last.request.content)["stream"] is True
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is 42."
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].id == "toolu_1" and calls[0].name == "weather"
    assert "".join(c.arguments for c in calls) == '{"city": "Paris"}'
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls"]
    assert [e.usage for e in events if isinstance(e, UsageEvent)][-1] == Usage(12, 9, 21)


async def test_error_event_and_error_status_name_the_member(backend: Any) -> None:
    b, m = backend
    m.post(f"{URL}/messages").mock(return_value=sse(STREAM[0], {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}))
    with pytest.raises(MemberFailure, match="overloaded_error: Overloaded"):
        _ = [c async for c in b.stream(Request.of({"messages": [{"role": "user", "content": "hi"}]}))]
    m.post(f"{URL}/messages").respond(400, json={"type": "error", "error": {
        "type": "invalid_request_error", "message": "messages: roles must alternate"}})
    with pytest.raises(UpstreamStatus) as e:
        await b.complete(Request.of({"messages": [{"role": "user", "content": "hi"}]}))
    assert status_of(e.value) == 400 and "roles must alternate" in e.value.message


CONFIG = f"""
[backends.local]
url = "http://local.test/v1"
model = "qwen"

[backends.claude]
url = "{URL}"
model = "claude-sonnet-4"
kind = "anthropic"
price-in = 3.0
price-out = 15.0

[models.ultra-instinct]
strategy = "single"
members = ["local"]
fallbacks = ["claude"]

[models.agent-lite]
strategy = "council"
members = ["local", "claude"]
min-answers = 1
"""


def test_an_anthropic_member_works_in_any_virtual_model() -> None:
    with respx.mock(assert_all_called=False) as m:
        m.get("http://local.test/v1/models").respond(json={"data": [{"id": "qwen"}]})
        m.get(f"{URL}/models").respond(json={"data": [{"id": "claude-sonnet-4", "type": "model"}]})
        m.post("http://local.test/v1/chat/completions").respond(500, json={"error": {"message": "boom"}})
        m.post(f"{URL}/messages").mock(side_effect=lambda req: sse(*STREAM) if json.loads(req.content)["stream"]
                                       else httpx.Response(200, json=MESSAGE))
        with TestClient(create_app(config.parse(CONFIG))) as client:
            msgs = [{"role": "user", "content": "hi"}]
            r = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": msgs})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "It is 42."
            council = r.json()["council"]
            assert council["winner"] == "claude"
            assert council["cost_usd"] == pytest.approx((12 * 3.0 + 5 * 15.0) / 1e6)
            streamed = client.post("/v1/chat/completions", json={"model": "ultra-instinct", "messages": msgs,
                                                                 "stream": True})
            assert '"content":"42."' in streamed.text and streamed.text.rstrip().endswith("data: [DONE]")
            r = client.post("/v1/chat/completions", json={"model": "agent-lite", "messages": msgs})
            status = {mm["name"]: mm["status"] for mm in r.json()["council"]["members"]}
            assert r.status_code == 200 and status == {"local": "error", "claude": "ok"}
            assert r.json()["choices"][0]["message"]["content"] == "It is 42."
            assert "claude-sonnet-4" in {x["id"] for x in client.get("/v1/models").json()["data"]}


def test_an_anthropic_coder_climbs_the_ladder_and_critiques_in_a_debate() -> None:
    code = {**MESSAGE, "content": [{"type": "text", "text": "```python\ndef f():\n    return 42\n```"}]}
    cfg = CONFIG + """
[models.codegen-escalate]
strategy = "escalate"
rungs = [{ coder = "claude", validators = ["local"] }]

[models.duo]
strategy = "duo-debate"
members = ["local", "claude"]
"""
    with respx.mock(assert_all_called=False) as m:
        m.get("http://local.test/v1/models").respond(json={"data": [{"id": "qwen"}]})
        m.get(f"{URL}/models").respond(json={"data": [{"id": "claude-sonnet-4", "type": "model"}]})
        m.post("http://local.test/v1/chat/completions").respond(json={"choices": [{"index": 0, "message": {
            "role": "assistant", "content": '{"score": 9, "issues": []}'}, "finish_reason": "stop"}]})
        anthropic = m.post(f"{URL}/messages").respond(json=code)
        with TestClient(create_app(config.parse(cfg))) as client:
            msgs = [{"role": "user", "content": "write f"}]
            r = client.post("/v1/chat/completions", json={"model": "codegen-escalate", "messages": msgs})
            assert r.status_code == 200, r.text
            council = r.json()["council"]
            assert council["iterations"][0]["coder"] == "claude" and council["iterations"][0]["compiled"] is True
            assert council["decided_by"] == "passed" and council["cost_usd"] > 0
            sent = json.loads(anthropic.calls[0].request.content)
            assert "ONE fenced code block" in sent["system"] and sent["messages"][0]["role"] == "user"
            r = client.post("/v1/chat/completions", json={"model": "duo", "messages": msgs})
            roles = {mm["role"]: mm["name"] for mm in r.json()["council"]["members"]}
            assert r.status_code == 200 and roles["critic"] == "claude"


@pytest.mark.parametrize("url", ["https://api.anthropic.test", "https://api.anthropic.test/", "https://api.anthropic.test/v1"])
def test_an_anthropic_url_works_with_or_without_v1(url: str) -> None:
    b = AnthropicBackend("claude", BackendConfig(url=url, model="m", kind="anthropic"), httpx.AsyncClient())
    assert b.chat_url == "https://api.anthropic.test/v1/messages"
    assert b.models_url == "https://api.anthropic.test/v1/models"


def test_a_messages_request_to_an_anthropic_backend_goes_through_as_it_is(tmp_path: Any) -> None:
    """Thinking, cache control and Anthropic's own fields survive: nothing is translated on the way."""
    with respx.mock(assert_all_called=False) as m:
        m.get("http://local.test/v1/models").respond(json={"data": [{"id": "qwen"}]})
        m.get(f"{URL}/models").respond(json={"data": [{"id": "claude-sonnet-4", "type": "model"}]})
        upstream = m.post(f"{URL}/messages").mock(
            side_effect=lambda req: sse(*STREAM) if json.loads(req.content).get("stream")
            else httpx.Response(200, json=MESSAGE))
        counted = m.post(f"{URL}/messages/count_tokens").respond(json={"input_tokens": 1234})
        cfg = config.parse(CONFIG + f'\n[store]\npath = "{tmp_path}/ledger.db"\n')
        with TestClient(create_app(cfg)) as client:
            body = {"model": "claude-sonnet-4", "max_tokens": 1024,
                    "thinking": {"type": "enabled", "budget_tokens": 512},
                    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                    "messages": [{"role": "user", "content": "hi"}]}
            r = client.post("/v1/messages", json=body, headers={"x-api-key": "unused"})
            assert r.status_code == 200 and r.json()["content"] == MESSAGE["content"]
            assert r.json()["council"]["strategy"] == "passthrough"
            assert r.json()["council"]["members"][0]["cost_usd"] == pytest.approx((12 * 3.0 + 5 * 15.0) / 1e6)
            sent = json.loads(upstream.calls[0].request.content)
            assert sent == body and "x-api-key" not in upstream.calls[0].request.headers  # the client's stays here
            streamed = client.post("/v1/messages", json={**body, "stream": True})
            assert streamed.text == sse(*STREAM).text  # byte for byte, Anthropic's own events
            r = client.post("/v1/messages/count_tokens", json=body)
            assert r.json() == {"input_tokens": 1234} and json.loads(counted.calls[0].request.content) == body
            r = client.post("/v1/messages", json={**body, "max_tokens": None})
            assert r.status_code == 400 and r.json()["type"] == "error"  # checked here first, as translated ones
            ledger = SQLiteStore(tmp_path / "ledger.db").open_sync().rows_sync(0)  # as `shenron usage` reads it
            rows = [(r.prompt_tokens, r.completion_tokens, r.stream) for r in ledger if r.status == 200]
            assert rows == [(12, 5, False), (12, 9, True)]  # the stream: input from message_start, output at the end


def test_the_clients_anthropic_beta_reaches_anthropic_backends_merged_and_no_other() -> None:
    """Claude Code sends `anthropic-beta: claude-code-20250219,interleaved-thinking-...` on every turn; an
    Anthropic backend gets it after its own configured betas (each once), natively and translated; an
    OpenAI-compatible member never sees it."""
    cfg_text = CONFIG.replace('kind = "anthropic"', 'kind = "anthropic"\nheaders = { "anthropic-beta" = '
                                                     '"prompt-caching-2024-07-31,claude-code-20250219" }')
    client_betas = "claude-code-20250219,interleaved-thinking-2025-05-14"
    with respx.mock(assert_all_called=False) as m:
        m.get("http://local.test/v1/models").respond(json={"data": [{"id": "qwen"}]})
        m.get(f"{URL}/models").respond(json={"data": [{"id": "claude-sonnet-4", "type": "model"}]})
        local = m.post("http://local.test/v1/chat/completions").respond(
            json={"choices": [{"message": {"role": "assistant", "content": "local"}, "finish_reason": "stop"}]})
        upstream = m.post(f"{URL}/messages").respond(json=MESSAGE)
        with TestClient(create_app(config.parse(cfg_text))) as client:
            body = {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
            native = client.post("/v1/messages", json={**body, "model": "claude-sonnet-4"},
                                 headers={"anthropic-beta": client_betas})
            council = client.post("/v1/messages", json={**body, "model": "agent-lite"},
                                  headers={"anthropic-beta": client_betas})
            plain = client.post("/v1/chat/completions", json={**body, "model": "claude"})
    assert native.status_code == council.status_code == plain.status_code == 200
    merged = "prompt-caching-2024-07-31,claude-code-20250219,interleaved-thinking-2025-05-14"
    assert [c.request.headers.get("anthropic-beta") for c in upstream.calls] == [
        merged, merged, "prompt-caching-2024-07-31,claude-code-20250219"]
    assert all("anthropic-beta" not in c.request.headers for c in local.calls) and local.calls
