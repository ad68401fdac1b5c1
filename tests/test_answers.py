"""A whole upstream answer read straight from its bytes says what the field-by-field reading says."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from routing.errors import MemberFailure
from routing.upstream.answers import plain_reply, reply

counts = st.sampled_from([0, 1, 7]) | st.sampled_from([-1, 2.0, True, None, "3"])
details = st.none() | st.just("x") | st.fixed_dictionaries(
    {}, optional={"cached_tokens": counts, "cache_write_tokens": counts, "reasoning_tokens": counts, "other": counts})
usages = st.none() | st.just([]) | st.fixed_dictionaries(
    {}, optional={"prompt_tokens": counts, "completion_tokens": counts, "total_tokens": counts,
                  "prompt_tokens_details": details, "completion_tokens_details": details, "extra": counts})
texts = st.none() | st.text(max_size=8) | st.just([{"type": "text", "text": "a"}, "b"]) | st.just(3)
messages = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["assistant", None]), "content": texts,
    "reasoning_content": st.sampled_from([None, "hm", 1]), "reasoning": st.sampled_from([None, "hm", ""]),
    "tool_calls": st.sampled_from([None, [], [{"id": "c", "type": "function",
                                               "function": {"name": "f", "arguments": "{}"}}]]),
    "refusal": st.none(), "annotations": st.just([])})
choices = st.fixed_dictionaries({"message": messages}, optional={
    "index": st.sampled_from([0, 1, "0"]), "finish_reason": st.sampled_from([None, "stop", "length", 3]),
    "logprobs": st.sampled_from([None, {"content": []}]), "stop_reason": st.none()})
one_or_any = st.lists(choices, min_size=1, max_size=1) | st.lists(choices, max_size=2)
completions = st.fixed_dictionaries({"choices": one_or_any}, optional={
    "id": st.just("x"), "object": st.just("chat.completion"), "usage": usages,
    "system_fingerprint": st.sampled_from([None, "fp", 3]), "timings": st.just({"predicted_ms": 1.5})})


def field_by_field(raw: bytes) -> Any:
    try:
        return reply("m", json.loads(raw))
    except MemberFailure as e:
        return e


@settings(max_examples=1000, deadline=None)
@given(body=completions, spaced=st.booleans())
@example(body={"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": 2, "completion_tokens": 1,
                                                                   "total_tokens": 0}}, spaced=False)
def test_an_answer_read_from_its_bytes_is_the_answer_read_field_by_field(body: dict[str, Any], spaced: bool) -> None:
    raw = json.dumps(body, indent=1 if spaced else None).encode()
    fast = plain_reply(raw)
    if fast is not None:
        assert fast == field_by_field(raw)


@pytest.mark.parametrize("body", [
    # shenron's stub backend, llama.cpp's server (timings, cached prompt tokens), vLLM (stop_reason), OpenAI
    {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
    {"choices": [{"finish_reason": "length", "index": 0, "message": {"role": "assistant", "content": " Paris"}}],
     "created": 1, "model": "smol", "system_fingerprint": "b1-abc", "object": "chat.completion",
     "usage": {"completion_tokens": 2, "prompt_tokens": 9, "total_tokens": 11,
               "prompt_tokens_details": {"cached_tokens": 8}}, "id": "chatcmpl-1", "timings": {"cache_n": 8}},
    {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "reasoning_content": None,
                                                      "tool_calls": None}, "logprobs": None, "finish_reason": "stop",
                             "stop_reason": None}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
])
def test_the_answers_real_servers_send_are_read_from_their_bytes(body: dict[str, Any]) -> None:
    raw = msgspec.json.encode(body)
    fast = plain_reply(raw)
    assert fast is not None and fast == field_by_field(raw)


def test_usage_details_that_are_not_objects_are_dropped_not_a_crash() -> None:
    """A server's `prompt_tokens_details: "x"` made reading its answer raise AttributeError."""
    body = {"choices": [{"message": {"content": "a"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": "x",
                      "completion_tokens_details": [1]}}
    read = reply("m", body)
    assert read.usage is not None and (read.usage.prompt_tokens, read.usage.cached_tokens) == (3, 0)
