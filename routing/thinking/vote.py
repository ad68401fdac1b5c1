"""`vote`: every member answers independently; the majority wins, one member one vote."""

from __future__ import annotations

from routing.thinking.base import Asker, Messages, Options, Thought, vote_of


async def think(asker: Asker, messages: Messages, lead: str, partners: list[str], opts: Options) -> Thought:
    members = [lead, *[p for p in partners if p != lead]]
    return await vote_of(asker, messages, members, {}, opts.similarity, "voter", "vote")
