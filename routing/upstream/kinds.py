"""The backend kinds, by the name `kind` takes in a config, and the one way a backend is built.

A new kind is a class registered here; nothing else in the engine names the kinds. A backend with
`urls` is a pool of backends of its kind (routing/upstream/pool.py).
"""

from __future__ import annotations

import httpx

from routing.config import BackendConfig
from routing.upstream.anthropic import AnthropicBackend
from routing.upstream.backends import Backend, OpenAIBackend
from routing.upstream.pool import PooledBackend

KINDS: dict[str, type[OpenAIBackend]] = {"openai": OpenAIBackend, "anthropic": AnthropicBackend}


def build(name: str, cfg: BackendConfig, client: httpx.AsyncClient) -> Backend:
    """The backend of `cfg.kind`; with `urls`, a pool of them."""
    if cfg.urls:
        return PooledBackend(name, cfg, client, lambda n, c, cl: KINDS[c.kind](n, c, cl))
    return KINDS[cfg.kind](name, cfg, client)
