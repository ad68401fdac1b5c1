"""`shenron check`: validate the config and probe every backend, as a person setting Shenron up needs."""

from __future__ import annotations

import asyncio
import shutil
import time

import httpx

from routing import request
from routing.config import Config
from routing.decide import rules
from routing.errors import MemberFailure
from routing.models import CascadeModel, EscalateModel
from routing.settings import redacted
from routing.upstream.backends import Backend
from routing.upstream.kinds import build
from routing.upstream.pool import PooledBackend


def run(cfg: Config) -> int:
    """Print the config's source, every backend's reachability, the code checks a ladder can run here and
    which cascade can read its confidence; 0 when every backend answered, else 1."""
    print(f"config OK: {cfg.source}")
    print(f"virtual models: {', '.join(cfg.models) or 'none'}")
    if not cfg.backends:
        print("no backends configured or found")
        return 1
    rows = [("member", "url", "reachable", "models served", "latency"), *asyncio.run(_probe_all(cfg))]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    if any(isinstance(vm, EscalateModel) for vm in cfg.models.values()):
        _print_checks(cfg)
    if any(isinstance(vm, CascadeModel) for vm in cfg.models.values()):
        _print_confidence(cfg, asyncio.run(_logprobs(cfg)))
    return 0 if all(r[2] == "yes" for r in rows[1:]) else 1


async def _probe_all(cfg: Config) -> list[tuple[str, str, str, str, str]]:
    """A row per backend, and per endpoint of a pool (its host names resolved as serving would)."""
    async with httpx.AsyncClient() as client:
        targets: list[tuple[str, Backend]] = []
        for n, c in cfg.backends.items():
            b = build(n, c, client)
            if isinstance(b, PooledBackend):
                await b.resolve()
                targets += [(f"{n}@{e.label}", e.backend) for e in b.endpoints]
            else:
                targets.append((n, b))

        async def one(name: str, b: Backend) -> tuple[str, str, str, str, str]:
            start = time.perf_counter()
            try:
                async with asyncio.timeout(10):
                    ids = await b.list_models()
            except (MemberFailure, TimeoutError) as e:
                reason = e.reason if isinstance(e, MemberFailure) else "no answer within 10s"
                return name, redacted(b.cfg.url), "no", reason, "-"
            ms = f"{(time.perf_counter() - start) * 1000:.0f} ms"
            served = ", ".join(ids) or "(none listed)"
            if b.model not in ids and ids:
                served += f"  [configured model {b.model!r} not listed]"
            return name, redacted(b.cfg.url), "yes", served, ms

        return list(await asyncio.gather(*(one(n, b) for n, b in targets)))


def _first_backends(cfg: Config, cascade: CascadeModel) -> list[str]:
    """The backends a cascade's first model asks (those whose logprobs are its confidence)."""
    first = cfg.models.get(cascade.first)
    return list(dict.fromkeys(getattr(first, "members", []) or []))


async def _logprobs(cfg: Config) -> dict[str, str | None]:
    """For each backend behind a cascade's first model: None when one token comes back with its logprob,
    else why not (asked as the cascade asks: `logprobs` with `top_logprobs: 1`)."""
    names = {b for vm in cfg.models.values() if isinstance(vm, CascadeModel) for b in _first_backends(cfg, vm)}
    async with httpx.AsyncClient() as client:
        async def one(name: str) -> tuple[str, str | None]:
            b = build(name, cfg.backends[name], client)
            try:
                async with asyncio.timeout(30):
                    out = await b.complete(request.ask("Say yes.", max_tokens=2, logprobs=True, top_logprobs=1))
            except (MemberFailure, TimeoutError) as e:
                return name, e.reason if isinstance(e, MemberFailure) else "no answer within 30s"
            if rules.logprob_confidence(out.answer.logprobs) is None:
                return name, "it answered without logprobs"
            return name, None

        return dict(await asyncio.gather(*(one(n) for n in sorted(names))))


def _print_confidence(cfg: Config, found: dict[str, str | None]) -> None:
    print("\ncascade confidence (token logprobs of the first answer):")
    for name, vm in cfg.models.items():
        if not isinstance(vm, CascadeModel):
            continue
        for b in _first_backends(cfg, vm):
            why = found.get(b)
            if why is None:
                print(f"  {name}: {vm.first} -> {b}: logprobs yes")
                continue
            fallback = (f"the second opinion ({vm.second_opinion}) measures it" if vm.second_opinion
                        else "it escalates only on risk words or when asked (set second-opinion)")
            print(f"  {name}: {vm.first} -> {b}: logprobs NO ({why}); {fallback}")


def _print_checks(cfg: Config) -> None:
    """Which languages the code ladder can check here, how, and what each check may read of the host."""
    from routing import sandbox
    from routing.config import private_paths
    from routing.toolchains import toolchain

    print("\ncode checks (never run the code unless `run` is set):")
    for lang, c in sandbox.table(cfg.checks).items():
        program = c.command[0]
        here = program == "{python}" or shutil.which(program) is not None
        status = "available" if here else f"not checked here: `{program}` not on PATH"
        tool = toolchain(program, extra_private=private_paths(cfg)) if here else None
        if tool is not None and tool.refused is not None:
            status = f"refused: {tool.refused}"
        elif here and sandbox.bubblewrap() is None and c is not sandbox.BUILTIN["python"]:
            status = "refused here: no isolation (install bubblewrap)"
        how = "compile() and an import lookup" if c is sandbox.BUILTIN["python"] else " ".join(c.command)[:40]
        print(f"  {lang.ljust(11)} {how.ljust(40)}  {status}{'  RUNS TESTS' if c.run else ''}")
        if tool is not None and tool.refused is None:
            print(f"  {''.ljust(11)} binds (read-only): /usr, {', '.join(map(str, tool.binds)) or 'nothing else'}")
    print(f"  isolation: {sandbox.isolation()}")


