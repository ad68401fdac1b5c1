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


def prompt_text(body: Json) -> str:
    parts: list[str] = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def last_user_text(body: Json) -> str:
    """The text of the last user message: the question a vote's claims are read against."""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""
