"""What the engine reads off a request's messages (its prompt, its question), and the ids it gives."""

from __future__ import annotations

import os
import random
import re
import time

from routing.request import Message

_ids = random.Random()  # seeded from os.urandom once, and again in a forked child (as `random`'s own is)
os.register_at_fork(after_in_child=_ids.seed)


def new_id(prefix: str = "chatcmpl-", bits: int = 96) -> str:
    """An answer's id (a chat completion's, an Anthropic message's or tool use's): unique, not secret (nothing
    is looked up by it), so not worth a getrandom syscall per request (2.6 % of a pass-through's CPU,
    profiled). Ids that are looked up (stored responses) come from `secrets`."""
    return f"{prefix}{_ids.getrandbits(bits):0{bits // 4}x}"


def now() -> int:
    return int(time.time())


def prompt_text(messages: list[Message]) -> str:
    return "\n".join(m.text for m in messages)


def last_user_text(messages: list[Message]) -> str:
    """The text of the last user message: the question a vote's claims are read against."""
    return next((m.text for m in reversed(messages) if m.role == "user"), "")


_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
_AGENT_PROMPTS = re.compile(r"\A\s*(?:You are performing a CONTEXT CHECKPOINT COMPACTION"  # Codex's compaction
                            r"|Your task is to create a detailed summary of the conversation so far)")  # Claude Code's
"""Prompts an agent writes itself in a user message (asking for a summary of the session before it compacts it):
no person wrote them, so no risk words are read from them."""
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)


def human_text(m: Message) -> str:
    """What a person wrote in a user message: without the system reminders an agent adds to it (Claude Code's
    `<system-reminder>` blocks), without code fences, and nothing of an agent's own compaction prompt."""
    if m.role != "user" or _AGENT_PROMPTS.match(m.text):
        return ""
    return _FENCE.sub(" ", _REMINDER.sub(" ", m.text)).strip()


def last_human_text(messages: list[Message]) -> str:
    """The last thing a person wrote: where risk words are read (never tool output, code or reminders)."""
    return next((t for m in reversed(messages) if (t := human_text(m))), "")


def tool_turns(messages: list[Message]) -> list[list[tuple[str, str, str]]]:
    """The tool rounds since the person last wrote, oldest first: each round the (name, arguments, result) of
    the calls one assistant message made. Empty when the last message is the person's: a new ask."""
    rounds: list[list[tuple[str, str, str]]] = []
    results: dict[str, str] = {}
    for m in messages:
        if m.role == "user" and human_text(m):
            rounds, results = [], {}
        elif m.role == "assistant" and m.tool_calls:
            rounds.append([(c.id or "", c.name, c.arguments) for c in m.tool_calls])
        elif m.role == "tool" and m.tool_call_id:
            results[m.tool_call_id] = m.text
    return [[(name, args, results.get(cid, "")) for cid, name, args in r] for r in rounds]
