"""The Litestar application: a few thin handlers over the engine's `Router`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Stream

from proxy import errors
from proxy.requests import parse_chat
from routing.config import Config
from routing.router import Router

RESOLVED_ENV = "SHENRON_RESOLVED_CONFIG"
"""The CLI resolves the config once (file or discovery) and hands it to server workers here, as JSON."""

log = logging.getLogger("shenron")
_encode = msgspec.json.Encoder().encode
JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _json(body: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(body), status_code=status, media_type=JSON)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any], state: State) -> Response[bytes] | Stream:
    call = parse_chat(await request.body())
    strategy = state.router.resolve(call.model)
    if not call.stream:
        return _json(await strategy.complete(call))
    chunks = strategy.stream(call)
    first = await anext(chunks)  # errors before the first chunk are still ordinary HTTP errors
    return Stream(_sse(first, chunks), media_type="text/event-stream", headers=SSE_HEADERS)


async def _sse(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        yield b"data: " + _encode(first) + b"\n\n"
        try:
            async for chunk in rest:
                yield b"data: " + _encode(chunk) + b"\n\n"
        except Exception as e:  # after the first byte an error can only be an event (ours, or a logged bug)
            _, body = errors.of(e)
            yield b"data: " + _encode(body) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


@get("/v1/models")
async def list_models(state: State) -> Response[bytes]:
    return _json({"object": "list", "data": state.router.models()})


@get("/v1/models/{model_id:path}")
async def get_model(model_id: FromPath[str], state: State) -> Response[bytes]:
    mid = model_id.lstrip("/")
    for m in state.router.models():
        if m["id"] == mid:
            return _json(m)
    return _json(errors.envelope(f"The model `{mid}` does not exist.", "invalid_request_error", "model",
                                 "model_not_found"), 404)


@get("/health")
async def health() -> Response[bytes]:
    return _json({"status": "ok"})


@get("/ready")
async def ready(state: State) -> Response[bytes]:
    router: Router = state.router
    up = sorted(n for n, ok in router.reachable.items() if ok)
    body = {"status": "ready" if up else "unavailable", "reachable": up,
            "unreachable": sorted(n for n, ok in router.reachable.items() if not ok)}
    return _json(body, 200 if up else 503)


def create_app(cfg: Config) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=60)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120, connect=5)) as client:
            router = Router(cfg, client)
            app.state.router = router
            await router.refresh()
            task = asyncio.create_task(router.refresh_forever(cfg.server.models_refresh_s))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return Litestar(
        route_handlers=[chat_completions, list_models, get_model, health, ready],
        lifespan=[lifespan],
        exception_handlers={Exception: errors.handler},
        request_max_body_size=int(cfg.server.max_body_mb * 1024 * 1024),
        openapi_config=None,
        logging_config=None,
    )


def app_from_env() -> Litestar:
    """Factory the ASGI server imports in each worker; the CLI put the resolved config in the environment."""
    raw = os.environ.get(RESOLVED_ENV)
    if not raw:
        raise SystemExit(f"{RESOLVED_ENV} is not set: start Shenron with `shenron serve`")
    return create_app(msgspec.json.decode(raw, type=Config))
