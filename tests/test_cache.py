"""The response cache: what counts as the same deterministic request, replay as a stream, both stores."""

from __future__ import annotations

from typing import Any

import pytest

from proxy import cache
from routing.core import (
    Answer,
    CouncilReport,
    Finish,
    Reply,
    Report,
    Result,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
    replay_result,
)
from routing.request import Request
from routing.tokens import Usage

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
ANSWER = Result(Reply([Answer(text="42")], Usage(1, 1, 2)),
                CouncilReport(virtual_model="m", strategy="single", winner="goku"))


def req(body: dict[str, Any]) -> Request:
    return Request.of(body)


def test_only_deterministic_single_choice_requests_are_cached() -> None:
    assert cache.deterministic(req(BODY))
    assert cache.deterministic(req({**BODY, "temperature": 0.7, "seed": 7}))
    assert not cache.deterministic(req({**BODY, "temperature": 0.7}))
    assert not cache.deterministic(req({"messages": []}))  # the default temperature is not 0
    assert not cache.deterministic(req({**BODY, "n": 2}))


def test_the_key_ignores_delivery_but_not_content() -> None:
    base = cache.key("m", req(BODY))
    same = {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u"}
    assert cache.key("m", req(same)) == base
    assert cache.key("m", req(dict(reversed(list(BODY.items()))))) == base
    assert cache.key("other", req(BODY)) != base
    assert cache.key("m", req({**BODY, "max_tokens": 5})) != base
    assert cache.key("m", req({**BODY, "messages": [{"role": "user", "content": "hi!"}]})) != base
    assert cache.key("m", req({**BODY, "x_vendor": 1})) != base, "a vendor field the client sent is content too"


def test_a_cached_answer_streams_and_a_stream_can_be_cached() -> None:
    events = list(replay_result(ANSWER))
    assert events == [TextDelta("42"), Finish("stop"), UsageEvent(Usage(1, 1, 2)), Report(ANSWER.report)]
    assert cache.kept(events) == ANSWER
    assert cache.kept(events[:2]) is None  # a stream that ended without its report (an error) is not kept
    assert cache.kept([TextDelta("4"), UsageEvent(Usage(1, 1, 2)), Report(ANSWER.report)]) is None  # nor unfinished
    tool = [ToolCallDelta(0, "c", "f", "{}"), *events[1:]]
    assert cache.kept(tool) is None  # a tool call is not an answer to repeat


def test_an_entry_kept_in_another_shape_is_a_miss_not_a_500() -> None:
    assert cache.loaded(b'{"id": "chatcmpl-1", "choices": []}') is None


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
