"""A stream a dialect rebuilds (Anthropic's Messages, the Responses API, a council's chairman) reads an OpenAI
server's plain chunks typed, a read's run of them as one text delta: what its client reads (the text, the
tool calls, logprobs, reasoning, finish reasons and usage) and the tokens its report estimates are what the
chunk-by-chunk reading gave, however the reads fall."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.config import BackendConfig
from routing.core import Event, Finish, TextDelta, UsageEvent
from routing.decide.budget import Budget
from routing.errors import MemberFailure
from routing.member import Members
from routing.request import Request
from routing.tokens import Usage
from routing.upstream import answers
from routing.upstream.backends import OpenAIBackend
from routing.upstream.reader import Reader
from tests.test_relay import STREAMS, USAGE, _frame


def _events(pieces: list[bytes], typed: bool) -> list[Event]:
    """The reads through a rebuilt stream's reader: plain chunks read typed (`typed`), or each decoded and
    checked field by field as before."""
    read = Reader("smol", OpenAIBackend._events(None), False, typed)  # type: ignore[arg-type]
    out: list[Event] = []
    for piece in pieces:
        if read(piece, out):
            return out
    read(None, out)
    return out


def _seen(events: list[Event]) -> list[Event]:
    """What a client of a rebuilt stream reads: deltas of text without logprobs in a row are one (a writer
    writes their text as it comes), their `count` the chunks they came from."""
    out: list[Event] = []
    for e in events:
        last = out[-1] if out else None
        if isinstance(e, TextDelta) and isinstance(last, TextDelta) and e.logprobs is None \
                and last.logprobs is None and e.choice == last.choice:
            out[-1] = TextDelta(last.text + e.text, choice=e.choice, count=last.count + e.count)
        else:
            out.append(e)
    return out


def _reads(frames: list[bytes], how: str) -> list[bytes]:
    joined = b"".join(frames)
    return {"one a read": frames, "all in one": [joined],
            "halves": [half for f in frames for half in (f[:len(f) // 2], f[len(f) // 2:])],
            "seven bytes a read": [joined[i:i + 7] for i in range(0, len(joined), 7)]}[how]


@pytest.mark.parametrize("how", ["one a read", "all in one", "halves", "seven bytes a read"])
@pytest.mark.parametrize("name", list(STREAMS))
def test_a_rebuilt_stream_reads_what_it_read_chunk_by_chunk(name: str, how: str) -> None:
    pieces = _reads(STREAMS[name], how)
    typed, checked = _events(pieces, True), _events(pieces, False)
    assert _seen(typed) == _seen(checked)
    assert sum(e.count for e in typed if isinstance(e, TextDelta)) == \
        sum(1 for e in checked if isinstance(e, TextDelta)), "every chunk that said something is counted"


def test_a_read_s_plain_chunks_are_one_delta() -> None:
    frames = [_frame({"role": "assistant", "content": ""}), *(_frame({"content": w}) for w in ("Pa", "ri", "s")),
              _frame({}, "stop")]
    got = _events([b"".join(frames)], True)
    assert [type(e).__name__ for e in got] == ["TextDelta", "Finish"]
    assert got[0] == TextDelta("Paris", count=3), "the role's empty chunk says nothing and counts nothing"
    paced = _events(frames, True)
    assert [e for e in paced if isinstance(e, TextDelta)] == [TextDelta(w) for w in ("Pa", "ri", "s")]


POOL = [
    _frame({"role": "assistant", "content": ""}), _frame({"content": "Par"}), _frame({"content": " is"}),
    _frame({"content": ""}), _frame({"content": "x", "role": "assistant", "refusal": None}, spaced=True),
    _frame({}, "stop"), _frame({}, "length"), _frame(None, choices=[], extra={"usage": USAGE}),
    _frame({"content": ""}, "stop", extra={"usage": USAGE}), _frame({}, "stop", spaced=True),
    _frame({"content": "u"}, extra={"usage": USAGE}),
    _frame({"content": "v", "vendor": 1}),  # a field of its own: checked, not plain
    _frame(None, choices=[{"index": 0, "delta": {"content": " see"}, "finish_reason": None,
                           "logprobs": {"content": [{"token": " see", "logprob": -0.1, "top_logprobs": []}]}}]),
    _frame({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{}"}}]}),
    _frame({"reasoning_content": "hmm"}), _frame({"content": "a", "reasoning": "b"}),
    _frame(None, choices=[{"index": 1, "delta": {"content": "second"}, "finish_reason": None}]),
    b'data: {"choices": [{"delta":\ndata: {"content": "two lines"}}]}\n\n',  # one payload of two lines
    b": a comment\n\n", b"data: [DONE]\n\n",
]


@settings(max_examples=300, deadline=None)
@given(picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=12),
       cuts=st.lists(st.integers(1, 400), max_size=6))
def test_any_stream_read_any_way_reads_what_it_read_chunk_by_chunk(picks: list[int], cuts: list[int]) -> None:
    joined = b"".join(POOL[i] for i in picks)
    pieces, at = [], 0
    for c in sorted(set(cuts)):
        if at < c < len(joined):
            pieces.append(joined[at:c])
            at = c
    pieces.append(joined[at:])
    typed, checked = _events(pieces, True), _events(pieces, False)
    assert _seen(typed) == _seen(checked)
    assert sum(e.count for e in typed if isinstance(e, TextDelta)) == \
        sum(1 for e in checked if isinstance(e, TextDelta))


def test_a_broken_chunk_after_plain_ones_fails_after_their_text() -> None:
    pieces = [_frame({"role": "assistant", "content": "Par"}) + _frame({"content": "is"}) + b'data: {"choices": [{\n\n']
    for typed in (True, False):
        read = Reader("smol", OpenAIBackend._events(None), False, typed)  # type: ignore[arg-type]
        out: list[Event] = []
        with pytest.raises(msgspec.DecodeError):
            read(pieces[0], out)
        assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "Paris"


async def _member_stream(body: list[bytes]) -> tuple[str, Usage | None, bool]:
    async def content() -> AsyncIterator[bytes]:
        for piece in body:
            yield piece

    client = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda req: httpx.Response(200, content=content(), headers={"content-type": "text/event-stream"})))
    backend = OpenAIBackend("smol", BackendConfig(url="http://up.invalid/v1", model="smollm2"), client)
    members = Members({"smol": backend}, Budget())
    said = ""
    async for e in members.stream("smol", Request.of({"messages": [{"role": "user", "content": "x" * 40}]})):
        said += e.text if isinstance(e, TextDelta) else ""
    r = members.reports[0]
    return said, r.usage, r.usage_estimated


@pytest.mark.parametrize("whole", [False, True])
async def test_a_server_that_reports_no_usage_is_estimated_a_token_a_chunk_however_it_reads(whole: bool) -> None:
    frames = [_frame({"role": "assistant", "content": ""}), *(_frame({"content": w}) for w in ("one", " two", " 3")),
              _frame({}, "stop"), b"data: [DONE]\n\n"]
    said, usage, estimated = await _member_stream([b"".join(frames)] if whole else frames)
    assert said == "one two 3"
    assert estimated and usage == Usage(10, 3, 13)


async def test_a_malformed_chunk_is_still_the_member_s_failure() -> None:
    bad = json.dumps({"choices": [{"delta": {"content": 5}}]}).encode()
    with pytest.raises(MemberFailure, match="smol"):
        await _member_stream([_frame({"role": "assistant", "content": "a"}), b"data: " + bad + b"\n\n"])


DETAILS = {"cached_tokens": 2, "reasoning_tokens": 1, "cache_write_tokens": 3}
ENDS = st.fixed_dictionaries({}, optional={
    "id": st.just("chatcmpl-up"),
    "choices": st.one_of(st.none(), st.just([]), st.lists(st.fixed_dictionaries(
        {"finish_reason": st.sampled_from([None, "", "stop", "length", 5])},
        optional={"index": st.sampled_from([0, 1, True]), "logprobs": st.sampled_from([None, {"content": []}]),
                  "delta": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
                      "content": st.sampled_from([None, "", "x", 3]), "role": st.sampled_from(["assistant", None]),
                      "tool_calls": st.sampled_from([None, []]), "vendor": st.just(1)}))}), max_size=2)),
    "usage": st.one_of(st.none(), st.fixed_dictionaries(
        {"prompt_tokens": st.sampled_from([4, -1, 2.5, "4"]), "completion_tokens": st.sampled_from([0, 3])},
        optional={"total_tokens": st.sampled_from([None, 0, 7, -2]),
                  "prompt_tokens_details": st.sampled_from([None, DETAILS, 5]),
                  "completion_tokens_details": st.sampled_from([None, DETAILS, {"reasoning_tokens": -1}])})),
    "error": st.sampled_from([None, {"message": "boom"}, "boom"]),
})


@settings(max_examples=500, deadline=None)
@given(chunk=ENDS)
def test_a_stream_s_end_read_typed_is_what_it_is_read_field_by_field(chunk: dict[str, Any]) -> None:
    """The finish and usage chunks read typed give the events the field-by-field reading gives, or nothing
    (then that reading, with its errors, reads them)."""
    data = json.dumps(chunk).encode()
    typed = answers.plain_end(data)
    try:  # as a stream's reader reads it field by field: the translator, then the checks
        checked = [e for c in OpenAIBackend._events(SimpleNamespace(name="smol"))(json.loads(data)) or []  # type: ignore[arg-type]
                   for e in answers.events("smol", c)]
    except MemberFailure:
        assert typed is None, "an end the field-by-field reading refuses is left to it"
        return
    assert typed is None or typed == checked


def test_the_ends_servers_send_are_read_typed() -> None:
    usage = Usage(4, 3, 7)
    for frame, said in ((_frame({}, "stop"), [Finish("stop")]), (_frame({}, "length", spaced=True), [Finish("length")]),
                        (_frame(None, choices=[], extra={"usage": USAGE}), [UsageEvent(usage)]),
                        (_frame({"content": ""}, "stop", extra={"usage": USAGE}), [Finish("stop"), UsageEvent(usage)])):
        assert answers.plain_end(frame[6:-2]) == said
    assert answers.plain_end(_frame({"content": "x"}, "stop")[6:-2]) is None, "text with the finish: checked"
