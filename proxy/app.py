"""The Litestar application: a few thin handlers over the engine's `Router`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, delete, get, head, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.types import ASGIApp

from proxy import accesslog, errors, fastpath, passthrough, requests, serve
from proxy import status as status_page
from proxy.accounting import Books
from proxy.auth import Forbidden, Gate, Unauthorized, allows
from proxy.cache import Cache, MemoryCache, RedisCache
from proxy.dialects.chat import CHAT
from proxy.dialects.messages import MESSAGES
from proxy.dialects.responses import RESPONSES
from proxy.drain import Drain
from proxy.limits import Counters, MemoryCounters, RedisCounters, Windows
from proxy.metrics import CONTENT_TYPE as METRICS_TYPE
from proxy.metrics import Metrics
from proxy.store import Store, open_store
from proxy.streaming import EventStream
from routing.config import Config
from routing.errors import ModelNotFound
from routing.router import Router
from routing.upstream import clients

RESOLVED_ENV = "SHENRON_RESOLVED_CONFIG"
"""The CLI resolves the config once (file or discovery) and hands it to server workers here, as JSON."""

log = logging.getLogger("shenron")
_encode = msgspec.json.Encoder().encode
JSON = "application/json"


def _json(body: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(body), status_code=status, media_type=JSON)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any], state: State) -> Response[bytes] | EventStream:
    return await serve.handle(request, state, CHAT)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request[Any, Any, Any], state: State) -> Response[bytes] | EventStream:
    return await passthrough.handle(request, state, "/embeddings")


@post("/v1/completions", status_code=200)
async def completions(request: Request[Any, Any, Any], state: State) -> Response[bytes] | EventStream:
    """Legacy completions (and fill-in-the-middle with `suffix`), as the backend serves them."""
    return await passthrough.handle(request, state, "/completions")


class _Model(msgspec.Struct):
    model: Any = None


_model_of = msgspec.json.Decoder(_Model).decode


@post("/v1/messages", status_code=200)
async def messages(request: Request[Any, Any, Any], state: State) -> Response[bytes] | EventStream:
    """Anthropic's Messages API (Claude Code, the `anthropic` SDKs); `?beta=true` is accepted and ignored.
    A model an Anthropic backend serves gets the request as it is; any other is translated."""
    if "anthropic" in state.router.kinds:  # only then is the body looked at twice, and only for its model
        try:
            model = _model_of(await request.body()).model
        except msgspec.DecodeError:
            model = None
        if isinstance(model, str) and state.router.native(model, "anthropic"):
            return await passthrough.handle(request, state, "/messages")
    return await serve.handle(request, state, MESSAGES)


@post("/v1/responses", status_code=200)
async def responses(request: Request[Any, Any, Any], state: State) -> Response[bytes] | EventStream:
    """OpenAI's Responses API (Codex CLI, `client.responses.create`, the Vercel AI SDK's default provider)."""
    return await serve.handle(request, state, RESPONSES)


async def _stored(response_id: str, request: Request[Any, Any, Any], state: State) -> Any:
    principal = await state.gate.principal(serve.credentials(request.headers))
    raw = await state.store.get_response(response_id, principal.key_id, time.time())
    if raw is None:
        raise ModelNotFound(f"No response with id '{response_id}' is stored for this key (it may never have been "
                            "stored, or it expired).", param="response_id", code="response_not_found")
    return principal, msgspec.json.decode(raw)["response"]


@get("/v1/responses/{response_id:str}")
async def get_response(response_id: FromPath[str], request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    _, stored = await _stored(response_id, request, state)
    return _json(stored)


@delete("/v1/responses/{response_id:str}", status_code=200)
async def delete_response(response_id: FromPath[str], request: Request[Any, Any, Any],
                          state: State) -> Response[bytes]:
    principal, _ = await _stored(response_id, request, state)
    await state.store.delete_response(response_id, principal.key_id)
    return _json({"id": response_id, "object": "response.deleted", "deleted": True})


@post("/v1/messages/count_tokens", status_code=200)
async def count_tokens(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await passthrough.count_tokens(request, state)


async def _visible(request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
    """The models the caller's key may use (every model when auth is off)."""
    gate: Gate = state.gate
    principal = await gate.principal(serve.credentials(request.headers))
    return [m for m in state.router.models() if allows(principal.tier, m["id"])]


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return _json({"object": "list", "data": await _visible(request, state)})


@get("/v1/models/{model_id:path}")
async def get_model(model_id: FromPath[str], request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    mid = model_id.lstrip("/")
    for m in await _visible(request, state):
        if m["id"] == mid:
            return _json(m)
    return _json(errors.envelope(f"The model `{mid}` does not exist.", "invalid_request_error", "model",
                                 "model_not_found"), 404)


@get("/", include_in_schema=False)
async def root(request: Request[Any, Any, Any]) -> Response[bytes]:
    """What a client probing the base URL sees (Claude Code sends `HEAD /` first): 200 and the routes."""
    return _json({"name": "shenron", "object": "server", "endpoints": errors.served(request)})


@head("/", include_in_schema=False)
async def root_head() -> None:
    return None


@get("/health")
async def health() -> Response[bytes]:
    return _json({"status": "ok"})


@get("/ready")
async def ready(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """Whether to send traffic here. With auth on, only an operator (an admin key, the metrics token) is told
    which backends answer: to anyone else the names would map the deployment."""
    router: Router = state.router
    if state.drain.draining:
        return _json({"status": "draining"}, 503)
    up = sorted(n for n, ok in router.reachable.items() if ok)
    body: dict[str, Any] = {"status": "ready" if up else "unavailable"}
    try:
        await state.gate.operator(request.headers.get("authorization"))
    except (Unauthorized, Forbidden):
        return _json(body, 200 if up else 503)
    body.update(reachable=up, unreachable=sorted(n for n, ok in router.reachable.items() if not ok))
    return _json(body, 200 if up else 503)


@get("/metrics")
async def metrics(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    await state.gate.operator(request.headers.get("authorization"))
    return Response(state.metrics.render(state.router.reachable, state.router.health), media_type=METRICS_TYPE)


@get("/status")
async def status(request: Request[Any, Any, Any], state: State) -> Response[str]:
    await state.gate.operator(request.headers.get("authorization"))
    spend = await state.store.totals(None, Windows.at(time.time()).day_start)
    page = status_page.render(state.router, state.books, spend, state.store.where)
    return Response(page, media_type="text/html; charset=utf-8", headers={"cache-control": "no-store"})


def _counters(cfg: Config, store: Store) -> Counters:
    if cfg.store.redis_url:
        return RedisCounters(cfg.store.redis_url, cfg.store.redis_prefix, store.totals)
    return MemoryCounters(store.totals)


def _cache(cfg: Config) -> Cache:
    return RedisCache(cfg.store.redis_url, cfg.store.redis_prefix) if cfg.store.redis_url else MemoryCache()


def create_app(cfg: Config, drain: Drain | None = None) -> Litestar:
    drain = drain or Drain(cfg.server.drain_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(  # health probes and warm-up
                httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120, connect=5)))
            own = {n: await stack.enter_async_context(clients.client_for(b, cfg.server))
                       for n, b in cfg.backends.items()}
            store = await open_store(cfg)
            stack.push_async_callback(store.close)
            counters = _counters(cfg, store)
            stack.push_async_callback(counters.close)
            response_cache = _cache(cfg)
            stack.push_async_callback(response_cache.close)
            m = Metrics()
            gate = Gate(cfg, store, counters, m)
            books = Books(store, gate, m)
            stack.push_async_callback(books.drain)
            router = Router(cfg, client, own)
            app.state.update(router=router, store=store, gate=gate, books=books, metrics=m, cache=response_cache,
                             drain=drain)
            await router.refresh()
            stack.callback(router.decisions.close)
            if router.fleet:
                await router.fleet.heartbeat(int(router.fleet.interval_s() * 3000))  # seen by the others at once
                stack.push_async_callback(router.fleet.close)
            tasks = [asyncio.create_task(router.refresh_forever(cfg.server.models_refresh_s)),
                     asyncio.create_task(router.watch_forever())]
            drain.install()
            requests.warm()  # the body decoders' types, built before the first request rather than in it
            gc.collect()
            gc.freeze()  # what start-up made lives as long as the process: the collector need not walk it again
            try:
                yield
            finally:
                drain.uninstall()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    return Litestar(
        route_handlers=[root, root_head, chat_completions, responses, get_response, delete_response, messages,
                        count_tokens, embeddings, completions, list_models, get_model, health, ready, metrics,
                        status],
        lifespan=[lifespan],
        exception_handlers={Exception: errors.handler},
        request_max_body_size=int(cfg.server.max_body_mb * 1024 * 1024),
        cors_config=CORSConfig(allow_origins=cfg.server.cors_origins, allow_methods=["GET", "POST", "OPTIONS"],
                               allow_headers=["*"], max_age=600) if cfg.server.cors_origins else None,
        openapi_config=None,
        logging_config=None,
    )


def app_from_env() -> ASGIApp:
    """Factory the ASGI server imports in each worker; the CLI put the resolved config in the environment."""
    raw = os.environ.get(RESOLVED_ENV)
    if not raw:
        raise SystemExit(f"{RESOLVED_ENV} is not set: start Shenron with `shenron serve`")
    cfg = msgspec.json.decode(raw, type=Config)
    accesslog.setup(cfg.server.access_log, debug=cfg.server.log_level == "debug")  # in each worker process
    drain = Drain(cfg.server.drain_s)
    app = fastpath.wrap(create_app(cfg, drain), int(cfg.server.max_body_mb * 1024 * 1024),
                        cfg.server.fast_path and not cfg.server.cors_origins)
    return accesslog.middleware(drain.middleware(app))  # outside Litestar: every path logged
