"""The built-in default config: find local model servers on their usual ports at start."""

from __future__ import annotations

import asyncio

import httpx

from routing.config import BackendConfig, Config
from routing.errors import MemberFailure
from routing.models import CascadeModel, CouncilModel, SingleModel, VirtualModel
from routing.settings import ServerConfig
from routing.upstream.backends import OpenAIBackend

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


SAMPLE_TEMPERATURE = 0.7
"""Temperature of each sample when a council asks one model several times (unless the client sets one)."""


def _fill(names: list[str], n: int) -> list[str]:
    """`n` members from the models found: each once while they last, then again in turn (a model named
    again is one more independent sample of it)."""
    return [names[i % len(names)] for i in range(n)]


def _council(names: list[str], n: int) -> tuple[CouncilModel, str]:
    members = names[:n] if len(names) >= n else _fill(names, n)
    repeated = len(set(members)) < len(members)
    vm = CouncilModel(members=members, min_answers=2, sample_temperature=SAMPLE_TEMPERATURE if repeated else None,
                      greedy_first=repeated)
    if not repeated:
        why = f"{n} different models vote"
    elif len(names) == 1:
        why = (f"{n} samples of {names[0]} vote (self-consistency: its greedy answer weighs 1.5, the others are "
               f"samples at temperature {SAMPLE_TEMPERATURE:g})")
    else:
        counts = {m: members.count(m) for m in dict.fromkeys(members)}
        why = (f"{n} votes from {len(names)} models: " + ", ".join(f"{m} x{c}" for m, c in counts.items())
               + f" (a repeated model's first answer is its greedy one, weighing 1.5; the rest are samples at "
               f"temperature {SAMPLE_TEMPERATURE:g})")
    return vm, why


def virtual_models(names: list[str]) -> tuple[dict[str, VirtualModel], dict[str, str]]:
    """The virtual models over the models found, and why each is what it is: ultra-instinct over the first
    (the rest as fallbacks); agent-lite and full-council with 3 and 6 votes, from as many different models
    as were found and samples of them for the rest (self-consistency: one model sampled several times
    and voting gains accuracy); cascade from ultra-instinct to full-council."""
    if not names:
        return {}, {}
    models: dict[str, VirtualModel] = {"ultra-instinct": SingleModel(members=names[:1], fallbacks=names[1:4])}
    why = {"ultra-instinct": f"{names[0]}" + (f", falling back to {', '.join(names[1:4])}" if names[1:4] else "")}
    models["agent-lite"], why["agent-lite"] = _council(names, 3)
    models["full-council"], why["full-council"] = _council(names, 6)
    models["cascade"] = CascadeModel(first="ultra-instinct", escalate_to="full-council")
    why["cascade"] = "ultra-instinct answers; full-council takes over on low confidence, a risky request, or asked"
    return models, why


async def discover(server: ServerConfig, timeout_s: float = 1.0) -> Config:
    """Probe the usual local ports (all at once, skipping our own) and build a config over what answered."""
    async with httpx.AsyncClient() as client:
        found = await asyncio.gather(*(
            _probe(client, kind, port, timeout_s) for kind, port in KNOWN_SERVERS if port != server.port
        ))
    backends = {name: BackendConfig(url=url, model=model) for group in found for name, url, model in group}
    where = ", ".join(f"{k} :{p}" for k, p in KNOWN_SERVERS if p != server.port)
    models, why = virtual_models(list(backends))
    return Config(server=server, backends=backends, models=models, defined=why,
                  source=f"built-in default (discovered {len(backends)} model(s) on {where})")
