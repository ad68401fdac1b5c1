"""The built-in default config: find local model servers on their usual ports at start."""

from __future__ import annotations

import asyncio

import httpx

from routing.backends import OpenAIBackend
from routing.config import BackendConfig, CascadeModel, Config, CouncilModel, SingleModel, VirtualModel
from routing.errors import MemberFailure
from routing.settings import ServerConfig

KNOWN_SERVERS: tuple[tuple[str, int], ...] = (
    ("ollama", 11434),
    ("lmstudio", 1234),
    ("llamacpp", 8080),
    ("vllm", 8000),
)


async def _probe(client: httpx.AsyncClient, kind: str, port: int, timeout_s: float) -> list[tuple[str, str, str]]:
    url = f"http://127.0.0.1:{port}/v1"
    server = OpenAIBackend(kind, BackendConfig(url=url, model="", timeout_s=timeout_s, connect_timeout_s=timeout_s),
                           client)
    try:
        ids = await server.list_models()
    except MemberFailure:
        return []
    return [(f"{kind}/{mid}", url, mid) for mid in ids]


def virtual_models(names: list[str]) -> dict[str, VirtualModel]:
    """ultra-instinct over the first model (the rest as fallbacks), councils over the first three and six."""
    if not names:
        return {}
    models: dict[str, VirtualModel] = {
        "ultra-instinct": SingleModel(members=names[:1], fallbacks=names[1:4]),
    }
    if len(names) >= 2:
        models["agent-lite"] = CouncilModel(members=names[:3], min_answers=min(2, len(names[:3])))
        models["full-council"] = CouncilModel(members=names[:6], min_answers=min(2, len(names[:6])))
        models["cascade"] = CascadeModel(first="ultra-instinct", escalate_to="full-council")
    return models


async def discover(server: ServerConfig, timeout_s: float = 1.0) -> Config:
    """Probe the usual local ports (all at once, skipping our own) and build a config over what answered."""
    async with httpx.AsyncClient() as client:
        found = await asyncio.gather(*(
            _probe(client, kind, port, timeout_s) for kind, port in KNOWN_SERVERS if port != server.port
        ))
    backends = {name: BackendConfig(url=url, model=model) for group in found for name, url, model in group}
    where = ", ".join(f"{k} :{p}" for k, p in KNOWN_SERVERS if p != server.port)
    return Config(server=server, backends=backends, models=virtual_models(list(backends)),
                  source=f"built-in default (discovered {len(backends)} model(s) on {where})")
