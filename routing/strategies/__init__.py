"""Strategies, registered by the `strategy` tag of a virtual model's config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routing.config import Config
from routing.models import THINKING
from routing.strategies.base import Backends, Call, Strategy
from routing.strategies.cascade import Cascade
from routing.strategies.council import Council
from routing.strategies.escalate import Escalate
from routing.strategies.single import Single
from routing.strategies.thinking import ThinkingStrategy

Factory = Callable[[str, Any, Backends, Config], Strategy]

STRATEGIES: dict[str, Factory] = {
    "single": Single.from_config,
    "council": Council.from_config,
    "escalate": Escalate.from_config,
    "cascade": Cascade.from_config,
    **{name: ThinkingStrategy.from_config for name in THINKING},
}

__all__ = ["STRATEGIES", "Call", "Council", "Escalate", "Single", "Strategy", "ThinkingStrategy"]
