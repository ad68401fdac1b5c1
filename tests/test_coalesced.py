"""A response leaves in as few sends as it can: uvicorn writes a response's head and its body apart, and
`shenron serve`'s protocol sends the first two writes of a loop turn together and holds the rest until the
turn ends. Driven here on the real protocol class with a transport that records each write (each would be
one `send`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar, post
from uvicorn.config import Config
from uvicorn.server import ServerState

from proxy.sockets import GuardedHttpTools
from proxy.streaming import EventStream, Last, relay


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(app: Any, requests: bytes) -> Recording:
    config = Config(app=app, log_level="warning")
    config.load()
    proto = GuardedHttpTools(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    proto.connection_made(transport)
    proto.data_received(requests)
    for _ in range(50):  # the cycles run as tasks: let them, and the end of their loop turns, pass
        await asyncio.sleep(0)
    return transport


REQUEST = b"POST /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}"


async def test_a_whole_answer_is_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    t = await _serve(app, REQUEST)
    assert len(t.writes) == 1 and t.writes[0].startswith(b"HTTP/1.1 200 OK") and t.writes[0].endswith(b"\r\n\r\nok")


async def test_a_stream_s_head_is_not_held_for_its_first_event_and_its_end_goes_with_its_last() -> None:
    go = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await go.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})

    waiting = asyncio.ensure_future(_serve(app, REQUEST))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    go.set()
    t = await waiting
    assert t.writes[0].startswith(b"HTTP/1.1 200 OK") and t.writes[0].endswith(b"\r\n\r\n"), "the head went alone"
    assert t.writes[1:] == [b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"], "the last event and the end together"


async def test_a_paced_stream_s_token_leaves_at_once_without_waiting_for_the_turn_s_end() -> None:
    """A token in a loop turn of its own (a GPU server's pace: one read a token) is written during its `send`,
    not held for a flush a loop turn later: nothing else of that turn could join it."""
    tokens: list[asyncio.Event] = [asyncio.Event() for _ in range(3)]
    seen: list[int] = []
    transport: list[Recording] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})
        for i, ready in enumerate(tokens):
            await ready.wait()
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % (i + 1), "more_body": True})
            seen.append(len(transport[0].writes))  # right after the send, before the loop turns again
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    config = Config(app=app, log_level="warning")
    config.load()
    proto = GuardedHttpTools(config=config, server_state=ServerState(), app_state={})
    transport.append(Recording())
    proto.connection_made(transport[0])
    proto.data_received(REQUEST)
    for ready in tokens:
        for _ in range(10):
            await asyncio.sleep(0)
        ready.set()
    for _ in range(10):
        await asyncio.sleep(0)
    writes = transport[0].writes
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"data: 0\n\n\r\n")
    assert seen == [2, 3, 4], "each token was written by its own send"
    assert writes[1:4] == [b"9\r\ndata: %d\n\n\r\n" % i for i in (1, 2, 3)] and writes[-1] == b"0\r\n\r\n"


async def test_pipelined_answers_keep_their_order_and_a_close_sends_what_was_held() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    two = REQUEST.replace(b"/v1/x", b"/a") + REQUEST.replace(b"/v1/x", b"/b").replace(b"host: a", b"host: a\r\n"
                                                                                        b"connection: close")
    t = await _serve(app, two)
    joined = b"".join(t.writes)
    assert joined.index(b"\r\n\r\n/a") < joined.index(b"\r\n\r\n/b") and joined.endswith(b"/b") and t.closed



def _frames(go: asyncio.Event) -> Any:
    async def frames() -> Any:
        yield b"data: 1\n\n"
        await go.wait()
        yield Last(b"data: 2\n\n")  # as Shenron's streams end: their last frames and the end in one message
    return frames()


def _raw_relay(go: asyncio.Event) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await relay(_frames(go), send, receive, head={"type": "http.response.start", "status": 200, "headers": []})

    return app


def _litestar(go: asyncio.Event) -> Any:
    @post("/v1/x", status_code=200)
    async def x() -> EventStream:
        return EventStream(_frames(go), media_type="text/event-stream")

    return Litestar([x])


@pytest.mark.parametrize("way", ["fast route", "litestar"])
async def test_a_relayed_stream_s_first_event_leaves_with_its_head(way: str) -> None:
    """Both ways in send a stream through `relay`, with the head: the client's first event comes with the
    head in one send, not a loop turn or two after it, and the end with the last frames (`Last`)."""
    go = asyncio.Event()
    app = _litestar(go) if way == "litestar" else _raw_relay(go)
    waiting = asyncio.ensure_future(_serve(app, REQUEST))
    for _ in range(20):
        await asyncio.sleep(0)
    go.set()
    t = await waiting
    assert t.writes[0].startswith(b"HTTP/1.1 200 OK") and t.writes[0].endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
    assert t.writes[1:] == [b"9\r\ndata: 2\n\n\r\n0\r\n\r\n"]


async def test_a_stream_s_frames_made_in_one_loop_turn_leave_in_two_sends() -> None:
    """A quick upstream's whole stream comes in one read, and becomes several frames (its text, its finish,
    its usage, `[DONE]`), each an ASGI message: the head leaves with the first at once, and the rest with the
    end in one send at the end of the turn, not in pairs."""
    async def frames() -> Any:
        for f in (b"data: text\n\n", b"data: finish\n\n", b"data: usage\n\n", b"data: [DONE]\n\n"):
            yield f

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await relay(frames(), send, receive, head={"type": "http.response.start", "status": 200, "headers": []})

    t = await _serve(app, REQUEST)
    assert len(t.writes) == 2, t.writes
    assert t.writes[0].startswith(b"HTTP/1.1 200 OK") and t.writes[0].endswith(b"data: text\n\n\r\n")
    assert t.writes[1].startswith(b"e\r\ndata: finish") and t.writes[1].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert t.writes[1].index(b"data: finish") < t.writes[1].index(b"data: usage") < t.writes[1].index(b"[DONE]")


async def _relayed(frames: Any) -> list[dict[str, Any]]:
    """The ASGI messages `relay` sends for `frames`, with a client that never leaves."""
    sent: list[dict[str, Any]] = []

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    await relay(frames, send, receive, head={"type": "http.response.start", "status": 200, "headers": []})
    return sent


async def test_a_frame_that_says_nothing_is_not_sent() -> None:
    """A stream's events that write nothing in the client's dialect (chat's usage, when the client did not ask
    for it) cost no ASGI message and no write: the head and the frames that say something, then the end."""
    async def frames() -> Any:
        for f in (b"", b"data: 1\n\n", b"", b"data: [DONE]\n\n"):
            yield f

    sent = await _relayed(frames())
    assert [m.get("body") for m in sent] == [None, b"data: 1\n\n", b"data: [DONE]\n\n", b""]
    assert sent[-1]["more_body"] is False


async def test_a_stream_s_last_frames_are_its_last_message_and_its_generator_still_ends() -> None:
    """`Last` (what a Shenron stream ends with: the report, `[DONE]`) is sent as the response's last message, so
    uvicorn writes the chunked body's end with it; the generator's code after it still runs."""
    cleaned: list[bool] = []

    async def frames() -> Any:
        try:
            yield b"data: 1\n\n"
            yield Last(b"data: {\"council\":{}}\n\ndata: [DONE]\n\n")
        finally:
            cleaned.append(True)

    sent = await _relayed(frames())
    assert [(m.get("body"), m.get("more_body")) for m in sent] == [
        (None, None), (b"data: 1\n\n", True), (b"data: {\"council\":{}}\n\ndata: [DONE]\n\n", False)]
    assert cleaned == [True]


def test_a_chat_stream_s_report_leaves_with_its_end_in_one_message() -> None:
    """Through the app: the `council` frame, `[DONE]` and the end of the body are one ASGI message (one write),
    after the text and the finish."""
    import json

    import respx
    from httpx import Response
    from litestar.testing import TestClient

    from proxy.app import create_app
    from routing import config

    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]}
    done = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    body = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in (chunk, done)) + b"data: [DONE]\n\n"
    app = create_app(config.parse('[backends.m]\nurl = "http://up.test/v1"\nmodel = "m"\n'))
    messages: list[dict[str, Any]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def sent(message: Any) -> None:
            if scope["type"] == "http":
                messages.append(message)
            await send(message)

        await app(scope, receive, sent)

    with respx.mock(assert_all_called=False) as m:
        m.get("http://up.test/v1/models").respond(json={"data": [{"id": "m"}]})
        m.post("http://up.test/v1/chat/completions").mock(return_value=Response(
            200, content=body, headers={"content-type": "text/event-stream"}))
        with TestClient(recording) as client:  # type: ignore[arg-type]
            r = client.post("/v1/chat/completions", json={"model": "m", "stream": True,
                                                          "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and '"hi"' in r.text
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    assert bodies[-1]["more_body"] is False
    assert b'"council"' in bodies[-1]["body"] and bodies[-1]["body"].endswith(b"data: [DONE]\n\n")
    assert all(b'"council"' not in m["body"] for m in bodies[:-1])
