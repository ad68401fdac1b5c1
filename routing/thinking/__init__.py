"""Thinking strategies: small modules with one contract (`base.Think`), used by the code ladder
and, on their own, as virtual models (`strategy = "duo-debate"`...)."""

from __future__ import annotations

from routing.thinking import debate, duo_debate, solo, trio_consensus, vote
from routing.thinking.base import Asker, Options, Think, Thought

THINKERS: dict[str, Think] = {
    "solo": solo.think,
    "duo-debate": duo_debate.think,
    "trio-consensus": trio_consensus.think,
    "debate": debate.think,
    "vote": vote.think,
}



def calls(thinking: str, rounds: int) -> tuple[int, int]:
    """At most how many calls one thought makes of its lead, and of each partner (for cost estimates)."""
    if thinking == "debate":
        return rounds, rounds
    return {"solo": (1, 0), "duo-debate": (2, 1)}.get(thinking, (1, 1))


PARTNERS = {"solo": 0, "duo-debate": 1, "trio-consensus": 2, "debate": 2, "vote": 2}
"""How many partners the ladder gives each strategy by default (from the rung's validators)."""

__all__ = ["PARTNERS", "THINKERS", "Asker", "Options", "Think", "Thought", "calls"]
