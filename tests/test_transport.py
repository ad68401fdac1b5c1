"""Shenron's own httpx transport against a raw asyncio HTTP server that misbehaves on request."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from routing.config import BackendConfig
from routing.core import TextDelta
from routing.errors import UpstreamStatus
from routing.request import Request
from routing.upstream.anthropic import AnthropicBackend
from routing.upstream.backends import OpenAIBackend
from routing.upstream.conn import Conn
from routing.upstream.transport import Transport

JSON = b'{"ok": true}'
CHUNK = json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [
    {"index": 0, "delta": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}]}).encode()
COMPLETION = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
MESSAGE = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                      "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn",
                      "usage": {"input_tokens": 3, "output_tokens": 1}}).encode()


class Server:
    """Answers by path: /json (content-length), /sse (chunked, three events), /big (3 MiB chunked),
    /close (answers, then closes),
    /slow (never answers), /hang-body (headers, half a body, then nothing)."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                if length:
                    await r.readexactly(length)
                if path == b"/json":
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                            % len(JSON) + JSON)
                elif path == b"/sse":
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                    for i in range(3):
                        event = b"data: %d\n\n" % i
                        w.write(b"%x\r\n%s\r\n" % (len(event), event))
                        await w.drain()
                        await asyncio.sleep(0.01)
                    w.write(b"0\r\n\r\n")
                elif path == b"/chat/v1/chat/completions":  # a chat stream, `[DONE]` before the last chunk
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                    for data in (CHUNK, b"[DONE]"):
                        event = b"data: %s\n\n" % data
                        w.write(b"%x\r\n%s\r\n" % (len(event), event))
                        await w.drain()
                        await asyncio.sleep(0.01)
                    w.write(b"0\r\n\r\n")
                elif path == b"/big":  # 3 MiB in 48 chunks, written as fast as the socket takes them
                    w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    for i in range(48):
                        piece = bytes([65 + i % 26]) * 65536
                        w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        await w.drain()
                    w.write(b"0\r\n\r\n")
                elif path == b"/gzip/v1/chat/completions":  # compressed though nobody asked
                    packed = gzip.compress(COMPLETION)
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                            b"content-length: %d\r\n\r\n" % len(packed) + packed)
                elif path == b"/busy/v1/chat/completions":
                    err = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
                    w.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: %d\r\n\r\n"
                            % len(err) + err)
                elif path == b"/v1/messages":
                    self.heads.append(head)
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                            % len(MESSAGE) + MESSAGE)
                elif path == b"/close":
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    await w.drain()
                    return
                elif path == b"/slow":
                    await r.read(1)  # until the client closes the connection
                    return
                elif path == b"/hang-body":
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf")
                    await w.drain()
                    await r.read(1)
                    return
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            w.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    await s.start()
    yield s
    await s.stop()


def client(limit: int = 4, keepalive: float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Transport(httpx.Limits(max_connections=limit, keepalive_expiry=keepalive)),
                             timeout=httpx.Timeout(2, connect=2))


async def test_keep_alive_reuses_one_connection(server: Server) -> None:
    async with client() as c:
        for _ in range(5):
            r = await c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")
            assert r.json() == {"ok": True}
    assert server.connections == 1


async def test_a_chunked_stream_arrives_event_by_event(server: Server) -> None:
    async with client() as c, c.stream("GET", f"http://127.0.0.1:{server.port}/sse") as r:
        pieces = [p async for p in r.aiter_raw()]
    assert b"".join(pieces) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n" and len(pieces) >= 2


async def test_a_slow_reader_pauses_the_upstream_and_still_gets_every_byte_in_order(server: Server) -> None:
    """Past HIGH_WATER unread bytes the connection stops reading (the upstream waits in TCP), resumes once
    the reader took what was there (handed over as one piece), and is reused after a complete body."""
    async with client() as c:
        async with c.stream("GET", f"http://127.0.0.1:{server.port}/big") as r:
            got, paused = [], False
            async for piece in r.aiter_raw():
                got.append(piece)
                await asyncio.sleep(0.02)  # a reader slower than loopback: the buffer fills meanwhile
                paused = paused or r.stream._stream._conn.paused  # type: ignore[union-attr]
        body = b"".join(got)
        assert body == b"".join(bytes([65 + i % 26]) * 65536 for i in range(48))
        assert paused, "the connection stopped reading while 1 MiB waited unread"
        assert len(got) < 48, "what arrived together came as one piece"
        r2 = await c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")
        assert r2.json() == {"ok": True}
    assert server.connections == 1


async def test_a_response_not_read_to_the_end_closes_its_connection(server: Server) -> None:
    async with client() as c:
        async with c.stream("GET", f"http://127.0.0.1:{server.port}/sse") as r:
            async for _ in r.aiter_raw():
                break  # the caller stops reading: a cancelled member
        await asyncio.sleep(0.1)
        assert server.open == 0  # closed, never returned to the pool half-read
        assert (await c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")).status_code == 200
    assert server.connections == 2


async def test_cancelling_a_request_closes_its_connection(server: Server) -> None:
    async with client() as c:
        task = asyncio.create_task(c.get(f"http://127.0.0.1:{server.port}/slow"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert server.open == 0


async def test_a_request_cancelled_after_its_whole_answer_came_keeps_its_connection(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A council's early decision cancels members whose answers may already be in, their tasks only waiting
    for their turn: nothing is generating there, so the connection goes back to the pool, not closed."""
    victim: asyncio.Task[Any] | None = None
    complete = Conn.on_message_complete

    def complete_then_cancel(self: Conn) -> None:
        complete(self)
        if victim is not None:
            victim.cancel()  # the answer is in, the task not yet resumed: as the council's cancel lands

    async with client() as c:
        monkeypatch.setattr(Conn, "on_message_complete", complete_then_cancel)
        victim = asyncio.ensure_future(c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}"))
        with pytest.raises(asyncio.CancelledError):
            await victim
        monkeypatch.undo()
        assert (await c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")).json() == {"ok": True}
    assert server.connections == 1


async def test_a_connection_whose_answer_paused_its_reading_is_pooled_only_reading_again() -> None:
    """An answer past HIGH_WATER whose last bytes came in the read that crossed it is complete with reading
    paused: taken whole, the connection must read again, or the next response on it is never read."""
    from routing.upstream.conn import HIGH_WATER, Body, ConnPool

    class Paused(asyncio.Transport):
        reading = True

        def write(self, data: Any) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def pause_reading(self) -> None:
            self.reading = False

        def resume_reading(self) -> None:
            self.reading = True

        def close(self) -> None:
            self.closed = True

    body = b"x" * (HIGH_WATER + 10)

    def filled() -> tuple[Conn, Paused]:
        conn, tr = Conn((b"http", b"up", 80)), Paused()
        conn.connection_made(tr)
        conn.send(b"POST / HTTP/1.1\r\n\r\n", b"")
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        assert conn.complete and not tr.reading, "complete, and paused by the read that brought it"
        return conn, tr

    conn, tr = filled()
    pool = ConnPool(4, 30)
    pool.open = 1
    assert await Body(conn, pool, None).read() == body
    assert tr.reading and list(pool.idle) == [conn], "reading again, and back in the pool"
    left, tr = filled()  # a caller that stops before reading it (a cancelled member): closed, not pooled
    pool.open += 1
    await Body(left, pool, None).aclose()
    assert list(pool.idle) == [conn] and getattr(tr, "closed", False)


async def test_a_connection_the_upstream_closed_is_not_reused(server: Server) -> None:
    async with client() as c:
        assert (await c.get(f"http://127.0.0.1:{server.port}/close")).text == "ok"
        await asyncio.sleep(0.05)
        assert (await c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")).status_code == 200
    assert server.connections == 2


async def test_the_pool_limit_queues_requests_instead_of_opening_more(server: Server) -> None:
    async with client(limit=2) as c:
        answers = await asyncio.gather(*(c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")
                                         for _ in range(8)))
    assert all(r.status_code == 200 for r in answers) and server.connections <= 2


async def test_failures_are_httpx_errors(server: Server) -> None:
    async with client() as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"http://127.0.0.1:{server.port}/slow", timeout=httpx.Timeout(0.3))
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"http://127.0.0.1:{server.port}/hang-body", timeout=httpx.Timeout(0.3))
        with pytest.raises(httpx.ConnectError):
            await c.get("http://127.0.0.1:1/json")


async def test_a_streamed_request_body_goes_with_a_content_length(server: Server) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"a":'
        yield b" 1}"

    async with client() as c:
        r = await c.post(f"http://127.0.0.1:{server.port}/json", content=parts())
        assert r.status_code == 200
        assert (await c.post(f"http://127.0.0.1:{server.port}/json", content=b"{}")).status_code == 200
    assert server.connections == 1  # the server read exactly the body, and the connection stayed usable


async def test_https_upstreams_verify_the_certificate(tmp_path: Path) -> None:
    """Cloud backends are HTTPS: the handshake, SNI and verification go through the same path."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl (Debian) is not installed: no certificate to test with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    s = Server()
    s.server = await asyncio.start_server(s.handle, "127.0.0.1", 0, ssl=server_ctx)
    s.port = s.server.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        limits = httpx.Limits(max_connections=2, keepalive_expiry=30)
        async with httpx.AsyncClient(transport=Transport(limits, trusting)) as c:
            for _ in range(2):
                r = await c.post(f"https://localhost:{s.port}/json", content=b"{}")
                assert r.json() == {"ok": True}
        assert s.connections == 1
        async with httpx.AsyncClient(transport=Transport(limits)) as c:  # the system's trust store: refused
            with pytest.raises(httpx.ConnectError):
                await c.post(f"https://localhost:{s.port}/json", content=b"{}")
    finally:
        await s.stop()


async def test_a_whole_answer_on_the_own_transport_is_decoded_and_its_errors_keep_their_retry_after(
        server: Server) -> None:
    """A member's whole answer skips httpx's Request and Response on Shenron's transport: a body sent
    compressed is still decoded, a 429 still says when to retry, and an Anthropic backend's betas still
    reach the server beside its own headers."""
    req = Request.of({"messages": [{"role": "user", "content": "capital of France?"}], "max_tokens": 5})
    base = f"http://127.0.0.1:{server.port}"
    async with client() as c:
        gz = OpenAIBackend("gz", BackendConfig(url=base + "/gzip/v1", model="m"), c)
        assert (await gz.complete(req)).answer.text == "Paris"
        busy = OpenAIBackend("busy", BackendConfig(url=base + "/busy/v1", model="m"), c)
        with pytest.raises(UpstreamStatus) as e:
            await busy.complete(req)
        assert e.value.upstream_status == 429 and e.value.retry_after == "7" and e.value.upstream_message == "slow down"
        claude = AnthropicBackend("claude", BackendConfig(url=base, model="claude", kind="anthropic",
                                                          headers={"anthropic-beta": "own-1"}), c)
        with_betas = msgspec.structs.replace(req, betas=("client-2",))
        assert (await claude.complete(with_betas)).answer.text == "Paris"
        assert (await claude.complete(req)).answer.text == "Paris"
    first, second = (h.decode().lower() for h in server.heads)
    assert "anthropic-beta: own-1,client-2\r\n" in first and "anthropic-beta: own-1\r\n" in second
    assert "content-length:" in first and first.count("anthropic-beta") == 1



async def test_a_stream_read_to_its_done_leaves_no_generator_for_the_collector_to_close(server: Server) -> None:
    """A stream ends at `[DONE]`, before the transport's body is read to its last chunk. The readers it
    stopped are closed then; left to the garbage collector, each would cost the loop a wake-up from its
    finalizer hook and a task to close it (two per stream)."""
    left: list[str] = []
    hooks = sys.get_asyncgen_hooks()

    def finalizer(agen: Any) -> None:
        left.append(agen.ag_code.co_qualname)
        assert hooks.finalizer is not None
        hooks.finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        req = Request.of({"messages": [{"role": "user", "content": "capital of France?"}], "stream": True})
        async with client() as c:
            member = OpenAIBackend("m", BackendConfig(url=f"http://127.0.0.1:{server.port}/chat/v1", model="m"), c)
            for _ in range(3):
                events = [e async for e in member.stream(req)]
                assert any(isinstance(e, TextDelta) and e.text == "Paris" for e in events)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert left == []
