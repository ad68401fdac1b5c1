from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from proxy.dialects.chat import ChatWriter, completion
from routing.core import CouncilReport, Event, Result, UsageEvent
from routing.decide.budget import Budget
from routing.member import Members
from routing.request import Request
from routing.tokens import Usage
from routing.upstream import answers
from routing.upstream.sse import Splitter
from tests.fakes import FakeBackend


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_sse_events_survive_any_split_and_crlf(split: int) -> None:
    raw = b': comment\r\n\r\ndata: {"a":1}\r\n\r\nevent: x\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    parts = [raw[i : i + split] for i in range(0, len(raw), split)]
    splitter = Splitter()
    got = [e for p in parts for e in splitter.feed(p)] + splitter.close()
    assert got == [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]


def _payloads_by_the_spec(raw: bytes) -> list[bytes]:
    """The data of each event as the SSE spec reads it, line by line (what Splitter must give)."""
    out, data = [], None
    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        if not line:
            if data is not None:
                out.append(b"\n".join(data))
            data = None
        elif line.startswith(b"data:"):
            data = [*(data or []), line[5:].removeprefix(b" ")]
    return out


@pytest.mark.parametrize("seed", range(40))
def test_sse_payloads_are_the_specs_whatever_the_events_and_the_reads(seed: int) -> None:
    """One-line data events take a split in C; anything else in the same read (comments, other fields,
    a data event over two lines, CRLF, an empty payload, blank lines in a row) the event-by-event path:
    both give what the spec reads, wherever the reads cut the stream."""
    rng = random.Random(seed)
    kinds = [b'data: {"n":%d}\n\n'] * 6 + [b": ping %d\n\n", b'event: x\ndata: {"m":%d}\n\n',
                                          b'data: {"a":\ndata: %d}\n\n', b"data: %d\r\n\r\n", b"data:%d\n\n",
                                          b"data: \n\n" + b"%d" * 0, b'data: {"k":%d}\n\n\n']
    raw = b"".join(rng.choice(kinds).replace(b"%d", str(i).encode()) for i in range(rng.randint(1, 30)))
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(0, 6))))
    splitter = Splitter()
    reads = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    got = [e for piece in reads for e in splitter.feed(piece)] + splitter.close()
    assert got == _payloads_by_the_spec(raw)


def test_completion_fills_what_llamacpp_leaves_out() -> None:
    upstream = {"id": "x", "choices": [{"message": {"role": "assistant", "content": "hi", "tool_calls": None}}]}
    result = Result(answers.reply("m", upstream), CouncilReport(virtual_model="ultra-instinct", strategy="single"))
    out = completion(result, id="chatcmpl-1", created=5, model="ultra-instinct")
    assert out["model"] == "ultra-instinct" and out["id"] == "chatcmpl-1" and out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice == {"index": 0, "logprobs": None, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "hi", "refusal": None}}
    assert list(out) == ["id", "object", "created", "model", "choices", "council"], "API order, ours last"


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> dict[str, object]:
    return {"id": "up", "created": 1, "model": "up", "choices": [{"index": 0, "delta": delta,
                                                                   "finish_reason": finish}], **extra}


def _frames(raw: bytes) -> list[dict[str, Any]]:
    return [msgspec.json.decode(f.removeprefix(b"data: ")) for f in raw.split(b"\n\n") if f and f != b"data: [DONE]"]


def test_the_chat_writer_sends_a_role_first_and_keeps_one_identity() -> None:
    w = ChatWriter(id="chatcmpl-9", created=7, model="m", include_usage=False)
    raw = b"".join(w.event(e) for c in (_chunk({"content": "a", "role": None}), _chunk({"content": "b"}, "stop"))
                   for e in answers.events("up", c))
    out = _frames(raw + w.end())
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": "a"}
    assert [c["choices"][0]["delta"].get("content") for c in out] == ["a", "b", None]
    assert {(c["id"], c["created"], c["model"]) for c in out} == {("chatcmpl-9", 7, "m")}
    assert all("role" not in c["choices"][0]["delta"] for c in out[1:])
    assert out[-1]["choices"][0]["finish_reason"] == "stop"


def test_the_chat_writer_sends_usage_only_when_asked_and_closes_open_choices_first() -> None:
    for asked in (True, False):
        w = ChatWriter(id="i", created=1, model="m", include_usage=asked)
        raw = b"".join(w.event(e) for e in answers.events("up", _chunk({"role": "assistant", "content": "x"})))
        raw += w.event(UsageEvent(Usage(3, 1, 4))) + w.end()
        out = _frames(raw)
        assert out[1]["choices"][0]["finish_reason"] == "stop"
        assert [c.get("usage") for c in out][2:] == ([{"prompt_tokens": 3, "completion_tokens": 1,
                                                       "total_tokens": 4}] if asked else [])


async def test_usage_is_estimated_and_says_so_when_the_server_reports_none() -> None:
    class Silent(FakeBackend):
        async def stream(self, req: Request, model: str | None = None, notes: dict[str, Any] | None = None,
                         raw: bool = False) -> AsyncIterator[Event]:
            for w in ("one", " two", " three"):
                for e in answers.events(self.name, _chunk({"content": w})):
                    yield e
            for e in answers.events(self.name, _chunk({}, "stop")):
                yield e

    members = Members({"s": Silent("s")}, Budget())
    body = {"messages": [{"role": "user", "content": "x" * 40}]}
    said = [e async for e in members.stream("s", Request.of(body))]
    assert not any(isinstance(e, UsageEvent) for e in said), "the usage goes to the report, not the client"
    r = members.reports[0]
    assert r.usage_estimated and r.usage == Usage(10, 3, 13)


def test_a_tool_call_finishes_with_tool_calls_whatever_the_server_said() -> None:
    """llama.cpp's servers finish a tool call with "stop"; clients (and the Messages dialect's `tool_use`)
    read `tool_calls`. A cut-off answer stays `length`."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    for said, seen in (("stop", "tool_calls"), (None, "tool_calls"), ("length", "length")):
        raw = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]},
                            "finish_reason": said}]}
        result = Result(answers.reply("m", raw), CouncilReport(virtual_model="m", strategy="single"))
        assert completion(result, id="i", created=1, model="m")["choices"][0]["finish_reason"] == seen


def test_ids_differ_in_a_forked_child() -> None:
    """Answer ids come from one seeded generator, not a syscall each: a process forked from a replica (a server
    that forks its workers) must not give the ids its parent gives next."""
    import os

    from routing import wire

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, wire.new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    assert child.startswith("chatcmpl-") and child != wire.new_id()
