"""The canonical request: typed where the engine reads it, everything else forwarded as the client sent it."""

from __future__ import annotations

import json
import operator

import msgspec

from routing.config import BackendConfig
from routing.request import Message, Request
from routing.upstream.backends import OpenAIBackend

BODY = {
    "model": "full-council", "stream": True, "stream_options": {"include_usage": True},
    "messages": [
        {"role": "system", "content": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {"role": "user", "content": [{"type": "text", "text": "What is in"}, {"type": "text", "text": "this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
    ],
    "temperature": 0.3, "seed": 7, "tools": [{"type": "function", "function": {"name": "look"}}],
    "tool_choice": "auto", "logprobs": True, "top_logprobs": 2, "response_format": {"type": "text"},
    "x_vendor": {"keep": [1, 2]}, "functions": [{"name": "legacy"}],
}


def test_what_the_engine_does_not_read_reaches_the_backend_as_the_client_sent_it() -> None:
    req = Request.of(BODY)
    assert req.temperature == 0.3 and req.seed == 7 and req.logprobs is True
    assert req.messages[1].text == "What is in\nthis?" and req.messages[2].tool_calls is not None
    sent = req.chat()
    assert sent["x_vendor"] == {"keep": [1, 2]} and sent["functions"] == [{"name": "legacy"}]
    assert sent["messages"][0] == BODY["messages"][0], "a message's own extra fields travel with it"
    assert sent["messages"][1:] == BODY["messages"][1:]
    assert "stream" not in sent and "model" not in sent, "delivery and the model are the call's, not the request's"
    expected = {k: v for k, v in BODY.items() if k not in ("model", "stream", "stream_options")}
    assert sent == expected


def test_an_inner_call_asks_for_text_only() -> None:
    inner = Request.of(BODY).plain([Message("user", "Judge these.")])
    sent = inner.chat()
    for gone in ("tools", "tool_choice", "logprobs", "top_logprobs", "response_format", "functions"):
        assert gone not in sent
    assert sent["temperature"] == 0.3 and sent["seed"] == 7 and sent["x_vendor"] == {"keep": [1, 2]}
    assert sent["messages"] == [{"role": "user", "content": "Judge these."}]
    kept = Request.of(BODY).plain([], keep=("response_format",)).chat()
    assert kept["response_format"] == {"type": "text"}


def test_a_conversation_s_tool_calls_are_typed_and_written_back_with_their_unknown_fields() -> None:
    """The engine reads a tool call's id, name and arguments as fields; what it does not know (a vendor's
    extra keys) goes back upstream as it came, and the chat API's own keys in its order."""
    from routing import wire
    from routing.request import CalledTool, Message

    raw = {"role": "assistant", "content": None, "tool_calls": [
        {"function": {"arguments": '{"cmd": "ls"}', "name": "exec_command", "strict": True}, "type": "function",
         "id": "call_1", "vendor_hint": {"cache": 1}}]}
    m = Message.of(raw)
    assert m.tool_calls == [CalledTool("call_1", "exec_command", '{"cmd": "ls"}', "function",
                                       {"vendor_hint": {"cache": 1}}, {"strict": True})]
    assert m.chat()["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "exec_command", "arguments": '{"cmd": "ls"}', "strict": True}, "vendor_hint": {"cache": 1}}]
    result = Message.of({"role": "tool", "tool_call_id": "call_1", "content": "Process exited with code 1"})
    assert wire.tool_turns([m, result]) == [[("exec_command", '{"cmd": "ls"}', "Process exited with code 1")]]
    no_id = Message.of({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]})
    assert "id" not in no_id.chat()["tool_calls"][0]  # not invented


def test_content_parts_are_typed_and_written_back_with_cache_control_and_unknown_parts() -> None:
    """The engine reads a part's text (claims, risk words) and image as fields; `cache_control` (Claude Code's
    prompt caching), audio and file parts go back upstream as they came, in the same key order."""
    from routing.request import ContentPart, Message

    parts = [{"type": "text", "text": "Look at this.", "cache_control": {"type": "ephemeral"}},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"}},
             {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]
    m = Message.of({"role": "user", "content": parts})
    assert isinstance(m.content, list) and all(isinstance(p, ContentPart) for p in m.content)
    assert m.text == "Look at this."
    assert m.chat()["content"] == parts
    assert [list(p) for p in m.chat()["content"]] == [list(p) for p in parts]  # key order kept: the prefix holds


def test_a_part_s_and_a_tool_call_s_own_fields_reach_the_backend() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}", "strict": True},
             "x_index": 3},
            {"id": "c2", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
    ]
    assert Request.of({"model": "m", "messages": messages}).chat()["messages"] == messages



def test_the_body_a_backend_sends_is_the_requests_own_and_a_changed_request_sends_its_change() -> None:
    """The encoded body is kept with the request (a council's members send one body): a request changed for
    one member (another seed, a temperature) is a new request, which must not send the first one's bytes."""
    backend = OpenAIBackend("b", BackendConfig(url="http://127.0.0.1:1/v1", model="m"), None)  # type: ignore[arg-type]
    req = Request.of(BODY)
    first = json.loads(backend._body(req, False, None)[0])
    assert (first["model"], first["stream"]) == ("m", False) and "stream_options" not in first
    assert {k: v for k, v in first.items() if k not in ("model", "stream")} == req.chat()
    streamed = json.loads(backend._body(req, True, "other")[0])
    assert (streamed["model"], streamed["stream"]) == ("other", True)
    assert streamed["stream_options"] == {"include_usage": True}
    reseeded = msgspec.structs.replace(req, seed=8, temperature=0.9)
    assert operator.itemgetter("seed", "temperature")(json.loads(backend._body(reseeded, False, None)[0])) == (8, 0.9)
    assert json.loads(backend._body(req, False, None)[0])["seed"] == 7
