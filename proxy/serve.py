"""One request in any dialect: who asks, what they may use, the answer (maybe cached), its accounting."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.types import Receive

from proxy import cache, errors
from proxy.accounting import Books, Ticket
from proxy.auth import Gate, allows
from proxy.dialects import Context, Dialect, Writer
from proxy.streaming import EventStream, Last, left_of, watched
from routing import session
from routing.core import CouncilReport, Event, Report, Result, replay_result
from routing.decide.spend import Spend
from routing.request import Json, betas_of
from routing.router import Router
from routing.strategies import Call

_encode = msgspec.json.Encoder().encode
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def credentials(headers: Mapping[str, str]) -> str | None:
    """The `Authorization` header, or Anthropic's `x-api-key` (as Claude Code and the SDK send it)."""
    auth = headers.get("authorization")
    if auth:
        return auth
    key = headers.get("x-api-key") or headers.get("api-key")
    return f"Bearer {key}" if key else None


def _ttl(router: Router, call: Call) -> float:
    vm = router.cfg.models.get(call.model)
    ttl = vm.cache_ttl_s if vm is not None else 0.0
    return ttl if ttl > 0 and cache.deterministic(call.request) else 0.0


def _from_cache(hit: Result) -> Result:
    """A kept answer as this request's: it cost nothing and asked nobody."""
    report = msgspec.structs.replace(hit.report, cached=True, members=[], cost_usd=0.0, usage=None, latency_ms=0)
    return Result(hit.reply, report)


@dataclass(slots=True)
class Out:
    """An answer as the edge sends it: a whole JSON body, or server-sent events."""

    body: bytes = b""
    events: AsyncIterator[bytes] | None = None


async def handle(request: Request[Any, Any, Any], state: State, dialect: Dialect) -> Response[bytes] | EventStream:
    """Litestar's way in; the fast route (proxy/fastpath.py) calls `respond` the same way."""
    out = await respond(state, request.headers, request.body, request.receive,
                        request.scope.setdefault("shenron", {}), dialect,  # type: ignore[typeddict-item]
                        left_of(request.scope))
    if out.events is not None:
        return EventStream(out.events, media_type="text/event-stream", headers=SSE_HEADERS)
    return Response(out.body, media_type="application/json")


async def respond(state: State, headers: Mapping[str, str], body: Callable[[], Awaitable[bytes]], receive: Receive,
                  log: Json, dialect: Dialect, left: asyncio.Future[None] | None = None) -> Out:
    """One request, whichever way it came in: `body` reads it (inside the ticket, so a body too large is
    accounted for), `receive` (or `left`, where the server gives it) says when the client leaves, `log`
    collects the access log's fields."""
    books: Books = state.books
    gate: Gate = state.gate
    router: Router = state.router
    async with books.ticket(log) as (t, calls):
        t.principal = await gate.principal(credentials(headers))
        ctx = Context(state, t.principal.key_id)
        call = ctx.call = await dialect.read(await body(), ctx)
        call.request.session = session.key_of(headers, ctx.body)
        call.request.betas = betas_of(headers.get("anthropic-beta"))
        t.session = session.shown(call.request.session)
        if headers.get("x-shenron-validate", "").lower() in ("1", "true", "yes"):
            call.extras["validate"] = True
        t.request_id, t.stream, t.model = call.id, call.stream, call.model
        call.may = functools.partial(allows, t.principal.tier)  # what the key may reach, wherever it travels
        strategy = router.resolve(call.model, call.may)
        t.strategy = strategy.label
        books.started(t)
        call.budget = await gate.admit(t.principal)
        ttl = _ttl(router, call)
        ckey = cache.key(call.model, call.request, cache.scope(t.principal)) if ttl else ""
        if ttl:
            hit = await state.cache.get(ckey)
            books.metrics.cache.labels(call.model, "hit" if hit else "miss").inc()
            if hit is not None:
                t.cached = True
                out = _from_cache(hit)
                out.report.session = t.session
                await books.finish(t, 200, out.report)
                if call.stream:
                    return Out(events=_replay(list(replay_result(out)), dialect.writer(ctx)))
                return await _whole(dialect, ctx, out)
        if not call.stream:
            out = await watched(strategy.complete(call), receive, left)
            out.report.session = t.session
            if ttl:
                await state.cache.put(ckey, out, ttl)
            await books.finish(t, 200, out.report)
            return await _whole(dialect, ctx, out)
        call.relay = dialect.name == "chat" and not ttl  # a chat client takes plain chunks as they came
        chunks = strategy.stream(call)
        first = await watched(anext(chunks), receive, left)  # errors before it are still HTTP errors
    filled = (state.cache, ckey, ttl) if ttl else None
    return Out(events=_sse(first, chunks, books, t, filled, calls, dialect, ctx))


async def _whole(dialect: Dialect, ctx: Context, out: Result) -> Out:
    ctx.final = dialect.answer(out, ctx)
    await dialect.finished(ctx)
    return Out(body=_encode(ctx.final))


async def _replay(events: list[Event], writer: Writer) -> AsyncIterator[bytes]:
    yield writer.start()
    for e in events:
        yield writer.event(e)
    yield Last(writer.end())


async def _sse(first: Event, rest: AsyncIterator[Event], books: Books, t: Ticket,
               filled: tuple[cache.Cache, str, float] | None, calls: list[Spend],
               dialect: Dialect, ctx: Context) -> AsyncIterator[bytes]:
    council: CouncilReport | None = None
    kept: list[Event] | None = [first] if filled else None
    status, error = 200, None
    left = False
    writer = dialect.writer(ctx)
    report = b""
    """The report's frame: every strategy's last event, so it leaves with the end in one send."""
    try:
        yield writer.start() + writer.event(first)
        try:
            async for ev in rest:
                if kept is not None:
                    kept.append(ev)
                if isinstance(ev, Report):
                    council = ev.report
                    council.session = t.session
                    report += writer.event(ev)
                    continue
                yield writer.event(ev)
        except Exception as e:  # after the first byte an error can only be an event (ours, or a logged bug)
            status, body = errors.of(e)
            error = body["error"].get("code") or body["error"]["type"]
            yield report + writer.failed(status, body)
            report = b""
        if filled is not None and kept is not None and error is None:
            answer = cache.kept(kept)
            if answer is not None:
                await filled[0].put(filled[1], answer, filled[2])
        await books.finish(t, status, council, error=error)  # committed before the client sees the end
        tail = Last(report + writer.end())
        if error is None:
            await dialect.finished(ctx)
        yield tail
    except (asyncio.CancelledError, GeneratorExit):
        left = True
        raise
    finally:
        try:
            await rest.aclose()  # type: ignore[attr-defined]
        finally:  # after the members' calls have ended: the row has what they spent
            if left:
                books.finish_later(t, 499, council, error="client_disconnected", calls=calls)
