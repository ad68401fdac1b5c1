"""Token counts: what a call used, summed over calls, or estimated where a server reports none."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec


class Usage(msgspec.Struct, omit_defaults=True):
    """Token counts of one call (or of several, summed)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0
    """Of the prompt, read from the server's prompt cache (OpenAI's `cached_tokens`, Anthropic's
    `cache_read_input_tokens`, vLLM's and llama.cpp's where they say)."""
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    """Of the prompt, written to the server's prompt cache (Anthropic's `cache_creation_input_tokens`)."""

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> Usage | None:
        """From an OpenAI `usage` object already checked at the wire (`routing.upstream.answers.usage`)."""
        if not raw:
            return None
        p, c = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
        details = raw.get("prompt_tokens_details") or {}
        cached, written = details.get("cached_tokens"), details.get("cache_write_tokens")
        thought = (raw.get("completion_tokens_details") or {}).get("reasoning_tokens")
        return cls(p, c, int(raw.get("total_tokens") or p + c), _n(cached), _n(thought), _n(written))

    def openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                               "total_tokens": self.total_tokens}
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


ZERO = Usage(0, 0, 0)


def total(usages: Iterable[Usage | None]) -> Usage | None:
    """Calls' usage summed (None when none reported any)."""
    out: Usage | None = None
    for u in usages:
        if u is not None:
            out = u if out is None else Usage(
                out.prompt_tokens + u.prompt_tokens, out.completion_tokens + u.completion_tokens,
                out.total_tokens + u.total_tokens, out.cached_tokens + u.cached_tokens,
                out.reasoning_tokens + u.reasoning_tokens, out.cache_write_tokens + u.cache_write_tokens)
    return out


def usd(amount: float) -> float:
    """Dollars as reports and the ledger keep them: to eight places. A local model's 0 as it is: `round` to
    places goes through a decimal string (0.14 us, three times a request)."""
    return round(amount, 8) if amount else 0.0


def _n(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for servers that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0
