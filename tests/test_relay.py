"""A chat stream relayed as the upstream's bytes says what the same stream rebuilt event by event says:
the same text, roles, finish reasons and usage, under our id, created and model in every frame, for the
shapes real servers send (compact or spaced JSON, no role chunk, extra and null fields, a `created` that
changes). Chunks that need anything else (tool calls, logprobs, reasoning, usage) are still rebuilt,
and a broken chunk after relayed ones is still the member's error, after the text that came before it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.dialects.chat import ChatWriter
from routing.config import BackendConfig
from routing.core import Event, Finish, RawChunk, TextDelta, UsageEvent
from routing.errors import MemberFailure
from routing.request import Request
from routing.upstream import answers
from routing.upstream.backends import OpenAIBackend
from routing.upstream.reader import Reader
from routing.upstream.shape import Shape

ID, CREATED, MODEL = "chatcmpl-ours", 1796000000, "ultra-instinct"


def _frame(delta: dict[str, Any] | None, finish: str | None = None, *, spaced: bool = False, created: int = 1700000000,
           extra: dict[str, Any] | None = None, choices: list[Any] | None = None, between: dict[str, Any] | None = None,
           choices_first: bool = False) -> bytes:
    """One chunk as a server writes it (`between`: fields between its `created` and `model`; `choices_first`:
    llama.cpp's order, the choices before the identity)."""
    chunk: dict[str, Any] = {"choices": None} if choices_first else {}
    chunk |= {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": created, **(between or {}),
              "model": "smollm2", **(extra or {})}
    chunk["choices"] = choices if choices is not None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    sep = (", ", ": ") if spaced else (",", ":")
    return b"data: " + json.dumps(chunk, separators=sep).encode() + b"\n\n"


USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
STREAMS: dict[str, list[bytes]] = {
    "compact, role first": [_frame({"role": "assistant", "content": ""}), _frame({"content": "Par"}),
                            _frame({"content": "is"}), _frame({}, "stop"),
                            _frame(None, choices=[], extra={"usage": USAGE})],
    "spaced, no role chunk, fingerprint": [_frame({"content": "Par"}, spaced=True, extra={"system_fingerprint": "b1"}),
                                           _frame({"content": "is"}, spaced=True, extra={"system_fingerprint": "b1"}),
                                           _frame({}, "stop", spaced=True)],
    "nulls in every delta, usage null": [
        _frame({"role": "assistant", "content": "Par", "reasoning_content": None, "tool_calls": None},
               extra={"usage": None}),
        _frame({"content": "is", "reasoning_content": None}, extra={"usage": None}),
        _frame({}, "length", extra={"usage": USAGE})],
    "created changes mid-stream": [_frame({"role": "assistant", "content": "Par"}),
                                   _frame({"content": "is"}, created=17000000001),
                                   _frame({"content": "!"}, created=1700000000), _frame({}, "stop")],
    "a field that changes between the identity's keys": [
        _frame({"role": "assistant", "content": "Par"}, between={"trace": 1}),
        _frame({"content": "is"}, between={"trace": 22}), _frame({}, "stop", between={"trace": 333})],
    "choices first, as llama.cpp writes": [
        _frame({"role": "assistant", "content": "Par"}, choices_first=True, extra={"system_fingerprint": "b1"}),
        _frame({"content": "is"}, choices_first=True, extra={"system_fingerprint": "b1"}),
        _frame({}, "stop", choices_first=True, extra={"system_fingerprint": "b1"})],
    "tool calls and logprobs between text": [
        _frame({"role": "assistant", "content": "Let me"}),
        _frame(None, choices=[{"index": 0, "delta": {"content": " see"}, "finish_reason": None,
                               "logprobs": {"content": [{"token": " see", "logprob": -0.1, "top_logprobs": []}]}}]),
        _frame({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                "function": {"name": "f", "arguments": "{}"}}]}),
        _frame({"reasoning": "hmm"}), _frame({"content": "."}), _frame({}, "tool_calls")],
}


def _run(raw: bool, frames: list[bytes], include_usage: bool, whole: bool = False,
         ) -> tuple[list[dict[str, Any]], list[Event]]:
    """The frames through a stream's reader and a chat writer: one read each, or all in one (`whole`)."""
    read = Reader("smol", OpenAIBackend._events(None), raw)  # type: ignore[arg-type]
    events: list[Event] = []
    for piece in [b"".join(frames)] if whole else frames:
        if read(piece, events):
            break
    w = ChatWriter(id=ID, created=CREATED, model=MODEL, include_usage=include_usage)
    out = b"".join(w.event(e) for e in events if not isinstance(e, UsageEvent))
    usage = [e for e in events if isinstance(e, UsageEvent)]
    out += b"".join(w.event(e) for e in usage) + w.end()
    parsed = [msgspec.json.decode(f.removeprefix(b"data: ")) for f in out.split(b"\n\n") if f and f != b"data: [DONE]"]
    assert out.endswith(b"data: [DONE]\n\n")
    return parsed, events


def _said(frames: list[dict[str, Any]]) -> dict[Any, Any]:
    """What a client reads out of the frames: per choice its role, text, reasoning, tool calls, logprobs
    and finish reason, and the usage (frame boundaries are the upstream's, and may differ)."""
    out: dict[Any, Any] = {"usage": [f["usage"] for f in frames if f.get("usage")]}
    for f in frames:
        for c in f["choices"]:
            mine = out.setdefault(c["index"], {"text": "", "role": [], "calls": [], "logprobs": [], "finish": []})
            d = c["delta"]
            mine["text"] += d.get("content") or ""
            mine["role"] += [d["role"]] if d.get("role") else []
            mine["calls"] += d.get("tool_calls") or []
            mine["logprobs"] += (c.get("logprobs") or {}).get("content") or []
            mine["finish"] += [c["finish_reason"]] if c["finish_reason"] else []
            mine["reasoning"] = mine.get("reasoning", "") + (d.get("reasoning_content") or "")
    return out


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("name", list(STREAMS))
def test_a_relayed_stream_says_what_the_rebuilt_one_says(name: str, include_usage: bool, whole: bool) -> None:
    relayed, events = _run(True, STREAMS[name], include_usage, whole)
    rebuilt, _ = _run(False, STREAMS[name], include_usage, whole)
    assert _said(relayed) == _said(rebuilt)
    assert _said(relayed)[0]["role"] == ["assistant"], "one role, first"
    assert all((f["id"], f["created"], f["model"], f["object"]) == (ID, CREATED, MODEL, "chat.completion.chunk")
               for f in relayed), "every frame carries our identity, whatever the upstream wrote"
    assert any(isinstance(e, RawChunk) for e in events), "the plain chunks were relayed, not rebuilt"
    assert relayed[0]["choices"][0]["delta"].get("role") == "assistant"


def test_what_needs_more_than_an_identity_is_still_rebuilt() -> None:
    _, events = _run(True, STREAMS["tool calls and logprobs between text"], False)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RawChunk", "TextDelta", "ToolCallDelta", "ReasoningDelta", "RawChunk", "Finish"]
    _, events = _run(True, STREAMS["spaced, no role chunk, fingerprint"], False)
    assert isinstance(events[0], TextDelta) and isinstance(events[1], RawChunk), \
        "a first delta without a role is rebuilt (the writer names the role)"
    _, events = _run(True, STREAMS["compact, role first"], False, whole=True)
    assert [type(e) for e in events] == [RawChunk, Finish, UsageEvent] and events[0].count == 3  # type: ignore[union-attr]


async def test_a_broken_chunk_after_relayed_ones_fails_the_member_after_their_text() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield _frame({"role": "assistant", "content": "Par"})  # the first read: said, so passed on
        yield _frame({"content": "is"}) + b'data: {"id": "x", "choices": [{\n\n' + b"data: [DONE]\n\n"

    client = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda req: httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})))
    backend = OpenAIBackend("smol", BackendConfig(url="http://up.invalid/v1", model="smollm2"), client)
    got: list[Event] = []
    with pytest.raises(MemberFailure, match="smol"):
        async for e in backend.stream(Request.of({"messages": [{"role": "user", "content": "hi"}]}), raw=True):
            got.append(e)
    assert [e.text for e in got if isinstance(e, RawChunk)] == ["Par", "is"], "the text before the broken chunk"


@pytest.mark.parametrize("chunk", [
    {"choices": [{"index": True, "delta": {"role": "assistant", "content": "x"}}]},
    {"choices": [{"index": 1, "delta": {"role": "assistant", "content": "x"}}]},
    {"choices": [{"delta": {"role": "user", "content": "x"}}]},
    {"choices": [{"delta": {"role": "assistant", "content": 5}}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x", "tool_calls": []}}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x", "reasoning": "hm"}}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x", "vendor": 1}}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x"}, "logprobs": {"content": []}}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x"}}, {"index": 1, "delta": {"content": "y"}}]},
    {"choices": [], "usage": USAGE},
    {"choices": [{"delta": {"role": "assistant", "content": "x"}}], "usage": USAGE},
    {"choices": [{"delta": {"role": "assistant", "content": "x"}}], "error": {"message": "boom"}},
    {"choices": [{"delta": {"content": "x"}}]},  # a first delta without its role
    [1, 2],
])
def test_a_chunk_that_is_not_one_choices_plain_text_is_never_relayed(chunk: Any) -> None:
    assert answers.plain(json.dumps(chunk).encode(), started=False) is None
    ok = {"id": "x", "system_fingerprint": "fp", "usage": None,
          "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x", "refusal": None}}]}
    assert answers.plain(json.dumps(ok).encode(), started=False) == "x"
    assert answers.plain(b'{"choices": [{"delta": {"content": "y"}}]}', started=True) == "y"


def _one_by_one(payloads: list[bytes], started: bool) -> list[str] | None:
    texts = []
    for p in payloads:
        text = answers.plain(p, started) if p.find(b"\n") < 0 else None
        if text is None:
            return None
        started = True
        texts.append(text)
    return texts


POOL = [json.dumps(c).encode() for c in (
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"choices": [{"index": 0, "delta": {"content": "Par"}}]},
    {"id": "x", "choices": [{"delta": {"content": "is"}, "logprobs": None, "finish_reason": None}]},
    {"choices": [{"delta": {"content": "."}, "finish_reason": "stop"}]},
    {"choices": [], "usage": USAGE},
    {"choices": [{"delta": {"content": "x", "tool_calls": []}}]},
    {"choices": [{"delta": {"role": "assistant", "content": "x"}}], "error": {"message": "boom"}},
)] + [b'{"choices": [{"delta":\n{"content": "two lines"}}]}', b"not json", b"[1, 2]"]


@settings(max_examples=500, deadline=None)
@given(picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=6), started=st.booleans())
def test_the_chunks_of_one_read_checked_at_once_are_plain_exactly_when_each_is_plain_in_turn(
        picks: list[int], started: bool) -> None:
    """A read of many events is checked in one decode; what it relays must be what checking each in turn
    would relay, or nothing (then each is read alone, as before)."""
    payloads = [POOL[i] for i in picks]
    assert answers.plain_all(payloads, started) == _one_by_one(payloads, started)


SHAPED = [  # chunks as servers write a token's, their text "x" (vLLM's and OpenAI's order; llama.cpp's)
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}]},
    {"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": "x"}}],
     "created": 1, "id": "chatcmpl-1", "model": "m.gguf", "system_fingerprint": "b1",
     "object": "chat.completion.chunk"},
]
RAW_MIDDLES = st.lists(st.sampled_from([b"a", b",", b'"', b'"', b",\"", b"\\", b"\\", b"\\\\", b"}", b"\n", b"\\n",
                                        b"\\u00e9", "\u00e9".encode(), b"\xff", b'"},{"x":"', b"\\u12"]), max_size=4)


@settings(max_examples=600, deadline=None)
# a text ending in a lone backslash, then one starting `,"`: `["a\\",",","a"]` is two strings, but not theirs
@example(template=0, spaced=False, items=[("raw", [b"a", b"\\"]), ("raw", [b',"', b"a"])])
@given(template=st.sampled_from(range(len(SHAPED))), spaced=st.booleans(),
       items=st.lists(st.one_of(st.tuples(st.just("text"), st.text(max_size=8)), st.tuples(st.just("raw"), RAW_MIDDLES),
                                st.tuples(st.just("pool"), st.sampled_from(range(len(POOL)))),
                                st.tuples(st.just("cut"), st.integers(1, 60)), st.tuples(st.just("overlap"))),
                      min_size=1, max_size=5))
def test_chunks_read_by_their_shape_say_what_each_read_typed_says(template: int, spaced: bool,
                                                                  items: list[Any]) -> None:
    """A chunk read by the shape of the one before it (its bytes around the text) must give the text `plain`
    gives, or nothing (then it is read typed): whatever the text (quotes, backslashes, escapes), and whatever
    else a chunk is (another shape, a broken string, bytes cut short)."""
    base = json.dumps(SHAPED[template], separators=(", ", ": ") if spaced else (",", ":")).encode()
    shape = Shape.of(base)
    if spaced:  # `"content": "`: not a shape it takes; those chunks are read typed
        assert shape is None
        return
    assert shape is not None and shape.texts([base]) == ["x"]
    payloads, texts = [], []
    for kind, *arg in items:
        if kind == "text":  # a well-formed token
            payloads.append(base.replace(b'"content":"x"', b'"content":' + json.dumps(arg[0]).encode()))
            texts.append(arg[0])
        elif kind == "raw":  # any bytes where the text goes
            payloads.append(base.replace(b'"content":"x"', b'"content":"' + b"".join(arg[0]) + b'"'))
            texts.append(None)
        elif kind == "pool":
            payloads.append(POOL[arg[0]])
            texts.append(None)
        elif kind == "cut":
            payloads.append(base[:arg[0]] + base[-arg[0]:])
            texts.append(None)
        else:  # the shape's two ends overlapping: the text's opening quote taken for its closing one
            payloads.append(shape.prefix + shape.suffix[1:])
            texts.append(None)
    said = shape.texts(payloads)
    assert said is None or said == [answers.plain(p, True) for p in payloads], (payloads, said)
    if None not in texts:
        assert said == texts


@pytest.mark.parametrize("name", ["compact, role first", "spaced, no role chunk, fingerprint",
                                  "a field that changes between the identity's keys",
                                  "choices first, as llama.cpp writes"])
def test_relayed_frames_are_the_upstream_s_bytes_with_only_the_identity_swapped(name: str) -> None:
    """Whether the identity is swapped as one span, spelling by spelling or (for a read of one frame) in one
    frame: nothing else of the upstream's bytes changes, its spacing and its other fields included."""
    frames = STREAMS[name]
    read = Reader("smol", OpenAIBackend._events(None), True)  # type: ignore[arg-type]
    events: list[Event] = []
    read(b"".join(frames), events)
    relayed = [e for e in events if isinstance(e, RawChunk)]
    assert relayed, "the plain frames were relayed"
    w = ChatWriter(id=ID, created=CREATED, model=MODEL, include_usage=False)
    for e in relayed:
        out = w.event(e)
        sep = b": " if b'"id": ' in e.data else b":"
        back = out.replace(b'"id":"%s"' % ID.encode(), b'"id"%s"chatcmpl-up"' % sep) \
            .replace(b'"model":"%s"' % MODEL.encode(), b'"model"%s"smollm2"' % sep) \
            .replace(b'"created":%d' % CREATED, b'"created"%s1700000000' % sep)  # ours are written compact
        assert back == e.data


@pytest.mark.parametrize("name", list(STREAMS))
def test_a_read_of_one_whole_event_is_read_as_the_split_reads_it(name: str) -> None:
    """A paced server's reads are one event each, and take a shortcut past the split: the events (a plain one
    kept as the bytes it came as) are those the split gives when every event comes in two reads."""
    def events_of(pieces: list[bytes]) -> list[Event]:
        read = Reader("smol", OpenAIBackend._events(None), True)  # type: ignore[arg-type]
        out: list[Event] = []
        for piece in pieces:
            if read(piece, out):
                break
        else:
            read(None, out)
        return out

    frames = STREAMS[name]
    whole = events_of(frames)
    halves = events_of([half for f in frames for half in (f[:len(f) // 2], f[len(f) // 2:])])
    assert whole == halves
    relayed = [e for e in whole if isinstance(e, RawChunk)]
    assert relayed and all(e.count == 1 and e.data in frames for e in relayed), "each kept as it came"


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=12) | st.sampled_from(['"id":"chatcmpl-up"', '{"id":', "model"]),
                      min_size=1, max_size=40),
       spaced=st.booleans(), choices_first=st.booleans(), fingerprint=st.booleans(),
       changed=st.sampled_from([None, "created", "between", "id"]), where=st.integers(0, 39))
def test_relayed_frames_with_the_identity_first_or_not_say_what_the_upstream_said_under_ours(
        texts: list[str], spaced: bool, choices_first: bool, fingerprint: bool, changed: str | None,
        where: int) -> None:
    """However a read's frames spell the identity (first, as vLLM and OpenAI write it, or after the choices, as
    llama.cpp does), and whether or not one frame spells it differently, every relayed frame is the upstream's
    chunk with only our id, created and model in it, in the upstream's order, and each text once."""
    frames = []
    for i, text in enumerate(texts):
        odd = changed is not None and i == where % len(texts) and i > 0
        frames.append(_frame({"role": "assistant", "content": text} if i == 0 else {"content": text}, spaced=spaced,
                             choices_first=choices_first, created=17000000001 if odd and changed == "created"
                             else 1700000000, between={"trace": 7} if odd and changed == "between" else None,
                             extra={"system_fingerprint": "b1"} if fingerprint else None))
        if odd and changed == "id":
            frames[-1] = frames[-1].replace(b"chatcmpl-up", b"chatcmpl-other", 1)
    want = [json.loads(f[6:-2]) | {"id": ID, "created": CREATED, "model": MODEL} for f in frames]
    for reads in ([b"".join(frames)], frames):  # a quick server's one read, a paced server's read a token
        read = Reader("smol", OpenAIBackend._events(None), True)  # type: ignore[arg-type]
        events: list[Event] = []
        for piece in reads:
            read(piece, events)
        w = ChatWriter(id=ID, created=CREATED, model=MODEL, include_usage=False)
        out = b"".join(w.event(e) for e in events if isinstance(e, RawChunk))
        got = [json.loads(f) for f in out[6:-2].split(b"\n\ndata: ")] if out else []
        assert got == want
        assert [list(g) for g in got] == [list(json.loads(f[6:-2])) for f in frames], "the upstream's key order"


@settings(max_examples=300, deadline=None)
@given(spaced=st.booleans(), choices_first=st.booleans(), fingerprint=st.booleans(), last=st.booleans(),
       up_id=st.sampled_from(["chatcmpl-up", 'a"b\\c', "é", ""]), up_model=st.sampled_from(["smollm2", "m/x"]),
       created=st.sampled_from([0, 7, 1700000000, 17000000001]), text=st.text(max_size=8))
def test_the_identity_found_compact_at_once_is_what_the_spellings_loop_finds(
        spaced: bool, choices_first: bool, fingerprint: bool, last: bool, up_id: str, up_model: str, created: int,
        text: str) -> None:
    """`_swaps_for` tries the compact spelling of all three first, without the loop over spellings: where it
    finds them they are what the loop finds (the loop tries the same spelling first), and where it does not
    the loop decides."""
    extra = {"system_fingerprint": "b1"} if fingerprint else None
    frame = _frame({"content": text}, spaced=spaced, choices_first=choices_first, created=created, extra=extra)
    if last:  # `created` last of the object, so it ends with `}`, not `,`
        frame = frame.replace(b'"created"', b'"gone"').replace(b"}\n\n", b',"created":%d}\n\n' % created)
    frame = frame.replace(b'"chatcmpl-up"', json.dumps(up_id).encode()).replace(b'"smollm2"',
                                                                               json.dumps(up_model).encode())
    data = frame[6:-2]
    w = ChatWriter(id=ID, created=CREATED, model=MODEL, include_usage=False)
    up = (up_id, up_model, created)
    fast = w._compact(data, *up)
    assert fast is None or fast == w._spelled(data, up)
    if not spaced and w._spelled(data, up):  # (an id the server wrote escaped, "\\u00e9", is found by neither)
        assert fast is not None, "a compact chunk is read without the loop"
    assert w._swaps_for(data) == w._spelled(data, up)
