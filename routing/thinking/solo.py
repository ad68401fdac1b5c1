"""`solo`: one model thinks it through and answers."""

from __future__ import annotations

from routing.thinking.base import Asker, Messages, Options, Thought


async def think(asker: Asker, messages: Messages, lead: str, partners: list[str], opts: Options) -> Thought:
    text = await asker.ask(lead, messages, "solo")
    return Thought(text, lead, "solo")
