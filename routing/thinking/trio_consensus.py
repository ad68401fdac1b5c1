"""`trio-consensus`: the lead and two partners answer in parallel; the council's weighted vote decides."""

from __future__ import annotations

from routing.thinking.base import Asker, Messages, Options, Thought, vote_of


async def think(asker: Asker, messages: Messages, lead: str, partners: list[str], opts: Options) -> Thought:
    members = [lead, *[p for p in partners if p != lead][:2]]
    return await vote_of(asker, messages, members, opts.weights, opts.similarity, "voter", "trio-consensus")
