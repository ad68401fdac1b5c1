"""The health loop: probes per server kind, warm-up, and the guards and GPU pools it hands every backend.

Background probes feed each backend's breaker (routing/upstream/guard.py) and learn what is loaded
(Ollama `/api/ps`) or loading (llama.cpp's `/health` 503), so a council skips a dead member at once
instead of waiting on it. With Redis, the replicas share the probing (routing/upstream/fleet.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from routing import request
from routing.config import BackendConfig, Config
from routing.core import Reply
from routing.errors import MemberFailure
from routing.request import Json, Request
from routing.upstream.fleet import Fleet, SharedPool
from routing.upstream.guard import Guard, Pool
from routing.upstream.pool import PooledBackend


class Served(Protocol):
    """What probing and warming need of a backend (or of one endpoint of a pool)."""

    name: str
    cfg: BackendConfig
    model: str
    headers: dict[str, str]
    models_url: str
    timeout: httpx.Timeout
    window: int | None
    guard: Guard

    async def complete(self, req: Request, model: str | None = None, notes: Json | None = None) -> Reply: ...

log = logging.getLogger("shenron")

def probe_kind(cfg: BackendConfig) -> str:
    if cfg.server != "auto":
        return cfg.server
    return "ollama" if urlsplit(cfg.url).port == 11434 else "openai"


def root_url(url: str) -> str:
    base = url.rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


def _n_ctx(r: httpx.Response) -> int | None:
    """llama.cpp's context size from GET /props, where it says."""
    if r.status_code != 200:
        return None
    try:
        n = r.json().get("default_generation_settings", {}).get("n_ctx")
    except (ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and n > 0 else None


def _result(g: Guard) -> Json:
    """A probe's outcome as the other replicas read it."""
    return {"ok": g.last_error is None, "reason": g.last_error or "", "loading": g.loading, "loaded": g.loaded,
            "t": g.probed_at}


def _apply(g: Guard, r: Json) -> None:
    """Another replica's probe of this backend, taken as this replica's own."""
    g.probed_at = r.get("t")
    if r.get("loading"):
        g.loading = True
        return
    g.loading = False
    if r.get("loaded") is not None:
        g.loaded = bool(r["loaded"])
    g.record(bool(r.get("ok")), str(r.get("reason") or ""))


class Health:
    """Probes every backend on a timer and keeps `keep-alive` members loaded."""

    def __init__(self, cfg: Config, backends: Mapping[str, Served], client: httpx.AsyncClient,
                 fleet: Fleet | None = None) -> None:
        self.cfg = cfg
        self.client = client
        self.backends = backends
        self.fleet = fleet
        self.pools: dict[str, Pool | SharedPool] = {
            name: SharedPool(name, g.max_concurrent, fleet, g.lease_s) if fleet else Pool(name, g.max_concurrent)
            for name, g in cfg.gpus.items()}
        self._warming: asyncio.Task[None] | None = None
        self._asked_props: set[str] = set()
        self._opened: list[Guard] = []
        """Breakers this replica opened since the last probe round, for the others to hear of."""
        self.guards: dict[str, Guard] = {}
        for name, b in backends.items():
            if isinstance(b, PooledBackend):  # each endpoint its own guard and GPU slots
                b.adopt(self._endpoint_guard)
                self.guards[name] = b.guard
                continue
            pool = self.pools.get(b.cfg.gpu) if b.cfg.gpu else None
            guard = Guard(name, b.cfg, pool, cfg.server.breaker_failures, cfg.server.breaker_open_s)
            guard.on_open = self._opened.append
            b.guard = guard
            self.guards[name] = guard

    def _endpoint_guard(self, name: str, cfg: BackendConfig) -> Guard:
        """One endpoint of a pool: its own breaker, and its own GPU's slots (`gpu = "g"` on a pool gives each
        server a `g@endpoint` pool with g's max-concurrent, since each is another machine)."""
        pool = None
        if cfg.gpu:
            gpu = self.cfg.gpus[cfg.gpu]
            slot = f"{cfg.gpu}@{name.split('@', 1)[1]}"
            if slot not in self.pools:
                self.pools[slot] = (SharedPool(slot, gpu.max_concurrent, self.fleet, gpu.lease_s) if self.fleet
                                    else Pool(slot, gpu.max_concurrent))
            pool = self.pools[slot]
        guard = Guard(name, cfg, pool, self.cfg.server.breaker_failures, self.cfg.server.breaker_open_s)
        guard.on_open = self._opened.append
        return guard

    def targets(self, name: str) -> list[tuple[Served, Guard]]:
        """What to probe or warm for a backend: itself, or each endpoint of a pool."""
        b = self.backends[name]
        if isinstance(b, PooledBackend):
            return [(e.backend, e.backend.guard) for e in b.endpoints]
        return [(b, self.guards[name])]

    def healthy(self, members: list[str]) -> int:
        """How many of these members may be asked now (breaker not open, not loading)."""
        return sum(1 for m in members if self.guards[m].usable() is None)

    async def _get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        timeout = min(3.0, max(0.5, self.cfg.server.health_interval_s))
        return await self.client.get(url, headers=headers, timeout=timeout)

    async def probe(self, name: str) -> None:
        await asyncio.gather(*(self._probe(b, g) for b, g in self.targets(name)))

    async def _probe(self, b: Served, g: Guard) -> None:
        kind = probe_kind(b.cfg)
        root = root_url(b.cfg.url)
        headers = {k: v for k, v in b.headers.items() if k != "content-type"}
        try:
            if kind in ("llamacpp", "vllm"):
                r = await self._get(root + "/health", headers)
                if r.status_code == 503 and kind == "llamacpp":
                    g.loading, g.probed_at = True, time.time()
                    return
                ok = r.status_code == 200
                if ok and kind == "llamacpp" and b.window is None and g.name not in self._asked_props:
                    self._asked_props.add(g.name)  # once: a server without /props is not asked every round
                    b.window = _n_ctx(await self._get(root + "/props", headers))
            elif kind == "ollama":
                ok = (await self._get(root + "/api/version", headers)).status_code == 200
                if ok:
                    ps = (await self._get(root + "/api/ps", headers)).json()
                    names = {m.get("name") for m in ps.get("models") or []} | {m.get("model") for m in
                                                                               ps.get("models") or []}
                    g.loaded = b.model in names
            elif kind == "lmstudio":
                r = await self._get(root + "/api/v1/models", headers)
                ok = r.status_code == 200
                if ok:
                    states = {m.get("id"): m.get("state") for m in r.json().get("data") or [] if isinstance(m, dict)}
                    if b.model in states and states[b.model] is not None:
                        g.loaded = states[b.model] == "loaded"
            else:
                r = await self._get(b.models_url, headers)
                ok = r.status_code == 200
            reason = "" if ok else f"health probe answered {r.status_code}" if kind != "ollama" else "probe failed"
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            ok, reason = False, f"health probe failed: {type(e).__name__}: {e}"[:200]
        g.probed_at = time.time()
        if ok:
            g.loading = False
        g.record(ok, reason)

    async def probe_all(self) -> None:
        """Probe every backend and endpoint; with Redis, each is probed by one replica a round and the others
        read its result, and a breaker one replica opens is open on all of them by the next round."""
        pairs = [pair for name in self.backends for pair in self.targets(name)]
        fleet = self.fleet
        if fleet is None or not fleet.online:
            await asyncio.gather(*(self._probe(b, g) for b, g in pairs))
            return
        interval_ms = max(100, int(self.cfg.server.health_interval_s * 1000))
        names = [g.name for _, g in pairs]
        try:
            mine, down = await fleet.claim_probes(names, interval_ms)
        except Exception as e:  # Redis blinked: probe everything here, as a lone replica would
            fleet.failed(e)
            await asyncio.gather(*(self._probe(b, g) for b, g in pairs))
            return
        for _, g in pairs:
            if g.name in down and g not in self._opened:
                g.opened_elsewhere(down[g.name])
        await asyncio.gather(*(self._probe(b, g) for b, g in pairs if g.name in mine))
        opened, self._opened = {g.name: g.breaker.reason or "failing" for g in self._opened}, []
        results = {g.name: _result(g) for _, g in pairs if g.name in mine}
        try:
            theirs = await fleet.share_probes(results, [n for n in names if n not in mine], opened, interval_ms * 3,
                                              int(self.cfg.server.breaker_open_s * 1000))
        except Exception as e:
            fleet.failed(e)
            return
        for _, g in pairs:
            if (r := theirs.get(g.name)) is not None:
                _apply(g, r)

    async def warm(self, name: str) -> None:
        """Load a keep-alive member the way real traffic would find it loaded (every server of a pool)."""
        for b, g in self.targets(name):
            await self._warm(b, g)

    async def _warm(self, b: Served, g: Guard) -> None:
        start = time.perf_counter()
        try:
            if probe_kind(b.cfg) == "ollama":
                r = await self.client.post(root_url(b.cfg.url) + "/api/generate", headers=b.headers,
                                           json={"model": b.model, "prompt": "", "keep_alive": "30m", "stream": False},
                                           timeout=b.timeout)
                if r.status_code >= 400:
                    raise MemberFailure(g.name, f"warm-up answered {r.status_code}")
            else:
                await b.complete(request.ask("hi", max_tokens=1))
            g.warmed_at, g.loaded = time.time(), True if g.loaded is not None else None
            log.info("warmed %s (%s) in %.1fs", g.name, b.model, time.perf_counter() - start)
        except (MemberFailure, httpx.HTTPError) as e:
            log.warning("warming %s failed: %s", g.name, e)

    async def warm_all(self) -> None:
        for name, b in self.backends.items():  # one at a time: loading several models at once thrashes VRAM
            if b.cfg.keep_alive:
                await self.warm(name)

    async def run_forever(self) -> None:
        last_warm = 0.0
        while True:
            try:
                if any(b.cfg.keep_alive for b in self.backends.values()) and \
                        time.monotonic() - last_warm >= self.cfg.server.warmup_interval_s:
                    last_warm = time.monotonic()
                    if self._warming is None or self._warming.done():  # kept: the loop holds tasks weakly
                        self._warming = asyncio.get_running_loop().create_task(self.warm_all())
                await self.probe_all()
            except Exception:  # a bug here must not stop the probing; logged, not hidden
                log.exception("probing backends failed")
            await asyncio.sleep(self.cfg.server.health_interval_s)

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
