"""Which conversation a request belongs to: the key that keeps an agent's turns on one model server.

Clients say it in their own ways. Read in this order, the first that is there wins:
`x-shenron-session` (ours, for any client), Codex CLI's `session-id` header and `prompt_cache_key`,
Claude Code's `x-claude-code-session-id`, Anthropic's `metadata.user_id`, OpenAI's `user`. With none,
the request's stable prefix (its tools, its system prompt and its first user message) stands in: every
turn of one conversation, and every sample of one council, share it. A `previous_response_id` is not
used, since it changes every turn; the prefix of such a chain does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

HEADERS = ("x-shenron-session", "session-id", "x-claude-code-session-id")

_encode = msgspec.json.Encoder(order="deterministic").encode


def key_of(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The session key the client gave, or None."""
    for h in HEADERS:
        if value := headers.get(h):
            return f"{h}:{value[:200]}"
    if isinstance(pck := body.get("prompt_cache_key"), str) and pck:
        return f"prompt_cache_key:{pck[:200]}"
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(uid := metadata.get("user_id"), str) and uid:
        return f"user_id:{uid[:200]}"
    if isinstance(user := body.get("user"), str) and user:
        return f"user:{user[:200]}"
    return None


def shown(key: str | None) -> str | None:
    """A session key as the ledger and `council.session` keep it: a hash, so a key the client made from a user
    name or a file path is not written down."""
    if key is None:
        return None
    return "s_" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def prefix_of(tools: Any, messages: list[Any]) -> str:
    """A hash of what stays the same from one turn to the next: tools, system messages, the first user
    message. `messages` are chat messages (dicts or anything with `role` and `content`)."""
    head: list[Any] = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        head.append([role, content])
        if role == "user":
            break
    return hashlib.blake2b(_encode([tools, head]), digest_size=12).hexdigest()
