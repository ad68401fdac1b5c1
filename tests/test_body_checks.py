"""The edge's first reading of a body: how deep it may nest, and which optional fields are type-checked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.requests import MAX_DEPTH, _depth, call_of, decode
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
