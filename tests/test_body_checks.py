"""The edge's first reading of a body: how deep it may nest, and which optional fields are type-checked."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.requests import MAX_DEPTH, SHALLOW, _depth, _shallow, _typed, call_of, decode, read_chat, read_translated
from routing.errors import InvalidRequest


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 40])
@pytest.mark.parametrize("padding", [0, 9000])  # a small body and one past the size where brackets are not counted
def test_a_body_nesting_one_level_too_deep_is_refused(depth: int, padding: int) -> None:
    inner = "[" * (depth - 1) + "]" * (depth - 1)  # inside the body's own object
    raw = f'{{"model": "m", "pad": "{"x" * padding}", "x": {inner}}}'.encode()
    if depth > MAX_DEPTH:
        with pytest.raises(InvalidRequest) as e:
            decode(raw)
        assert e.value.code == "too_deep"
    else:
        assert decode(raw)["model"] == "m"


@pytest.mark.parametrize("field,value", [("seed", "7"), ("stop", [1]), ("top_logprobs", 21), ("logprobs", 1),
                                         ("response_format", {}), ("modalities", "text")])
def test_a_wrongly_typed_optional_field_is_named(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as e:
        call_of({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value})
    assert e.value.param is not None and e.value.param.startswith(field)


def test_a_body_with_no_optional_field_keeps_its_vendor_fields() -> None:
    call = call_of({"model": "m", "messages": [{"role": "user", "content": "hi"}], "x_vendor": {"a": 1},
                    "temperature": None})
    assert call.request.extra == {"x_vendor": {"a": 1}} and call.request.temperature is None


def depth(value: object) -> int:
    """How deep objects and arrays nest (a scalar: 0), read recursively."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                                       max_size=3), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(max_size=2), json_values, max_size=3), limit=st.integers(1, 10))
def test_the_depth_walk_agrees_with_a_recursive_reading(value: dict[str, object], limit: int) -> None:
    assert _depth(value, limit) == (depth(value) > limit)


@pytest.mark.parametrize(("messages", "param", "code"), [
    ([1], 'messages[0]', 'invalid_type'),
    ([{'content': 'x'}], 'messages[0].role', 'missing_required_parameter'),
    ([{'role': 3, 'content': 'x'}], 'messages[0].role', 'invalid_value'),
    ([{'role': 'bot', 'content': 'x'}], 'messages[0].role', 'invalid_value'),
    ([{'role': 'user', 'content': 3}], 'messages[0].content', 'invalid_type'),
    ([{'role': 'user'}], 'messages[0].content', 'missing_required_parameter'),
    ([{'role': 'user', 'content': [3]}], 'messages[0].content[0]', 'invalid_type'),
    ([{'role': 'user', 'content': [{'type': 'text', 'text': 3}]}], 'messages[0].content[0].text', 'invalid_type'),
    ([{'role': 'user', 'content': [{'type': 'image_url', 'image_url': 3}]}],
     'messages[0].content[0].image_url', 'invalid_type'),
    ([{'role': 'user', 'content': 'x', 'name': 3}], 'messages[0].name', 'invalid_type'),
    ([{'role': 'tool', 'content': 'x', 'tool_call_id': 3}], 'messages[0].tool_call_id', 'invalid_type'),
    ([{'role': 'assistant', 'content': None, 'tool_calls': 3}], 'messages[0].tool_calls', 'invalid_type'),
    ([{'role': 'assistant', 'content': None, 'tool_calls': [{'function': {}}]}],
     'messages[0].tool_calls[0]', 'invalid_type'),
    ([{'role': 'assistant', 'content': None, 'tool_calls': [{'function': {'name': 'f', 'arguments': 3}}]}],
     'messages[0].tool_calls[0].function.arguments', 'invalid_type'),
    ([{'role': 'user', 'content': 'ok'}, {'role': 'user', 'content': [{'type': 'text', 'text': 'a'}, {'type': 5}]}],
     'messages[1].content[1]', 'invalid_type'),
])
def test_a_wrong_message_is_named_by_its_path(messages: list[object], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        call_of({"model": "m", "messages": messages})
    assert (e.value.param, e.value.code) == (param, code) and f"'{param}'" in str(e.value)


def _read_both(raw: bytes) -> tuple[object, object]:
    """What `read_chat` makes of a body, and what the general reading (`decode`, then `call_of`) does: the
    body, the request, its wire bytes and the call's other fields, or the error the client is told."""
    def outcome(read: Any) -> object:
        try:
            body, call = read()
        except InvalidRequest as e:
            return ("error", str(e), e.param, e.code)
        body = {k: v for k, v in body.items() if k != "messages"}
        return (body, call.request, call.request.wire(), call.model, call.stream, call.include_usage, call.extras)

    def general() -> tuple[dict[str, Any], Any]:
        body = decode(raw)
        return body, call_of(body)

    return outcome(lambda: read_chat(raw)), outcome(general)


_text = st.sampled_from(["", "hi", "é\u2028", "x" * 40])
_maybe = st.none() | st.integers(0, 3) | _text
# each field mostly right (as clients send it), else anything: most bodies are read typed, and many are not


def _mostly(right: Any, wrong: Any) -> Any:
    return st.integers(0, 7).flatmap(lambda i: wrong if i == 7 else right)


_function = _mostly(st.fixed_dictionaries({"name": _text}, optional={"arguments": _text}), st.fixed_dictionaries(
    {}, optional={"name": _maybe, "arguments": _maybe | st.just({"a": 1}), "strict": st.booleans()}))
_call = _mostly(st.fixed_dictionaries({"function": _function}, optional={"id": _text, "type": st.just("function")}),
                st.fixed_dictionaries({"function": _function | _maybe}, optional={
                    "id": _maybe, "type": _maybe | st.just("function"), "index": st.integers(0, 2)}) | _maybe)
_image = st.just({"url": "data:,", "detail": "low"})
_part = _mostly(st.fixed_dictionaries({"type": st.just("text"), "text": _text}) | st.fixed_dictionaries(
    {"type": st.just("image_url"), "image_url": _image}), st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "foo"]) | _maybe},
    optional={"text": _maybe, "image_url": _image | _maybe, "cache_control": st.just({"type": "ephemeral"})}) | _maybe)
_good = st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant", "tool",
                                                        "function"]), "content": _text | st.lists(_part, max_size=3)},
                              optional={"name": _text, "tool_call_id": _text, "reasoning_content": _text,
                                        "tool_calls": st.lists(_call, max_size=2)})
_assistant = st.fixed_dictionaries({"role": st.just("assistant")}, optional={
    "content": st.none() | _text, "tool_calls": st.lists(_call, max_size=2)})
_any = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "bot"]) | _maybe,
    "content": _maybe | st.lists(_part, max_size=3), "name": _maybe, "tool_call_id": _maybe,
    "reasoning_content": _maybe, "tool_calls": st.none() | st.lists(_call, max_size=2) | _maybe,
    "refusal": st.none()}) | _maybe
_optional = {
    "temperature": _mostly(st.floats(0, 2), st.floats(-1, 3) | _maybe),
    "stream": _mostly(st.booleans(), _maybe),
    "stream_options": _mostly(st.just({"include_usage": True}), _maybe),
    "tools": _mostly(st.just([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]),
                     _maybe),
    "shenron": _mostly(st.just({"validate": True}), _maybe), "x_vendor": json_values,
    "max_tokens": _mostly(st.integers(1, 9), _maybe)}
_body = _mostly(st.fixed_dictionaries({"model": st.just("m"), "messages": st.lists(
    _mostly(_good | _assistant, _any), min_size=1, max_size=4)}, optional=_optional),
    st.fixed_dictionaries({}, optional={"model": _maybe, "messages": _maybe | st.lists(_any, max_size=2),
                                        **_optional}))


@settings(max_examples=1500, deadline=None)
@given(body=_body)
def test_a_chat_body_read_typed_is_read_as_the_general_way_reads_it(body: dict[str, Any]) -> None:
    """Every body, right or wrong: the same request and wire bytes, or the same error, whichever way it is read
    (a body the typed reading does not take is read the general way, so a mistake here is a wrong request)."""
    raw = json.dumps(body).encode()
    fast, general = _read_both(raw)
    assert fast == general


@pytest.mark.parametrize("raw", [
    b'[1]', b'"x"', b'{"model": "m"}', b'{"model": "m", "messages": []}', b'{"messages": [{"role": "user"}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": "a"}], "messages": [{"role": "user", "content": "b"}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": '
    + b'{"a": ' * 70 + b'1' + b'}' * 70 + b'}]}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": ' + b'[' * 70 + b']' * 70 + b'}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "pad": "' + b'x' * 9000 + b'", "deep": '
    + b'[' * 63 + b']' * 63 + b'}',
    b'{"model": "m", "messages": ' + b'[' * 5000 + b']' * 5000 + b'}',
    *(b'{"model": "m", "messages": [%s]}' % m for m in [
        b'{"role": "user", "content": [{"type": "text"}]}', b'{"role": "user", "content": [{"type": "image_url"}]}',
        b'{"role": "user", "content": [{"type": "text", "text": null}]}',
        b'{"role": "user", "content": [{"type": "image_url", "image_url": "data:,"}]}',
        b'{"role": "user", "content": [{"type": "foo", "text": 1}]}', b'{"role": "user", "content": null}',
        b'{"role": "system"}', b'{"role": "developer", "content": null}', b'{"role": "tool"}',
        b'{"role": "user", "content": "x", "name": null}', b'{"role": "user", "content": "x", "tool_calls": null}',
        b'{"role": "assistant", "tool_calls": []}',
        b'{"role": "assistant", "tool_calls": [{"type": "", "function": {"name": "f"}}]}',
        b'{"role": "assistant", "tool_calls": [{"type": null, "id": null, "function": {"name": "f"}}]}',
        b'{"role": "assistant", "tool_calls": [{"id": 7, "function": {"name": "f", "arguments": "{}"}}]}',
        b'{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": null}}]}',
        b'{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}',
        b'{"role": "assistant", "tool_calls": [{"function": {"name": ""}}]}',
        b'{"role": "user", "content": "x", "cache_control": {"type": "ephemeral"}}',
        b'{"role": "user", "role": "bot", "content": "x"}', b'{"role": "bot", "role": "user", "content": "x"}',
        b'{"role": "user", "content": "x", "content": null}',
    ]),
])
def test_edge_bodies_are_read_alike(raw: bytes) -> None:
    """Not JSON objects, no or empty messages, a key twice, nesting too deep inside an image, the tools or the
    messages themselves, nesting at the limit in a large body; and each way a message can miss the typed
    shape (a missing text or image, a null where the key is left out, an empty tool call type, a key of its own,
    a key twice)."""
    fast, general = _read_both(raw)
    assert fast == general


def test_a_plain_conversation_is_read_typed() -> None:
    """The common shape (text, parts, tool calls and their results) takes the typed reading, not the general one:
    else this reading would save nothing, and the test above would pass while it did."""
    body = {"model": "m", "messages": [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url",
                                                                        "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}], "temperature": 0.2, "x_vendor": 1}
    raw = json.dumps(body).encode()
    assert _typed(raw) is not None
    fast, general = _read_both(raw)
    assert fast == general


deep_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=3),
                           lambda inner: st.lists(inner, min_size=1, max_size=2)
                           | st.dictionaries(st.text(max_size=2), inner, min_size=1, max_size=2), max_leaves=30)


@settings(max_examples=800, deadline=None)
@given(value=st.dictionaries(st.text(max_size=2), deep_values, max_size=3), wrap=st.integers(0, SHALLOW + 2))
def test_the_shallow_decoder_reads_what_the_general_one_does_or_refuses(value: dict[str, Any], wrap: int) -> None:
    """What msgspec's typed decoder takes without a walk is decoded exactly as the general decoder does, nests
    SHALLOW levels at most (the body one of them: far below MAX_DEPTH), and is everything that nests no deeper
    (numbers within a double's range)."""
    for _ in range(wrap):
        value = {"w": [value]} if wrap % 2 else {"w": value}
    raw = json.dumps(value).encode()
    try:
        got = _shallow()[1](raw)
    except msgspec.ValidationError:
        assert depth(value) > SHALLOW
        return
    assert depth(value) <= SHALLOW
    assert json.dumps(got) == json.dumps(msgspec.json.decode(raw)) == raw.decode()  # ints stay ints, floats floats


def _translated_both(body: dict[str, Any]) -> tuple[object, object]:
    """What `read_translated` makes of a chat body a dialect built, and what `call_of` makes of it: the request,
    its wire bytes and the call's other fields, or the error the client is told."""
    def outcome(read: Any) -> object:
        try:
            call = read(json.loads(json.dumps(body)))  # each reading its own copy: `call_of` takes `shenron` out
        except InvalidRequest as e:
            return ("error", str(e), e.param, e.code)
        return (call.request, call.request.wire(), call.model, call.stream, call.include_usage, call.extras)

    return outcome(read_translated), outcome(call_of)


@settings(max_examples=1500, deadline=None)
@given(body=_body)
def test_a_translated_body_read_typed_is_read_as_call_of_reads_it(body: dict[str, Any]) -> None:
    """The Messages and Responses dialects' chat bodies, right or wrong: the same request and wire bytes, or the
    same error, whether their messages are converted typed or checked field by field."""
    typed, general = _translated_both(body)
    assert typed == general


def test_a_coding_agent_s_turn_in_either_dialect_is_read_typed() -> None:
    """Claude Code's turn (text, tool_use and tool_result blocks) and Codex's (function_call and its output)
    translate to messages the typed reading takes: else it would save nothing while the test above passed."""
    from proxy.dialects.messages_request import to_chat as from_messages
    from proxy.dialects.responses_request import to_chat as from_responses

    anthropic = {"model": "m", "max_tokens": 8, "system": "be terse", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "fix it"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Reading."},
                                          {"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "a"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x = 1"}]}]}
    codex = {"model": "m", "instructions": "be terse", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"cmd\": \"ls\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.py"}]}
    for chat in (from_messages(anthropic), from_responses(codex, [])[0]):
        assert read_translated(json.loads(json.dumps(chat))).request.__dict__.get("_said") is not None
        typed, general = _translated_both(chat)
        assert typed == general
