"""What the engine reads off a request's messages (its prompt, its question), and the ids it gives."""

from __future__ import annotations

import secrets
import time

from routing.request import Message


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def prompt_text(messages: list[Message]) -> str:
    return "\n".join(m.text for m in messages)


def last_user_text(messages: list[Message]) -> str:
    """The text of the last user message: the question a vote's claims are read against."""
    return next((m.text for m in reversed(messages) if m.role == "user"), "")
