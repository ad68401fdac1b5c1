"""Backends: one class per wire protocol, chosen by `kind` in `build`'s table.

Every call goes over the one shared `httpx.AsyncClient`; every failure of the
layers below (httpx, the upstream's HTTP status, its body) is translated here,
in `_translated`, into a `MemberFailure` that names the member.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from routing.config import BackendConfig
from routing.core import Event, Finish, Reply, says_something
from routing.deadline import Within
from routing.errors import MemberFailure, MemberTimeout, UpstreamStatus
from routing.request import Json, Request
from routing.upstream import answers, clients
from routing.upstream.conn import Body
from routing.upstream.guard import Guard
from routing.upstream.reader import Reader
from routing.upstream.transport import Transport, origin_of

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
STREAMED = b'true,"stream_options":{"include_usage":true}'


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect: {exc}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"upstream closed the connection: {exc}"
    if isinstance(exc, (msgspec.DecodeError, UnicodeDecodeError)):
        return f"malformed response: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def upstream_error(member: str, status: int, content: bytes, retry_after: str | None = None) -> UpstreamStatus:
    """Read an upstream error body in any of the shapes servers use (OpenAI, FastAPI, llama.cpp)."""
    message, etype, code, param = content.decode("utf-8", "replace")[:500] or f"HTTP {status}", None, None, None
    with contextlib.suppress(msgspec.DecodeError, UnicodeDecodeError):
        body = _decode(content)
        err = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or message)
            etype = err.get("type") if isinstance(err.get("type"), str) else None
            code = err.get("code") if isinstance(err.get("code"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    return UpstreamStatus(member, status, message, etype, code, param, retry_after)


class OpenAIBackend:
    """Any OpenAI-compatible server: Ollama, LM Studio, llama.cpp, vLLM, OpenAI itself."""

    def __init__(self, name: str, cfg: BackendConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.cfg = cfg
        self.model = cfg.model
        self._client = client
        base = cfg.url.rstrip("/")
        self.chat_url = base + "/chat/completions"
        self.models_url = base + "/models"
        self.headers = {"content-type": "application/json", **cfg.headers}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            self.headers["authorization"] = f"Bearer {key}"
        self.timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
        self._wire: _Wire | None = None
        """How a chat POST is written, built on the first request."""
        self.guard = Guard(name, cfg)
        """Replaced by the router's, which knows the GPU pool and is probed in the background."""
        self.window: int | None = cfg.context_tokens
        """Its context window in tokens: configured, or as the server said (None: unknown)."""

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            failure = self._failure(e)
            if failure is None:
                raise
            raise failure from e

    def _failure(self, e: Exception) -> MemberFailure | None:
        """What a failure of the layers below means for this member (None: a MemberFailure already, or a bug)."""
        if isinstance(e, MemberFailure):
            return None
        if isinstance(e, (httpx.TimeoutException, TimeoutError)):
            return MemberTimeout(self.name, f"no answer within {self.cfg.timeout_s:g}s")
        if isinstance(e, (httpx.HTTPError, msgspec.DecodeError, UnicodeDecodeError, OSError)):
            return MemberFailure(self.name, _reason(e))
        return None

    def _body(self, req: Request, stream: bool, model: str | None) -> tuple[bytes, dict[str, str] | None]:
        """The request's body on this kind's wire, and headers of its own beside the backend's."""
        chat = req.wire()  # `{"messages": ...}`: the model and delivery go in front of its fields
        return b'{"model":%s,"stream":%s,%s' % (_encode(model or self.model), STREAMED if stream else b"false",
                                                chat[1:]), None

    async def _open(self, content: bytes, extra: dict[str, str] | None, bounded: bool,
                    ) -> tuple[int, str | None, str | None, httpx.AsyncByteStream]:
        """POST `content` to the chat URL: the status, `retry-after`, `content-encoding`, and the body to
        read or close. On Shenron's own transport without httpx's Request and Response objects (their
        headers, URL and stream wrappers cost more than the exchange's own Python); on any other through
        httpx."""
        wire = self._wire_of()
        transport = wire.transport
        if not isinstance(transport, Transport):
            resp = await clients.send(self._client, self._post(content, extra, bounded=bounded))
            stream = resp.stream
            if not isinstance(stream, httpx.AsyncByteStream):
                raise TypeError("an async client's transport gave a synchronous stream")
            return resp.status_code, resp.headers.get("retry-after"), resp.headers.get("content-encoding"), stream
        status, headers, body = await transport.open(
            wire.origin, _request_head(wire, extra, content), content,
            (wire.whole if bounded else wire.streamed)["timeout"])
        return status, *_found(headers), body

    async def _whole(self, content: bytes, extra: dict[str, str] | None) -> tuple[int, str | None, bytes]:
        """`_open`, read whole (and decoded, should a server compress what nobody asked to be). On Shenron's own
        transport in one call (`Transport.whole`): a member's whole answer takes no body reader."""
        wire = self._wire_of()
        if isinstance(wire.transport, Transport):
            status, headers, body = await wire.transport.whole(
                wire.origin, _request_head(wire, extra, content), content, wire.whole["timeout"])
            retry_after, encoding = _found(headers)
        else:
            status, retry_after, encoding, stream = await self._open(content, extra, True)
            body = await _drain(stream)
        if encoding:
            body = await httpx.Response(status, headers={"content-encoding": encoding},
                                        stream=httpx.ByteStream(body)).aread()
        return status, retry_after, body

    def _wire_of(self) -> _Wire:
        if self._wire is None:  # after __init__: a subclass sets its own URL and headers there
            url = httpx.URL(self.chat_url)
            headers = [("host", url.netloc.decode("ascii")), *self.headers.items()]
            timeouts = self.timeout.as_dict()
            self._wire = _Wire(url, headers, _head(url, headers), {"timeout": timeouts},
                               {"timeout": {**timeouts, "read": None}}, self._client._transport_for_url(url),
                               origin_of(url))
        return self._wire

    def _post(self, content: bytes, extra: dict[str, str] | None = None, bounded: bool = False) -> httpx.Request:
        """A POST of `content` to the chat URL. Built with `stream=` and a prepared header list, so
        httpx neither re-merges nor re-detects the headers' encoding per request (that was a tenth of
        a millisecond of CPU per member call, measured). `bounded`: the caller holds a deadline over the
        whole exchange, so the transport needs no read timer of its own."""
        wire = self._wire_of()
        raw = _merged(wire.headers, extra) if extra else wire.headers
        headers = httpx.Headers([*raw, ("content-length", str(len(content)))], encoding="utf-8")
        request = httpx.Request("POST", wire.url, headers=headers, stream=httpx.ByteStream(content),
                                extensions=wire.whole if bounded else wire.streamed)
        request.read()  # a ByteStream reads at once; the transport can then send it as plain bytes
        return request

    async def complete(self, req: Request, model: str | None = None, notes: Json | None = None) -> Reply:
        """One non-streamed completion; the whole exchange is bounded by the member's timeout. The wire
        call only: a strategy asks through `routing.member`, which adds the guard, budget and report.
        `notes` is the call's record, for a backend that learns something per call (a pool: its endpoint)."""
        try:  # as `_translated` (not entered: a generator and a context manager a member call)
            async with Within(self.cfg.timeout_s):
                status, retry_after, content = await self._whole(*self._body(req, False, model))
            if status >= 400:
                raise upstream_error(self.name, status, content, retry_after)
            return self._answer(content)
        except Exception as e:
            failure = self._failure(e)
            if failure is None:
                raise
            raise failure from e

    def _answer(self, content: bytes) -> Reply:
        """The upstream's whole answer, checked and typed (`routing.upstream.answers`): one plain text choice
        straight from its bytes, anything else decoded and checked field by field."""
        return answers.plain_reply(content) or answers.reply(self.name, _decode(content))

    def _events(self) -> Callable[[Json], list[Json] | None]:
        """A translator for one stream: an upstream event to OpenAI chunks, or None when the answer is over."""

        def openai(chunk: Json) -> list[Json]:
            if "error" in chunk and not chunk.get("choices"):
                err = chunk["error"]
                msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                raise MemberFailure(self.name, f"error in stream: {msg}")
            return [chunk]

        return openai

    relays = True
    """Its chunks are OpenAI's: plain ones can reach a chat client as they came (`RawChunk`)."""

    async def stream(self, req: Request, model: str | None = None, notes: Json | None = None,
                     raw: bool = False) -> AsyncGenerator[Event, None]:
        """Events of a streamed completion as they arrive (`raw`: plain chunks as `RawChunk`s).

        The first chunk is awaited within the member's timeout, so a caller that has not yet
        sent anything can still fall back. Closing the iterator closes the upstream connection,
        which is how a cancelled member stops costing GPU time.
        """
        body: httpx.AsyncByteStream | None = None
        pieces: AsyncIterator[bytes] | None = None
        try:
            try:  # as `_translated` (not entered: a generator and a context manager a stream)
                # Until it says something, within the member's timeout, held back: a caller can still fall
                # back. After that, one read after another with no timer of their own (a timeout entered
                # per event was a third of a stream's CPU).
                async with Within(self.cfg.timeout_s):
                    status, retry_after, _, body = await self._open(*self._body(req, True, model), False)
                    if status >= 400:
                        raise upstream_error(self.name, status, await _drain(body), retry_after)
                    pieces = aiter(body)  # the transport's body as it is: no httpx layers around every read
                    read = Reader(self.name, self._events(), raw and self.relays, self.relays)
                    events: list[Event] = []
                    ended = said = finished = False
                    while not said and not ended:
                        ended = read(await anext(pieces, None), events)
                        said = any(says_something(e) for e in events)
                while True:
                    for e in events:
                        finished = finished or isinstance(e, Finish)
                        yield e
                    if ended or not said:
                        break
                    events.clear()
                    try:
                        ended = read(await anext(pieces, None), events)
                    except Exception:  # a broken event (translated below): what the read held before it first
                        for e in events:
                            yield e
                        raise
                if not said:
                    raise MemberFailure(self.name, "stream ended without an answer (no content, no finish reason)")
                if not finished and not read.done:
                    raise MemberFailure(self.name, "stream ended before the answer was complete")
            except Exception as e:
                failure = self._failure(e)
                if failure is None:
                    raise
                raise failure from e
        finally:
            # Closed here, not left to the garbage collector: an async generator dropped half-read is
            # closed by the loop's finalizer hook, a wake-up and a task for each, twice a stream.
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()
            if body is not None:
                await body.aclose()

    async def forward(self, path: str, body: Json, model: str | None = None,
                      betas: tuple[str, ...] = ()) -> httpx.Response:
        """POST a body to another endpoint of this server (`/embeddings`, `/completions`) as it is, with the
        model id put in; the response is open (streamed or not) and the caller closes it. Statuses of 400
        and above become UpstreamStatus; the backend's guard and timeout apply as to chat."""
        if path not in self.forwards:
            raise UpstreamStatus(self.name, 400, f"backend {self.name!r} ({type(self).__name__}) does not serve "
                                 f"{path}", "invalid_request_error", "unsupported_endpoint", None)
        url = httpx.URL(self._forward_url(path))
        headers = httpx.Headers([("host", url.netloc.decode("ascii")), *self._headers_with(betas).items()])
        request = httpx.Request("POST", url, headers=headers, content=_encode({**body, "model": model or self.model}),
                                extensions={"timeout": self.timeout.as_dict()})
        with self._translated():
            async with self.guard.call(), asyncio.timeout(self.cfg.timeout_s):
                resp = await clients.send(self._client, request)
                if resp.status_code >= 400:
                    try:
                        content = await resp.aread()
                    finally:
                        await resp.aclose()
                    raise upstream_error(self.name, resp.status_code, content, resp.headers.get("retry-after"))
        return resp

    def _headers_with(self, betas: tuple[str, ...]) -> dict[str, str]:
        """This backend's headers for one request (an OpenAI-compatible server has no use for betas)."""
        return self.headers

    forwards: frozenset[str] = frozenset({"/embeddings", "/completions"})
    """Endpoints besides chat that `forward` may reach on this kind of server."""

    def _forward_url(self, path: str) -> str:
        return self.cfg.url.rstrip("/") + path

    async def list_models(self) -> list[str]:
        """Model ids the server says it serves (GET /models)."""
        with self._translated():
            resp = await self._client.get(self.models_url, headers=self.headers, timeout=self.timeout)
            if resp.status_code >= 400:
                raise upstream_error(self.name, resp.status_code, resp.content)
            data = _decode(resp.content)
        items = data.get("data", []) if isinstance(data, dict) else []
        if self.cfg.context_tokens is None:  # vLLM says its window where it lists the model
            for m in items:
                if isinstance(m, dict) and m.get("id") == self.model and isinstance(m.get("max_model_len"), int):
                    self.window = m["max_model_len"]
        return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]


@dataclass(frozen=True, slots=True)
class _Wire:
    """How a backend's chat POST is written: its URL and headers, the request line and headers as bytes
    (for Shenron's own transport; the length goes after them), and the timeouts httpx takes."""

    url: httpx.URL
    headers: list[tuple[str, str]]
    head: bytes
    streamed: dict[str, Any]
    """A stream's timeouts: the transport times each read (nothing else bounds the reads after the first)."""
    whole: dict[str, Any]
    """A whole answer's: no read timer, the member's deadline bounds the exchange."""
    transport: httpx.AsyncBaseTransport
    """The client's transport for the URL (looked up once: httpx looks it up by the URL's parts each time)."""
    origin: tuple[bytes, bytes, int]


def _request_head(wire: _Wire, extra: dict[str, str] | None, content: bytes) -> bytes:
    """The request line and headers of a chat POST of `content` (with a request's own headers, if any)."""
    head = _head(wire.url, _merged(wire.headers, extra)) if extra else wire.head
    return head + b"content-length: %d\r\n\r\n" % len(content)


def _found(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """A response's `retry-after` and `content-encoding`, where it sent them."""
    found = {k.lower(): v.decode("latin-1") for k, v in headers if k.lower() in (b"retry-after", b"content-encoding")}
    return found.get(b"retry-after"), found.get(b"content-encoding")


def _merged(headers: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    """The backend's headers with a request's own (the client's Anthropic betas) in place of theirs."""
    return [(k, v) for k, v in headers if k not in extra] + list(extra.items())


async def _drain(stream: httpx.AsyncByteStream) -> bytes:
    """A response body read whole, then closed (on Shenron's transport, without a layer per piece)."""
    try:
        if isinstance(stream, Body):
            return await stream.read()
        return b"".join([piece async for piece in stream])
    finally:
        await stream.aclose()


def _head(url: httpx.URL, headers: list[tuple[str, str]]) -> bytes:
    return b"POST " + url.raw_path + b" HTTP/1.1\r\n" + b"".join(
        b"%s: %s\r\n" % (k.encode("utf-8"), v.encode("utf-8")) for k, v in headers)


Backend = OpenAIBackend
