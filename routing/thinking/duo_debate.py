"""`duo-debate`: the lead proposes, a partner critiques, the lead refines.

When the critic fails, the proposal stands (and the note says so); when the refinement
fails, the proposal stands too. Only a failed proposal fails the whole.
"""

from __future__ import annotations

from routing.errors import MemberFailure
from routing.request import Message
from routing.thinking.base import Asker, Messages, Options, Thought

CRITIC = ("You are reviewing another assistant's answer to the conversation below. List its mistakes, gaps and "
          "risks concretely (what is wrong, where, and how to fix it). Do not rewrite the whole answer.")


def _conversation(messages: Messages) -> str:
    return "\n\n".join(f"{m.role}: {m.text}" for m in messages)


def critique_messages(messages: Messages, proposal: str) -> Messages:
    return [Message("system", CRITIC),
            Message("user", f"Conversation:\n{_conversation(messages)}\n\nAnswer to review:\n{proposal}")]


def refine_messages(messages: Messages, proposal: str, critique: str) -> Messages:
    return [*messages, Message("assistant", proposal),
            Message("user", "A reviewer found these problems in your answer:\n\n" + critique
                    + "\n\nAnswer again, completely, fixing every valid point. Give only the improved answer.")]


async def think(asker: Asker, messages: Messages, lead: str, partners: list[str], opts: Options) -> Thought:
    proposal = await asker.ask(lead, messages, "proposer")
    critic = next((p for p in partners if p != lead), None)
    if critic is None:
        return Thought(proposal, lead, "proposal", note="no critic configured; the proposal stands")
    asker.progress(f"duo-debate · {critic} critiques {lead}'s proposal")
    try:
        critique = await asker.ask(critic, critique_messages(messages, proposal), "critic")
    except MemberFailure as e:
        return Thought(proposal, lead, "proposal", note=f"critic {critic!r} failed ({e.reason}); the proposal stands")
    asker.progress(f"duo-debate · {lead} refines")
    try:
        refined = await asker.ask(lead, refine_messages(messages, proposal, critique), "refiner")
    except MemberFailure as e:
        return Thought(proposal, lead, "proposal", note=f"refinement failed ({e.reason}); the proposal stands")
    return Thought(refined, lead, "refined")
