"""How Shenron serves: the edge's settings (`[server]`, `[auth]`, `[tiers.NAME]`, `[store]`).

The engine never reads these; they live in the one `Config` beside the backends and virtual models
(routing/config.py), which parses and checks the whole file.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Section(msgspec.Struct, rename="kebab", forbid_unknown_fields=True, omit_defaults=True):
    """A table of the config file: kebab-case keys, and an unknown key is an error (a typo never
    silently changes anything)."""


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_mb: float = 32.0
    """Largest request body accepted; larger ones get a 413."""
    server: Literal["uvicorn"] = "uvicorn"
    """ASGI server that `shenron serve` runs: uvicorn (granian was dropped: 1.0-1.2x uvicorn's CPU, BENCHMARKS.md)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    models_refresh_s: float = 60.0
    """How often the served-model lists of backends are refreshed in the background."""
    access_log: str = "-"
    """JSON access log: `-` for stderr, `off`, or a file path."""
    health_interval_s: float = 2.0
    """How often every backend's health is probed (breakers, loaded models)."""
    warmup_interval_s: float = 240.0
    """How often `keep-alive = true` members are loaded again (Ollama unloads after 5 minutes)."""
    breaker_failures: int = 3
    """Consecutive failures (requests or probes) that open a backend's circuit breaker."""
    breaker_open_s: float = 10.0
    """How long an open breaker waits before a trial (half-open)."""
    max_header_kb: int = 64
    """Request line and headers larger than this get a 431 (uvicorn, the default server)."""
    read_timeout_s: float = 30.0
    """A client whose headers, or whose body, take longer than this to arrive is dropped with a 408."""
    max_connections: int = 2048
    """Client connections open at once; one more gets a 503 and is closed."""
    upstream_max_connections: int = 256
    """Default size of each backend's connection pool (`[backends.X] max-connections` overrides it)."""
    upstream_keepalive_s: float = 60.0
    """How long an idle upstream connection is kept for reuse (`[backends.X] keepalive-s` overrides it)."""
    upstream_transport: Literal["httpx", "shenron"] | None = None
    """What carries upstream requests under httpx's API: `shenron` (the default, routing/transport.py) or
    `httpx` (httpcore, the one respx intercepts; slower); see routing/upstream.py."""
    cors_origins: list[str] = []
    """Browser origins allowed to call the API (`["https://chat.example.com"]`, or `["*"]`); none by default."""
    responses_ttl_s: float | None = None
    """Deprecated: `[store] keep-responses-days` (this, in seconds, still wins where it is set)."""
    metrics_token: str | None = None
    """With auth on, a Bearer token that may read /metrics and /status besides admin keys."""
    fast_path: bool = True
    """Chat, Responses and Messages requests answered by a raw ASGI route in front of Litestar (the same
    functions, less machinery); false sends them through Litestar like every other path."""
    drain_s: float = 0.0
    """On SIGTERM: how long to keep serving, with /ready at 503, so a load balancer moves away first."""
    drain_timeout_s: float = 30.0
    """After draining: how long requests in flight (streams too) may take to finish before they are cut."""
    workers: int = 1
    """Server processes on this host (`serve --workers`); more than one needs `[store] redis-url`."""
    decision_log: str = "off"
    """Decision records, one JSON line per request (for `shenron replay`): `off`, `-` or a file path."""


class AuthConfig(Section):
    enabled: bool | None = None
    """Unset: off on a loopback bind; `serve` refuses a non-loopback bind without keys unless --insecure."""


class TierConfig(Section):
    models: list[str] = []
    """Virtual or backend model names this tier may use; "*" (or any glob) matches several; empty: none."""
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    cloud_budget_usd_per_month: float | None = None
    admin: bool = False
    """Keys of this tier may read /status and /metrics while auth is on."""
    shared_cache: bool = False
    """Keys of this tier share cached answers; otherwise each key sees only its own."""


ADMIN_TIER = "admin"
"""`shenron keys create --admin` uses this tier; unless the config defines it, it may read /status and
/metrics and use no model."""


class StoreConfig(Section):
    path: str | None = None
    """SQLite file for keys and the ledger; default $XDG_DATA_HOME/shenron/shenron.db; relative to the config."""
    database_url: str | None = None
    """postgresql://... : keys and ledger shared by every replica instead of SQLite."""
    redis_url: str | None = None
    """redis://... : rate limits, budgets and the response cache shared by every replica."""
    redis_prefix: str = "shenron:"
    fsync: bool = False
    """SQLite: fsync every commit (survives power loss); off still survives a killed process."""
    keep_responses: Literal["requested", "never"] = "requested"
    """Responses API answers and their conversations kept for `previous_response_id`: `requested` honours
    the request's `store` (true unless it says false, as OpenAI's API does); `never` keeps none, whatever
    the request says (its answer then says `"store": false`)."""
    keep_responses_days: float = 30.0
    """How long a kept response lives; expired ones are deleted when the next one is kept."""


def redacted(url: str) -> str:
    """A URL without the credentials it may carry (`user:pass@`, `?key=`), for pages, logs and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    where, q, query = rest.partition("?")
    authority, slash, path = where.partition("/")
    shown = f"{scheme}://{authority.rsplit('@', 1)[-1]}{slash}{path}"
    return shown + ("?***" if q and query else "")


class SandboxConfig(Section):
    uids: list[int] = msgspec.field(default_factory=lambda: [200_000, 265_535])
    """First and last uid (inclusive) the code checks run as when the proxy is root, one uid per check at a
    time, so process limits are per check. Pick a range no account on the host uses (no account is needed)."""

    def __post_init__(self) -> None:
        if len(self.uids) != 2 or not 1000 <= self.uids[0] <= self.uids[1] < 2**32 - 1:
            raise ValueError("expected [first, last] uids, 1000 <= first <= last (a range no account uses)")
