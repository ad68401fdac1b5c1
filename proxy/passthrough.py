"""`POST /v1/embeddings` and `POST /v1/completions`: sent as they are to the backend serving the model.

No council answers these (there is no vote over vectors or a fill-in-the-middle); the model is
a backend's name, its model, or an id it reported, as for any pass-through model. The request
is authorized, limited and accounted like a chat request, and its `council` says who answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from litestar import Request, Response
from litestar.datastructures import State

from proxy import errors
from proxy.accounting import Books, Ticket
from proxy.auth import Gate, allows
from proxy.requests import decode
from proxy.serve import SSE_HEADERS, credentials
from proxy.streaming import EventStream, watched
from routing import spend, wire
from routing.errors import InvalidRequest
from routing.report import CouncilReport, MemberReport, Timer, priced
from routing.router import Router

Json = dict[str, Any]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _check(path: str, body: Json) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    key = "input" if path == "/embeddings" else "prompt"
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
    if not isinstance(value, (str, list)):
        raise InvalidRequest(f"Invalid type for '{key}': expected a string or an array.", param=key,
                             code="invalid_type")
    if path == "/embeddings" and body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest("Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                             param="encoding_format", code="invalid_value")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("Invalid type for 'stream': expected a boolean.", param="stream", code="invalid_type")
    if path == "/embeddings" and body.get("stream"):
        raise InvalidRequest("Embeddings are not streamed: remove 'stream'.", param="stream", code="invalid_value")
    return model


def _report(model: str, member: str, backend_model: str, status: Any, t: Timer, usage: Json | None,
            router: Router, error: str | None = None) -> Json:
    m = MemberReport(name=member, model=backend_model, status=status, latency_ms=t.ms(), usage=usage, error=error)
    return CouncilReport(virtual_model=model, strategy="passthrough", winner=member if status == "ok" else None,
                         members=priced([m], router.backends), latency_ms=t.ms()).as_json()


async def handle(request: Request[Any, Any, Any], state: State, path: str) -> Response[bytes] | EventStream:
    books: Books = state.books
    gate: Gate = state.gate
    router: Router = state.router
    t = Ticket(log=request.scope.setdefault("shenron", {}))  # type: ignore[typeddict-item]
    calls = spend.begin()
    try:
        t.principal = await gate.principal(credentials(request.headers))
        body = decode(await request.body())
        model = _check(path, body)
        t.request_id, t.model, t.stream = wire.new_id(), model, bool(body.get("stream"))
        member, upstream_model = router.backend_for(model, functools.partial(allows, t.principal.tier))
        t.strategy = "passthrough"
        books.started(t)
        gate.authorize(t.principal, model)
        await gate.admit(t.principal)
        backend = router.backends[member]
        timer = Timer()
        asked_model = upstream_model or backend.model
        if t.stream:
            with spend.tracked(member, asked_model, backend.cfg):
                resp = await watched(backend.forward(path, body, upstream_model), request.receive)
            return EventStream(_relay(resp, books, t, member, asked_model, timer, router, calls),
                               media_type="text/event-stream", headers=SSE_HEADERS)
        with spend.tracked(member, asked_model, backend.cfg) as spent:
            resp = await watched(backend.forward(path, body, upstream_model), request.receive)
            try:
                raw = await resp.aread()
            finally:
                await resp.aclose()
            out = _decode(raw)
            if not isinstance(out, dict):
                raise InvalidRequest(f"backend {member!r} answered {path} with something other than an object")
            spent.usage = out.get("usage") if isinstance(out.get("usage"), dict) else None
        out["council"] = _report(model, member, asked_model, "ok", timer, spent.usage, router)
        await books.finish(t, 200, out["council"])
        return Response(_encode(out), media_type="application/json")
    except Exception as e:
        status, code = errors.classify(e)
        await books.finish(t, status, exc=e, error=code, calls=calls)
        raise


async def _relay(resp: httpx.Response, books: Books, t: Ticket, member: str, model: str, timer: Timer,
                 router: Router, calls: list[spend.Spend]) -> AsyncIterator[bytes]:
    """The upstream's stream as it comes; the last `usage` seen in it is what the ledger counts."""
    usage: Json | None = None
    tail = b""
    try:
        try:
            async for piece in resp.aiter_raw():
                yield piece
                if b'"usage"' in tail + piece:
                    for line in (tail + piece).split(b"\n"):
                        if line.startswith(b"data: {") and b'"usage"' in line:
                            with contextlib.suppress(msgspec.DecodeError):
                                event = _decode(line[6:])
                                if isinstance(event, dict) and isinstance(event.get("usage"), dict):
                                    usage = event["usage"]
                tail = piece.rsplit(b"\n", 1)[-1]
        except httpx.HTTPError as e:
            council = _report(t.model, member, model, "error", timer, usage, router, error=str(e) or type(e).__name__)
            await books.finish(t, 502, council, error="upstream_error")
            yield b"data: " + _encode(errors.envelope(f"the upstream stream broke: {e}", "server_error")) + b"\n\n"
            return
        await books.finish(t, 200, _report(t.model, member, model, "ok", timer, usage, router))
    except (asyncio.CancelledError, GeneratorExit):
        books.finish_later(t, 499, None, error="client_disconnected", calls=calls)
        raise
    finally:
        await resp.aclose()
