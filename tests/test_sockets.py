"""Integration: limits at the socket of a real `shenron serve` (uvicorn, the default server).

Huge headers get a 431, clients too slow with their headers or body are dropped with a 408, the
connection cap answers 503, and every one of those, like a request for a path Shenron does not
serve, is in the access log.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import Proc, access_lines, fake_upstream, shenron

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    tmp = tmp_path_factory.mktemp("sockets")
    upstream, url = fake_upstream(tmp, "--models", "m")
    proxy = None
    try:
        proxy, base = shenron(tmp, f"""
[server]
read-timeout-s = 1
max-connections = 40

[backends.m]
url = "{url}"
model = "m"
""")
        yield proxy, base
    finally:
        if proxy is not None:
            proxy.stop()
        upstream.stop()


def connect(base: str) -> socket.socket:
    host, port = base.split("//")[1].split("/")[0].split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(10)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            piece = s.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        out += piece
    return out


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def chat(base: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                      headers=headers, timeout=10)


def test_a_32_mb_header_gets_a_431_before_it_is_all_sent(stack: tuple[Proc, str]) -> None:
    _, base = stack
    s = connect(base)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: ")
    sent = 0
    try:
        while sent < 32 * 1024 * 1024:
            s.sendall(b"a" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused part way, as it should be
    raw = read_all(s)
    s.close()
    assert status_of(raw) == 431 and b"headers_too_large" in raw
    assert sent < 32 * 1024 * 1024  # it did not wait for all 32 MB
    assert chat(base).status_code == 200  # and the next client is served


def test_headers_just_under_the_limit_are_served_and_just_over_are_refused(stack: tuple[Proc, str]) -> None:
    _, base = stack
    assert chat(base, {"x-pad": "a" * 60_000}).status_code == 200
    r = chat(base, {"x-pad": "a" * 40_000, "x-pad2": "b" * 40_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"


def test_pipelined_requests_are_each_held_to_the_header_budget(stack: tuple[Proc, str]) -> None:
    """Two requests in one send: the second's 70 KB of headers get a 431 though the first request began the
    read (the budget is counted exactly once what was read could hold that much). HTTP/1.1 answers in the order
    it was asked: the first request's answer comes first, whole, then the refusal, then the connection closes
    (a third request after the refused one is not read)."""
    _, base = stack
    body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
    small = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
             b"content-length: %d\r\n\r\n%s" % (len(body), body))
    big = small.replace(b"host: x\r\n", b"host: x\r\nx-pad: " + b"a" * 70_000 + b"\r\n")
    s = connect(base)
    s.sendall(small + big + small)
    raw = read_all(s)
    s.close()
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    length = int(next(line.split(b":")[1] for line in first.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    answer, after = rest[:length], rest[length:]
    assert json.loads(answer)["choices"][0]["message"]["role"] == "assistant"
    assert after.startswith(b"HTTP/1.1 431") and b"headers_too_large" in after
    assert after.count(b"HTTP/1.1") == 1  # the third request was not answered: nothing after a refusal is read


def test_a_connection_s_read_deadline_is_one_entry_gone_with_it() -> None:
    """The read timeout is checked by the loop's deadline tick: the connection is one entry, whose time is set
    while a request is read and NEVER between requests, and which goes when the connection does."""
    import asyncio

    from proxy.sockets import protocol
    from routing import deadline
    from routing.deadline import NEVER
    from tests.test_coalesced import REQUEST, Recording

    async def app(scope: object, receive: object, send: object) -> None:
        await receive()  # type: ignore[operator]
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    async def run() -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(app=app, log_level="warning")
        config.load()
        proto = protocol(64, 0.2, 10)(config=config, server_state=ServerState(), app_state={})
        slow = Recording()
        proto.connection_made(slow)
        armed = deadline.of(asyncio.get_running_loop()).armed
        assert proto in armed and proto.when != NEVER  # the first request's headers are awaited
        proto.data_received(REQUEST)
        for _ in range(20):
            await asyncio.sleep(0)
        assert slow.writes and proto.when == NEVER  # answered: nothing is being read
        proto.data_received(b"POST /v1/x HTTP/1.1\r\nhost: a\r\n")  # and then nothing more
        await asyncio.sleep(0.2 + deadline.TICK + 0.1)
        assert b"HTTP/1.1 408" in slow.writes[-1] and slow.closed
        proto.connection_lost(None)
        assert proto not in armed

    asyncio.run(run())


def test_slow_headers_and_slow_bodies_are_dropped(stack: tuple[Proc, str]) -> None:
    proxy, base = stack
    slow_head, slow_body, idle = connect(base), connect(base), connect(base)
    slow_head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    slow_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: 100\r\n\r\n{\"model\":")
    start = time.monotonic()
    answers = [read_all(s) for s in (slow_head, slow_body, idle)]
    assert time.monotonic() - start < 5  # read-timeout-s = 1
    assert [status_of(a) for a in answers] == [408, 408, 408]
    assert b"request_timeout" in answers[1]
    logged = [e for e in access_lines(proxy) if e.get("status") == 408]
    assert len(logged) >= 3


def test_more_connections_than_the_cap_get_a_503(stack: tuple[Proc, str]) -> None:
    _, base = stack
    held = [connect(base) for _ in range(40)]
    time.sleep(0.2)
    extra = connect(base)
    raw = read_all(extra)
    assert status_of(raw) == 503 and b"too_many_connections" in raw
    for s in held:
        s.close()
    time.sleep(0.2)
    assert chat(base).status_code == 200


def test_paths_and_methods_shenron_does_not_serve_are_access_logged(stack: tuple[Proc, str]) -> None:
    proxy, base = stack
    root = base.removesuffix("/v1")
    assert httpx.post(f"{root}/v1/unknown-thing", json={}).status_code == 404
    assert httpx.delete(f"{root}/v1/models").status_code == 405
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = {(e["method"], e["path"], e["status"]) for e in access_lines(proxy)}
        if {("POST", "/v1/unknown-thing", 404), ("DELETE", "/v1/models", 405)} <= seen:
            return
        time.sleep(0.05)
    raise AssertionError(f"not logged: {seen}")


def test_a_client_that_reads_slowly_gets_a_long_stream_whole_and_in_order(tmp_path: Path) -> None:
    """A stream is held back at the client's socket (the server's flow control), not queued without bound
    nor dropped: megabytes read a few kilobytes at a time arrive whole, in order, to their [DONE]."""
    words = [f"w{i:05d}" + "x" * 90 for i in range(20000)]
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([" ".join(words)]))
    upstream, url = fake_upstream(tmp_path, "--models", "m", "--answers-file", str(answers))
    proxy = None
    try:
        proxy, base = shenron(tmp_path, f'[backends.m]\nurl = "{url}"\nmodel = "m"\n')
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = base.split("//")[1].split("/")[0].split(":")
        s.connect((host, int(port)))
        s.settimeout(30)
        body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        raw = b""
        while True:
            piece = s.recv(4096)
            if not piece:
                break
            raw += piece
            time.sleep(0.0005)
        s.close()
        head, _, chunked = raw.partition(b"\r\n\r\n")
        assert status_of(head) == 200
        events = _unchunked(chunked).split(b"\n\n")
        text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events
                       if e.startswith(b"data: {") and json.loads(e[6:])["choices"])
        assert text == " ".join(words) and events[-2] == b"data: [DONE]"
    finally:
        if proxy is not None:
            proxy.stop()
        upstream.stop()


def _unchunked(data: bytes) -> bytes:
    out, i = [], 0
    while True:
        end = data.index(b"\r\n", i)
        size = int(data[i:end], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        i = end + 2 + size + 2
