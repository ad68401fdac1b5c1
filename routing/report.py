"""What a report needs beside its structs (`routing.core`): a call's cost, a timer, a failure's line."""

from __future__ import annotations

import time

from routing.config import BackendConfig
from routing.core import MemberReport
from routing.errors import MemberFailure
from routing.tokens import Usage


def cost(usage: Usage | None, cfg: BackendConfig) -> float:
    """USD for one call at the backend's per-million prices; no usage, no known cost."""
    if usage is None or not (cfg.price_in or cfg.price_out or cfg.price_cached_in or cfg.price_cache_write):
        return 0.0  # a local model (every member of a council on its own GPUs): nothing to work out
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    fresh = max(0, usage.prompt_tokens - cached - written)
    cached_price = cfg.price_in if cfg.price_cached_in is None else cfg.price_cached_in
    write_price = cfg.price_in if cfg.price_cache_write is None else cfg.price_cache_write
    return (fresh * cfg.price_in + cached * cached_price + written * write_price
            + usage.completion_tokens * cfg.price_out) / 1_000_000


class Timer:
    """Milliseconds since construction, for latency_ms fields."""

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)


def failed(name: str, model: str, exc: MemberFailure, timer: Timer, role: str | None = None) -> MemberReport:
    return MemberReport(name=name, model=model, status=exc.kind, latency_ms=timer.ms(),  # type: ignore[arg-type]
                        error=exc.reason, role=role)
