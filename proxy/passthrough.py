"""Requests sent as they are to the backend serving the model.

`POST /v1/embeddings` and `POST /v1/completions` always (no council answers these: there is no
vote over vectors or a fill-in-the-middle), and `POST /v1/messages` when the model is served by
an Anthropic backend, so nothing of Anthropic's own (thinking signatures, cache control, server
tools) is lost on a round trip through OpenAI's shape. The model is a backend's name, its model,
or an id it reported, as for any pass-through model. The request is authorized, limited and
accounted like a chat request, and a whole answer's `council` says who answered.
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
from proxy.streaming import EventStream, left_of, watched
from routing import wire
from routing.core import CouncilReport, MemberReport
from routing.decide import spend
from routing.errors import InvalidRequest, MemberFailure
from routing.report import Timer, cost
from routing.request import Json, betas_of
from routing.router import Router
from routing.tokens import Usage, usd
from routing.upstream.answers import usage as checked_usage

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def usage_of(event: Any) -> Usage | None:
    """OpenAI usage from an answer or stream event of either API (Anthropic's counts are renamed)."""
    if not isinstance(event, dict):
        return None
    usage = event.get("usage")
    if not isinstance(usage, dict) and isinstance(event.get("message"), dict):
        usage = event["message"].get("usage")  # Anthropic's message_start
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        p, c = usage.get("input_tokens"), usage.get("output_tokens")
        usage = {"prompt_tokens": p if isinstance(p, int) else 0, "completion_tokens": c if isinstance(c, int) else 0}
    return Usage.of(checked_usage(usage))


def _merge(a: Usage | None, b: Usage | None) -> Usage | None:
    """Anthropic streams input tokens at the start and output tokens at the end: keep the larger of each."""
    if a is None or b is None:
        return b or a
    p, c = max(a.prompt_tokens, b.prompt_tokens), max(a.completion_tokens, b.completion_tokens)
    return Usage(p, c, p + c)


def _check(path: str, body: Json) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if path == "/messages":
        from proxy.dialects.messages_request import to_chat

        to_chat(body)  # the same checks, and the same 400s, as for a translated request
        return model
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


def _report(model: str, member: str, backend_model: str, status: Any, t: Timer, usage: Usage | None,
            router: Router, error: str | None = None) -> CouncilReport:
    cfg = router.backends[member].cfg
    m = MemberReport(name=member, model=backend_model, status=status, latency_ms=t.ms(), usage=usage, error=error,
                     cost_usd=usd(cost(usage, cfg)) if usage else None, cloud=cfg.is_cloud)
    return CouncilReport(virtual_model=model, strategy="passthrough", winner=member if status == "ok" else None,
                         members=[m], latency_ms=t.ms()).totalled()


async def handle(request: Request[Any, Any, Any], state: State, path: str) -> Response[bytes] | EventStream:
    books: Books = state.books
    gate: Gate = state.gate
    router: Router = state.router
    async with books.ticket(request.scope.setdefault("shenron", {})) as (t, calls):  # type: ignore[typeddict-item]
        t.principal = await gate.principal(credentials(request.headers))
        body = decode(await request.body())
        model = _check(path, body)
        t.request_id, t.model, t.stream = wire.new_id(), model, bool(body.get("stream"))
        member, upstream_model = router.backend_for(model, functools.partial(allows, t.principal.tier))
        t.strategy = "passthrough"
        books.started(t)
        await gate.admit(t.principal)
        backend = router.backends[member]
        timer = Timer()
        asked_model = upstream_model or backend.model
        betas = betas_of(request.headers.get("anthropic-beta"))
        if t.stream:
            with spend.tracked(member, asked_model, backend.cfg):
                resp = await watched(backend.forward(path, body, upstream_model, betas), request.receive,
                                     left_of(request.scope))
            return EventStream(_relay(resp, books, t, member, asked_model, timer, router, calls),
                               media_type="text/event-stream", headers=SSE_HEADERS)
        with spend.tracked(member, asked_model, backend.cfg) as spent:
            resp = await watched(backend.forward(path, body, upstream_model, betas), request.receive,
                                     left_of(request.scope))
            try:
                raw = await resp.aread()
            finally:
                await resp.aclose()
            try:
                out = _decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):
                out = None
            if not isinstance(out, dict):  # the backend's failure, as a malformed chat answer is
                why = f"malformed response: its {path} answer is not a JSON object"
                backend.guard.record(False, why)
                raise MemberFailure(member, why)
            spent.usage = usage_of(out)
        report = _report(model, member, asked_model, "ok", timer, spent.usage, router)
        await books.finish(t, 200, report)
        out["council"] = report.as_json()
        return Response(_encode(out), media_type="application/json")


async def _relay(resp: httpx.Response, books: Books, t: Ticket, member: str, model: str, timer: Timer,
                 router: Router, calls: list[spend.Spend]) -> AsyncIterator[bytes]:
    """The upstream's stream as it comes; the last `usage` seen in it is what the ledger counts."""
    usage: Usage | None = None
    tail = b""
    left = False
    try:
        try:
            async for piece in resp.aiter_raw():
                yield piece
                if (tail + piece).find(b'"usage"') >= 0:  # not `in`: see routing/upstream/sse.py
                    for line in (tail + piece).split(b"\n"):
                        if line.startswith(b"data: {") and line.find(b'"usage"') >= 0:
                            with contextlib.suppress(msgspec.DecodeError):
                                usage = _merge(usage, usage_of(_decode(line[6:])))
                tail = piece.rsplit(b"\n", 1)[-1]
        except httpx.HTTPError as e:
            council = _report(t.model, member, model, "error", timer, usage, router, error=str(e) or type(e).__name__)
            await books.finish(t, 502, council, error="upstream_error")
            yield b"data: " + _encode(errors.envelope(f"the upstream stream broke: {e}", "server_error")) + b"\n\n"
            return
        await books.finish(t, 200, _report(t.model, member, model, "ok", timer, usage, router))
    except (asyncio.CancelledError, GeneratorExit):
        left = True
        raise
    finally:
        try:
            await resp.aclose()
        finally:
            if left:
                books.finish_later(t, 499, None, error="client_disconnected", calls=calls)


async def count_tokens(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """`POST /v1/messages/count_tokens`: Anthropic's own count for a model an Anthropic backend serves,
    else an estimate (about four characters a token: there is no tokenizer of every backend here)."""
    from proxy.dialects.messages import count_tokens as estimate

    gate: Gate = state.gate
    router: Router = state.router
    principal = await gate.principal(credentials(request.headers))
    body = decode(await request.body())
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    visible = functools.partial(allows, principal.tier)
    router.resolve(model, visible)  # a model the key may not use is the same 404 as one that is not there
    if not router.native(model, "anthropic"):
        return Response(_encode({"input_tokens": estimate(body)}), media_type="application/json")
    member, upstream_model = router.backend_for(model, visible)
    resp = await router.backends[member].forward("/messages/count_tokens", body, upstream_model,
                                                 betas_of(request.headers.get("anthropic-beta")))
    try:
        raw = await resp.aread()
    finally:
        await resp.aclose()
    try:
        counted = _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        counted = None
    if not isinstance(counted, dict) or not isinstance(counted.get("input_tokens"), int):
        raise MemberFailure(member, "malformed response: its count_tokens answer has no input_tokens")
    return Response(raw, media_type="application/json")
