"""Which strategy answers a model name, and what /v1/models lists."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from routing.config import Config
from routing.decide.governor import DecisionLog, Governed, mem_available_pct
from routing.errors import MemberFailure, ModelNotFound, NoBackends
from routing.models import CascadeModel
from routing.request import Json
from routing.strategies import STRATEGIES, Single, Strategy
from routing.upstream.fleet import Fleet
from routing.upstream.health import Health
from routing.upstream.kinds import build
from routing.upstream.pool import PooledBackend

log = logging.getLogger("shenron")


class Router:
    """Holds the backends and strategies built from one config and the shared client."""

    def __init__(self, cfg: Config, client: httpx.AsyncClient,
                 clients: Mapping[str, httpx.AsyncClient] | None = None) -> None:
        """`client` carries health probes (and every backend's requests unless `clients` has its own)."""
        self.cfg = cfg
        self.created = int(time.time())
        own = clients or {}
        self.backends = {n: build(n, b, own.get(n, client)) for n, b in cfg.backends.items()}
        self.kinds = frozenset(b.kind for b in cfg.backends.values())
        """The backend kinds configured (a dialect goes natively only where its kind is among them)."""
        self.fleet = Fleet(cfg.store.redis_url, cfg.store.redis_prefix) if cfg.store.redis_url else None
        """What the replicas agree on through Redis (GPU slots); None: this process is on its own."""
        self.health = Health(cfg, self.backends, client, self.fleet)
        self.decisions = DecisionLog(cfg.server.decision_log)
        self.mem_available_pct: float | None = mem_available_pct()
        """Read by the health loop, not per request."""
        raw: dict[str, Strategy] = {
            name: STRATEGIES[str(type(vm).__struct_config__.tag)](name, vm, self.backends, cfg)
            for name, vm in cfg.models.items()
        }
        self.virtual: dict[str, Strategy] = {}
        for name, vm in cfg.models.items():
            healthy = functools.partial(self.health.healthy, self._members(name))
            self.virtual[name] = Governed(name, vm, raw[name], self.virtual, healthy,
                                          lambda: self.mem_available_pct, self.decisions,
                                          self.fleet.elsewhere if self.fleet else None)
        if self.fleet:
            self.fleet.report = self._load_report
        for strategy in raw.values():
            bind = getattr(strategy, "bind", None)
            if bind is not None:
                bind(self.virtual)
        self._direct: dict[str, Strategy] = {}
        self.served: dict[str, list[str]] = {}
        """Model ids each backend reported serving, refreshed in the background."""
        self.reachable: dict[str, bool] = {}

    def _load_report(self) -> dict[str, Any]:
        """What this replica tells the others of each virtual model's load, for their degradation rules."""
        out: dict[str, Any] = {}
        for name, s in self.virtual.items():
            if isinstance(s, Governed) and (s.inflight or s.latencies):
                out[name] = {"inflight": s.inflight, "ms": [round(x) for x in s.latencies]}
        return out

    def _members(self, name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """The backends a virtual model asks (a cascade: those of its first model)."""
        vm = self.cfg.models[name]
        if isinstance(vm, CascadeModel):
            return [] if vm.first in seen else self._members(vm.first, seen | {name})
        return list(vm.members)

    async def watch_forever(self) -> None:
        """Health probes, warm-up, and the host's available memory, on the health timer."""
        self.mem_available_pct = mem_available_pct()
        task = asyncio.create_task(self.health.run_forever())
        fleet = asyncio.create_task(self.fleet.run_forever()) if self.fleet else None
        try:
            while True:
                await asyncio.sleep(self.cfg.server.health_interval_s)
                self.mem_available_pct = mem_available_pct()
        finally:
            task.cancel()
            if fleet:
                fleet.cancel()
            await asyncio.gather(task, *([fleet] if fleet else []), return_exceptions=True)
            await self.health.close()

    def resolve(self, model: str, visible: Callable[[str], bool] = lambda _: True) -> Strategy:
        """The strategy for `model`; the 404 for an unknown one lists only the models `visible` admits
        (those the caller's key may use). A model the key may not use gets the very same 404: whether a
        name exists is not told to a key that cannot use it."""
        if not visible(model):
            raise self._unknown(model, visible)
        strategy = self.virtual.get(model) or self._direct.get(model)
        if strategy is not None:
            return strategy
        if not self.backends:
            raise NoBackends(
                "no backends are configured or were found at start; "
                "write a shenron.toml or start Ollama, LM Studio, llama.cpp or vLLM and restart",
            )
        strategy = self._passthrough(model)
        if strategy is None:
            raise self._unknown(model, visible)
        self._direct[model] = strategy
        return strategy

    def _unknown(self, model: str, visible: Callable[[str], bool]) -> ModelNotFound:
        available = ", ".join(m["id"] for m in self.models() if visible(m["id"])) or "none for this key"
        return ModelNotFound(f"The model `{model}` does not exist. Available models: {available}", param="model")

    def backend_for(self, model: str, visible: Callable[[str], bool] = lambda _: True) -> tuple[str, str | None]:
        """The backend that serves `model` directly (a backend's name, its model, or an id it reported), and
        the model id to ask it for; embeddings and legacy completions go only there, never to a council."""
        if not visible(model):
            raise self._unknown(model, visible)
        if model in self.virtual:
            raise ModelNotFound(f"`{model}` is a virtual model, which answers chat, Responses and Messages "
                                "requests only. Name a backend's model for this endpoint: "
                                + (", ".join(m["id"] for m in self.models()
                                             if m["owned_by"] != "shenron" and visible(m["id"])) or "none"),
                                param="model")
        self.resolve(model, visible)
        strategy = self._direct[model]
        assert isinstance(strategy, Single)
        return strategy.order[0], strategy.model

    def native(self, model: str, kind: str) -> bool:
        """Whether `model` passes straight through to one backend of this `kind` (a request in that
        backend's own dialect can then go as it is)."""
        if model in self.virtual:
            return False
        strategy = self._direct.get(model) or self._passthrough(model)
        return isinstance(strategy, Single) and self.cfg.backends[strategy.order[0]].kind == kind

    def _passthrough(self, model: str) -> Strategy | None:
        if model in self.backends:
            return Single(model, [model], self.backends, label="passthrough")
        for name, b in self.backends.items():
            if b.model == model:
                return Single(model, [name], self.backends, label="passthrough")
        for name, ids in self.served.items():
            if model in ids:
                return Single(model, [name], self.backends, label="passthrough", model=model)
        return None

    def models(self) -> list[Json]:
        """Virtual models first, then what the backends serve; from memory, never from the network."""
        seen: set[str] = set()
        out: list[Json] = []

        def add(mid: str, owner: str) -> None:
            if mid not in seen:
                seen.add(mid)
                out.append({"id": mid, "object": "model", "created": self.created, "owned_by": owner})

        for name in self.virtual:
            add(name, "shenron")
        for name, b in self.backends.items():
            add(b.model, name)
        for name, ids in self.served.items():
            for mid in ids:
                add(mid, name)
        return out

    async def refresh(self, timeout_s: float = 3.0) -> None:
        """Look pools' host names up again, then ask every backend which models it serves (GET /models),
        all at once."""
        pools = [b for b in self.backends.values() if isinstance(b, PooledBackend)]
        if pools:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*(b.resolve() for b in pools))

        async def one(name: str) -> None:
            try:
                async with asyncio.timeout(timeout_s):
                    ids = await self.backends[name].list_models()
            except (MemberFailure, TimeoutError):
                self.reachable[name] = False
                return
            self.reachable[name] = True
            self.served[name] = ids
            for mid in ids:
                self._direct.pop(mid, None)

        await asyncio.gather(*(one(n) for n in self.backends))

    async def refresh_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh()
            except Exception:  # a bug here must not stop the refreshing; it is logged, not hidden
                log.exception("refreshing the backends' model lists failed")
