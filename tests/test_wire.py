from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from routing import wire
from routing.sse import data_events


async def _pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
async def test_sse_events_survive_any_split_and_crlf(split: int) -> None:
    raw = b': comment\r\n\r\ndata: {"a":1}\r\n\r\nevent: x\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    parts = [raw[i : i + split] for i in range(0, len(raw), split)]
    got = [e async for e in data_events(_pieces(*parts))]
    assert got == [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]


def test_completion_fills_what_llamacpp_leaves_out() -> None:
    upstream = {"id": "x", "choices": [{"message": {"role": "assistant", "content": "hi", "tool_calls": None}}]}
    out = wire.completion(upstream, id="chatcmpl-1", created=5, model="ultra-instinct")
    assert out["model"] == "ultra-instinct" and out["id"] == "chatcmpl-1" and out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice == {"index": 0, "logprobs": None, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "hi", "refusal": None}}


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> dict[str, object]:
    return {"id": "up", "created": 1, "model": "up", "choices": [{"index": 0, "delta": delta,
                                                                   "finish_reason": finish}], **extra}


def test_shaper_sends_a_role_chunk_first_and_keeps_one_identity() -> None:
    s = wire.ChunkShaper(id="chatcmpl-9", created=7, model="m")
    out = s.shape(_chunk({"content": "a", "role": None}))
    out += s.shape(_chunk({"content": "b"}, "stop"))
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in out] == ["", "a", "b"]
    assert {(c["id"], c["created"], c["model"]) for c in out} == {("chatcmpl-9", 7, "m")}
    assert all("role" not in c["choices"][0]["delta"] for c in out[1:])
    assert s.close() == []


def test_shaper_holds_usage_back_and_closes_open_choices() -> None:
    s = wire.ChunkShaper(id="i", created=1, model="m")
    s.shape(_chunk({"role": "assistant", "content": "x"}))
    assert s.shape({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}) == []
    closing = s.close()
    assert closing[0]["choices"][0]["finish_reason"] == "stop"
    usage, estimated = s.measured_usage({})
    assert usage == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4} and not estimated


def test_usage_is_estimated_and_says_so_when_the_server_reports_none() -> None:
    s = wire.ChunkShaper(id="i", created=1, model="m")
    for w in ("one", " two", " three"):
        s.shape(_chunk({"content": w}))
    usage, estimated = s.measured_usage({"messages": [{"role": "user", "content": "x" * 40}]})
    assert estimated and usage["completion_tokens"] == 3 and usage["prompt_tokens"] == 10
