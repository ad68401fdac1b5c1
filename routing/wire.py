"""What the engine reads off a chat request's body (its prompt, its question), and the ids it gives."""

from __future__ import annotations

import secrets
import time
from typing import Any

Json = dict[str, Any]


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def text_of(content: Any) -> str:
    """A message's text: its content string, or its text parts joined (images and the like carry none)."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def prompt_text(body: Json) -> str:
    return "\n".join(text_of(m.get("content")) for m in body.get("messages") or () if isinstance(m, dict))


def last_user_text(body: Json) -> str:
    """The text of the last user message: the question a vote's claims are read against."""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return text_of(m.get("content"))
    return ""
