"""The edge's first reading of a body: how deep it may nest, and which optional fields are type-checked."""

from __future__ import annotations

import pytest

from proxy.requests import MAX_DEPTH, call_of, decode
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
