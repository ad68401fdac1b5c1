"""The response cache: what counts as the same deterministic request, replay as a stream, both stores."""

from __future__ import annotations

from typing import Any

import pytest

from proxy import cache

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}, "council": {"winner": "goku"}}


def test_only_deterministic_single_choice_requests_are_cached() -> None:
    assert cache.deterministic(BODY)
    assert cache.deterministic({**BODY, "temperature": 0.7, "seed": 7})
    assert not cache.deterministic({**BODY, "temperature": 0.7})
    assert not cache.deterministic({"messages": []})  # the default temperature is not 0
    assert not cache.deterministic({**BODY, "n": 2})


def test_the_key_ignores_delivery_but_not_content() -> None:
    base = cache.key("m", BODY)
    assert cache.key("m", {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u"}) == base
    assert cache.key("m", dict(reversed(list(BODY.items())))) == base
    assert cache.key("other", BODY) != base
    assert cache.key("m", {**BODY, "max_tokens": 5}) != base
    assert cache.key("m", {**BODY, "messages": [{"role": "user", "content": "hi!"}]}) != base


def test_a_cached_answer_streams_and_a_stream_can_be_cached() -> None:
    chunks = cache.as_chunks(ANSWER, include_usage=True)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[1]["choices"][0]["delta"]["content"] == "42"
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["usage"] == ANSWER["usage"] and chunks[4]["council"] == ANSWER["council"]
    rebuilt = cache.from_chunks(chunks)
    assert rebuilt is not None
    assert rebuilt["choices"] == ANSWER["choices"] and rebuilt["usage"] == ANSWER["usage"]
    assert cache.from_chunks([*chunks[:2], {"error": {"message": "x"}}]) is None  # a failed stream is not kept
    assert cache.from_chunks(chunks[:2]) is None  # nor one that never finished


@pytest.mark.parametrize("where", ["memory", "redis"])
async def test_put_get_and_expiry(where: str, request: pytest.FixtureRequest) -> None:
    import asyncio

    store: Any = (cache.MemoryCache() if where == "memory"
                  else cache.RedisCache(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")))
    try:
        await store.put("k", ANSWER, 0.3)
        assert await store.get("k") == ANSWER
        assert await store.get("other") is None
        await asyncio.sleep(0.5)
        assert await store.get("k") is None
    finally:
        await store.close()
