"""`shenron`: serve the proxy, or check a config and its backends."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import msgspec

from routing.backends import build
from routing.config import CONFIG_ENV, DEFAULT_FILE, Config, ConfigError, ServerConfig, find, load
from routing.discovery import KNOWN_SERVERS, discover
from routing.errors import MemberFailure

DESCRIPTION = """Shenron: an OpenAI-compatible proxy whose `model` picks a virtual model
(ultra-instinct, agent-lite, full-council, ...) or passes straight through to a backend."""

CONFIG_HELP = (f"config file (default: ${CONFIG_ENV}, then ./{DEFAULT_FILE}, else discover local backends: "
               + ", ".join(f"{k} on :{p}" for k, p in KNOWN_SERVERS) + ")")


def resolve(explicit: str | None, server: ServerConfig | None = None) -> Config:
    path = find(explicit, dict(os.environ), Path.cwd())
    if path is not None:
        return load(path)
    return asyncio.run(discover(server or ServerConfig()))


def _describe(cfg: Config) -> str:
    lines = [f"config: {cfg.source}"]
    if cfg.backends:
        lines.append("backends: " + ", ".join(f"{n} ({b.model} at {b.url})" for n, b in cfg.backends.items()))
        lines.append("virtual models: " + (", ".join(cfg.models) or "none"))
    else:
        lines.append("No backends configured or found. Shenron is up, but chat requests will get 503 until "
                     "you write a config (see README) or start a local model server and restart.")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    server_overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    cfg = resolve(args.config, msgspec.structs.replace(ServerConfig(), **server_overrides))
    cfg.server = msgspec.structs.replace(cfg.server, **server_overrides)
    from proxy.app import RESOLVED_ENV  # the edge is only needed to serve

    os.environ[RESOLVED_ENV] = msgspec.json.encode(cfg).decode()
    host, port = cfg.server.host, cfg.server.port
    print(f"Shenron listening on http://{host}:{port}/v1  (server: {cfg.server.server})", file=sys.stderr)
    print(_describe(cfg), file=sys.stderr, flush=True)
    if cfg.server.server == "granian":
        from granian.constants import Interfaces, Loops
        from granian.log import LogLevels
        from granian.server import Server

        Server("proxy.app:app_from_env", address=host, port=port, interface=Interfaces.ASGI, factory=True,
               loop=Loops.uvloop, log_level=LogLevels(cfg.server.log_level), log_access=False).serve()
    else:
        import uvicorn

        uvicorn.run("proxy.app:app_from_env", factory=True, host=host, port=port, loop="uvloop",
                    http="httptools", log_level=cfg.server.log_level, access_log=False)
    return 0


async def _probe_all(cfg: Config) -> list[tuple[str, str, str, str, str]]:
    async with httpx.AsyncClient() as client:
        backends = {n: build(n, b, client) for n, b in cfg.backends.items()}

        async def one(name: str) -> tuple[str, str, str, str, str]:
            b = backends[name]
            start = time.perf_counter()
            try:
                async with asyncio.timeout(10):
                    ids = await b.list_models()
            except (MemberFailure, TimeoutError) as e:
                reason = e.reason if isinstance(e, MemberFailure) else "no answer within 10s"
                return name, b.cfg.url, "no", reason, "-"
            ms = f"{(time.perf_counter() - start) * 1000:.0f} ms"
            served = ", ".join(ids) or "(none listed)"
            if b.model not in ids and ids:
                served += f"  [configured model {b.model!r} not listed]"
            return name, b.cfg.url, "yes", served, ms

        return list(await asyncio.gather(*(one(n) for n in backends)))


def cmd_check(args: argparse.Namespace) -> int:
    cfg = resolve(args.config)
    print(f"config OK: {cfg.source}")
    print(f"virtual models: {', '.join(cfg.models) or 'none'}")
    if not cfg.backends:
        print("no backends configured or found")
        return 1
    rows = [("member", "url", "reachable", "models served", "latency"), *asyncio.run(_probe_all(cfg))]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    return 0 if all(r[2] == "yes" for r in rows[1:]) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shenron", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="run the proxy", description="Run the OpenAI-compatible proxy.")
    s.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    s.add_argument("--host", help="address to bind (default: [server] host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to bind (default: [server] port, 8000)")
    s.set_defaults(func=cmd_serve)
    c = sub.add_parser("check", help="validate the config and probe every backend",
                       description="Validate the config and probe every backend. Exit status: 0 all reachable, "
                                   "1 some backend unreachable, 2 invalid config.")
    c.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    c.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"shenron: invalid config: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
