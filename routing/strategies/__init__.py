"""Strategies, registered by the `strategy` tag of a virtual model's config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routing.strategies.base import Backends, Call, Strategy
from routing.strategies.council import Council
from routing.strategies.single import Single

Factory = Callable[[str, Any, Backends], Strategy]

STRATEGIES: dict[str, Factory] = {
    "single": Single.from_config,
    "council": Council.from_config,
}

__all__ = ["STRATEGIES", "Call", "Council", "Single", "Strategy"]
