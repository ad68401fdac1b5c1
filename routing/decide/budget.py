"""How much cloud money one request may still spend."""

from __future__ import annotations

from routing.config import BackendConfig
from routing.errors import MemberFailure
from routing.report import cost
from routing.tokens import Usage

EXHAUSTED = "skipped: the cloud budget is spent"


class Skipped(MemberFailure):
    """A member not asked: the request's cloud budget was spent, or its health says it cannot answer now."""

    kind = "skipped"

    def __init__(self, member: str, reason: str = EXHAUSTED) -> None:
        super().__init__(member, reason)


class Budget:
    """Cloud USD left for a request: the key's monthly budget minus what it spent, charged as members answer.

    Every member that spends is charged, fallbacks and later rungs included, and a cloud
    member is only asked while something is left. Local members (no price, or not cloud) always run.
    """

    __slots__ = ("limit_usd", "spent_usd")

    def __init__(self, limit_usd: float | None = None) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = 0.0

    @staticmethod
    def _spends(cfg: BackendConfig) -> bool:
        return cfg.is_cloud and (cfg.price_in > 0 or cfg.price_out > 0)

    def allows(self, cfg: BackendConfig) -> bool:
        return self.limit_usd is None or not self._spends(cfg) or self.spent_usd < self.limit_usd

    def cap(self, usd: float) -> None:
        """Spend at most `usd` more (a virtual model's per-request cap on top of the key's budget)."""
        ceiling = self.spent_usd + usd
        self.limit_usd = ceiling if self.limit_usd is None else min(self.limit_usd, ceiling)

    def left(self) -> float:
        return float("inf") if self.limit_usd is None else max(0.0, self.limit_usd - self.spent_usd)

    def affords(self, usd: float) -> bool:
        """Whether spending about `usd` more stays inside the limit."""
        return self.limit_usd is None or self.spent_usd + usd <= self.limit_usd + 1e-12

    def charge(self, cfg: BackendConfig, usage: Usage | None) -> None:
        """Charge one answer at its backend's prices (the same `cost` the metadata reports)."""
        if cfg.is_cloud:
            self.spent_usd += cost(usage, cfg)
