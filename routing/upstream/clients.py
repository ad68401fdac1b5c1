"""The connections to upstream servers: one small pool per backend, under httpx's API.

What sits under httpx was chosen by measurement (BENCHMARKS.md, "Field-ready transport"):
httpx's own transport scans its whole pool on every request (httpcore's
`_assign_requests_to_connections`) and cost 1.3 ms of CPU per request at 16 concurrent requests;
`httpx-aiohttp`'s 0.26-0.33 ms; Shenron's own (`routing.upstream.transport`: asyncio protocols and
httptools) less again. Shenron's own is the one transport; aiohttp's was dropped with its eight
packages, since it was never faster. httpx's stays selectable because it is the one respx
intercepts, for in-process tests. Both close a connection whose response was not read to the end
instead of returning it to the pool, which is what cancellation relies on.
"""

from __future__ import annotations

from typing import Literal

import httpx

from routing.config import BackendConfig
from routing.settings import ServerConfig

Transport = Literal["httpx", "shenron"]
DEFAULT: Transport = "shenron"
"""Used when `[server] upstream-transport` is unset. In-process tests switch it to `httpx`, the
transport respx intercepts; everything started as a process runs the default."""


def limits(backend: BackendConfig, server: ServerConfig) -> httpx.Limits:
    n = backend.max_connections or server.upstream_max_connections
    keep = backend.keepalive_s if backend.keepalive_s is not None else server.upstream_keepalive_s
    return httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=keep)


def client_for(backend: BackendConfig, server: ServerConfig) -> httpx.AsyncClient:
    """A client with a pool of its own, for one backend."""
    lim = limits(backend, server)
    kind = server.upstream_transport or DEFAULT
    transport: httpx.AsyncBaseTransport
    if kind == "shenron":
        from routing.upstream.transport import Transport as Own

        transport = Own(lim)
    else:
        transport = httpx.AsyncHTTPTransport(limits=lim, trust_env=False)
    return httpx.AsyncClient(transport=transport, trust_env=False,
                             timeout=httpx.Timeout(backend.timeout_s, connect=backend.connect_timeout_s))


async def send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """`client.send(request, stream=True)` without the client's redirect, auth, cookie and event-hook
    machinery, which a proxy never uses and which cost 0.33 ms of CPU a request (measured, see
    BENCHMARKS.md). Still httpx's Request, Response and transport contract, and still whatever
    transport (and mounts) the client was built with. Read the response or close it."""
    response = await client._transport_for_url(request.url).handle_async_request(request)
    response.request = request
    return response

