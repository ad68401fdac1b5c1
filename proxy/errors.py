"""The one place where failures become OpenAI's error envelope."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from proxy.auth import Forbidden, RateLimited, Unauthorized
from proxy.streaming import ClientDisconnected
from routing.errors import (
    AllMembersFailed,
    InvalidRequest,
    MemberFailure,
    MemberTimeout,
    ModelNotFound,
    NoBackends,
    NotAllowed,
    ShenronError,
    UpstreamStatus,
)

log = logging.getLogger("shenron")
_encode = msgspec.json.Encoder().encode

_HTTP_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


STATUS: dict[type[ShenronError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotAllowed: 403,
    ModelNotFound: 404,
    RateLimited: 429,
    ClientDisconnected: 499,  # nginx's: the client left before the answer; nobody reads it
    MemberFailure: 502,
    AllMembersFailed: 502,
    NoBackends: 503,
    MemberTimeout: 504,
}
"""The HTTP status of each engine and edge error, by its class or the nearest class it derives from;
an upstream 4xx keeps its own status, and a council whose members all timed out is a 504."""


def status_of(exc: ShenronError) -> int:
    if isinstance(exc, UpstreamStatus) and exc.passes_on:
        return exc.upstream_status
    if isinstance(exc, UpstreamStatus) and exc.upstream_status in (402, 429):
        return 503  # the operator's quota: try later, and not the client's own limit
    if isinstance(exc, AllMembersFailed) and exc.failures and all(
            isinstance(f, UpstreamStatus) and f.upstream_status in (402, 429) for f in exc.failures):
        return 503
    if isinstance(exc, AllMembersFailed) and exc.timed_out:
        return 504
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def classify(exc: BaseException) -> tuple[int, str]:
    """Status and error code of a failure, for accounting; logs nothing."""
    if isinstance(exc, ShenronError):
        return status_of(exc), exc.code or exc.type
    if isinstance(exc, HTTPException):
        return exc.status_code, _HTTP_CODES.get(exc.status_code, ("", "http_error"))[1] or "http_error"
    return 500, "internal_error"


def of(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and envelope for any exception; unexpected ones are logged, never shown as a traceback."""
    if isinstance(exc, ShenronError):
        return status_of(exc), envelope(exc.message, exc.type, exc.param, exc.code)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        etype, code = _HTTP_CODES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        message = exc.detail
        if status == 413:
            message = "Request body too large: " + (exc.detail or "it exceeds the configured limit")
        return status, envelope(message or "HTTP error", etype, None, code)
    log.exception("internal error", exc_info=exc)
    return 500, envelope(f"Internal error in Shenron: {type(exc).__name__}. See the proxy's log.", "server_error",
                         None, "internal_error")


def served(request: Request[Any, Any, Any]) -> list[str]:
    """The routes this app answers, as `METHOD /path`, for a client that asked for another."""
    routes = []
    for route in request.app.routes:
        methods = sorted(m for m in getattr(route, "methods", ()) if m not in ("HEAD", "OPTIONS"))
        routes += [f"{m} {route.path}" for m in methods]
    return routes


def rendered(exc: BaseException, path: str, body: dict[str, Any] | None = None, status: int | None = None
             ) -> tuple[int, bytes, dict[str, str]]:
    """A failure as the client gets it, on either path to the handlers (Litestar's, or the fast route's):
    status, the envelope of the path's dialect, and headers."""
    if body is None or status is None:
        status, body = of(exc)
    if path.startswith("/v1/messages"):  # Anthropic's clients read Anthropic's envelope
        from proxy.dialects.messages import envelope as anthropic_envelope

        body = anthropic_envelope(status, body)
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None and isinstance(exc, AllMembersFailed):
        retry_after = min((f.retry_after for f in exc.failures if isinstance(f, UpstreamStatus) and f.retry_after),
                          key=int, default=None)
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return status, _encode(body), headers


def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    status, body = of(exc)
    if isinstance(exc, HTTPException) and status in (404, 405):
        what = "Unknown path" if status == 404 else "Method not allowed"
        routes = ", ".join(served(request))
        body["error"]["message"] = f"{what}: {request.method} {request.url.path}. Shenron serves: {routes}."
    status, content, headers = rendered(exc, request.url.path, body, status)
    return Response(content, status_code=status, media_type="application/json", headers=headers)
