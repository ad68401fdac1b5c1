"""Who is asking, and may they: API keys, tiers and their limits."""

from __future__ import annotations

import hmac
import ipaddress
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase

from proxy.limits import Counters, Windows, decide
from proxy.metrics import Metrics
from proxy.store import Store, hash_key
from routing.config import Config
from routing.decide.budget import Budget
from routing.errors import ShenronError
from routing.settings import ADMIN_TIER, TierConfig

KEY_CACHE_S = 2.0
"""A key found in the store is trusted this long before it is looked up again (so a revoke takes effect
within this time); an unknown key is always looked up, so a key created while the proxy runs works at once."""
KEY_CACHE_MAX = 10_000
"""Keys kept at most: past it, those whose time is up are forgotten (and all of them, if none is)."""


class Unauthorized(ShenronError):
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(ShenronError):
    type = "permission_error"
    code = "model_not_allowed"


class RateLimited(ShenronError):
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int, code: str) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str | None
    name: str
    tier_name: str | None
    tier: TierConfig | None
    """None: auth is off and everything is allowed."""


ANONYMOUS = Principal(None, "anonymous", None, None)
BUILTIN_ADMIN = TierConfig(models=[], admin=True)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def enabled(cfg: Config) -> bool:
    return cfg.auth.enabled if cfg.auth.enabled is not None else not loopback(cfg.server.host)


def allows(tier: TierConfig | None, model: str) -> bool:
    return tier is None or any(fnmatchcase(model, pattern) for pattern in tier.models)


def shown(key: str) -> str:
    return key[:14] + "***" if len(key) > 20 else "***"


class Gate:
    def __init__(self, cfg: Config, store: Store, counters: Counters, metrics: Metrics) -> None:
        self.cfg = cfg
        self.enabled = enabled(cfg)
        self.store = store
        self.counters = counters
        self.metrics = metrics
        self._known: dict[str, tuple[Principal, float]] = {}
        """Keys found, by digest, each with the monotonic time until which it is trusted without a lookup (a dict
        and a time: cachetools' TTLCache took 90 Python opcodes a request to say the same)."""

    async def principal(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("You didn't provide an API key. Send it as `Authorization: Bearer KEY` "
                               "(create one with `shenron keys create`).")
        digest = hash_key(key)
        known = self._known.get(digest)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        rec = await self.store.find_key(digest)
        if rec is None or not hmac.compare_digest(rec.hash, digest):
            raise Unauthorized(f"Incorrect API key provided: {shown(key)}.")
        if rec.revoked is not None:
            raise Unauthorized(f"The API key {rec.prefix}*** ({rec.name}) has been revoked.", code="revoked_api_key")
        tier = self.cfg.tiers.get(rec.tier) or (BUILTIN_ADMIN if rec.tier == ADMIN_TIER else None)
        if tier is None:
            raise Forbidden(f"The key {rec.prefix}*** has tier {rec.tier!r}, which this proxy's config does not "
                            f"define (tiers: {', '.join(self.cfg.tiers) or 'none'}).", code="unknown_tier")
        p = Principal(rec.id, rec.name, rec.tier, tier)
        now = time.monotonic()
        if len(self._known) >= KEY_CACHE_MAX:
            self._known = {d: k for d, k in self._known.items() if k[1] > now}
            if len(self._known) >= KEY_CACHE_MAX:
                self._known.clear()
        self._known[digest] = (p, now + KEY_CACHE_S)
        return p

    async def operator(self, authorization: str | None) -> None:
        """/status and /metrics: open while auth is off; with it on, an admin tier's key or the metrics token."""
        if not self.enabled:
            return
        token = self.cfg.server.metrics_token
        scheme, _, given = (authorization or "").partition(" ")
        if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return
        p = await self.principal(authorization)
        if p.tier is None or not p.tier.admin:
            raise Forbidden(f"The key's tier {p.tier_name!r} may not read this page: it needs a tier with "
                            "`admin = true` (`shenron keys create --admin`) or `[server] metrics-token`.",
                            code="admin_required")

    def visible(self, p: Principal, ids: list[str]) -> set[str]:
        return {i for i in ids if allows(p.tier, i)}

    async def admit(self, p: Principal, now: float | None = None) -> Budget:
        """Count the request against the key's limits; the budget it may still spend on cloud members."""
        if p.key_id is None or p.tier is None:
            return Budget()
        w = Windows.at(now or time.time())
        requests, tokens, cloud = await self.counters.hit(p.key_id, w)
        denied = decide(p.tier_name or "", p.tier, w, requests, tokens, cloud)
        if denied is not None:
            self.metrics.limited.labels(p.tier_name or "", denied.limit).inc()
            raise RateLimited(f"{denied.message} Retry after {denied.retry_after}s.", denied.retry_after,
                              "budget_exceeded" if denied.limit.startswith("cloud") else "rate_limit_exceeded")
        budget = p.tier.cloud_budget_usd_per_month
        return Budget(None if budget is None else max(0.0, budget - cloud))

    async def spent(self, p: Principal, tokens: int, cloud_usd: float) -> None:
        if p.key_id is not None and p.tier is not None and (tokens or cloud_usd):
            await self.counters.add(p.key_id, Windows.at(time.time()), tokens, cloud_usd)
