"""`shenron`: serve the proxy, or check a config and its backends."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec

from proxy.llamacpp import PORTABLE_CMAKE_ARGS
from routing.config import (
    CONFIG_ENV,
    DEFAULT_FILE,
    Config,
    ConfigError,
    find,
    load,
    store_path,
)
from routing.settings import ADMIN_TIER, ServerConfig, redacted
from routing.upstream.discovery import KNOWN_SERVERS, discover

if TYPE_CHECKING:
    from proxy.store import KeyRecord, LedgerRow, Store

T = TypeVar("T")

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
        lines.append("backends: " + ", ".join(f"{n} ({b.model} at {redacted(b.url)})" for n, b in cfg.backends.items()))
        if cfg.defined:
            lines.append("virtual models:")
            lines += [f"  {name}: {why}" for name, why in cfg.defined.items()]
        else:
            lines.append("virtual models: " + (", ".join(cfg.models) or "none"))
    else:
        lines.append("No backends configured or found. Shenron is up, but chat requests will get 503 until "
                     "you write a config (see README) or start a local model server and restart.")
    return "\n".join(lines)


def _auth_line(cfg: Config, insecure: bool) -> str | None:
    """Settle whether keys are required and say so; None when serving would expose the proxy without keys.

    Unset, keys are required on a non-loopback bind unless --insecure; `enabled = false` on such a
    bind needs --insecure too.
    """
    from proxy.auth import loopback

    local = loopback(cfg.server.host)
    if cfg.auth.enabled is None:
        cfg.auth.enabled = not local and not insecure
    if cfg.auth.enabled:
        return f"auth: API keys required (tiers: {', '.join(cfg.tiers) or 'none defined'})"
    if local:
        return "auth: off (loopback only; set [auth] enabled = true to require keys)"
    if insecure:
        return f"auth: OFF on {cfg.server.host} (--insecure): anyone who can reach this port can use every model"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    server_overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers))
                        if v is not None}
    cfg = resolve(args.config, msgspec.structs.replace(ServerConfig(), **server_overrides))
    cfg.server = msgspec.structs.replace(cfg.server, **server_overrides)
    if cfg.server.access_log not in ("-", "off"):
        try:  # here, with a clear message, not as a traceback from every worker
            open(cfg.server.access_log, "a", encoding="utf-8").close()
        except OSError as e:
            raise ConfigError(f"[server] access-log {cfg.server.access_log!r} cannot be written: {e.strerror} "
                              "(a file path, `-` for stderr or `off`)") from None
    auth = _auth_line(cfg, args.insecure)
    if auth is None:
        print(f"shenron: refusing to listen on {cfg.server.host} without API keys ([auth] enabled = false). "
              "Remove that line and create keys with `shenron keys create`, or pass --insecure to serve without "
              "them.", file=sys.stderr)
        return 2
    if cfg.server.workers > 1 and not cfg.store.redis_url:
        print(f"shenron: --workers {cfg.server.workers} needs [store] redis-url: without it each worker would count "
              "its own GPU slots, rate limits and breakers, and a GPU of max-concurrent 2 would get 2 per worker. "
              "Set redis-url (and database-url for the ledger of several hosts), or run one worker.",
              file=sys.stderr)
        return 2
    if cfg.store.path is None and not cfg.store.database_url:
        cfg.store.path = str(store_path(cfg))  # every worker, and `shenron keys`, then use the same file
    from proxy.app import RESOLVED_ENV  # the edge is only needed to serve
    from proxy.store import describe

    _with_store(cfg, lambda s: asyncio.sleep(0))  # create or migrate it now, and fail here with a clear message

    os.environ[RESOLVED_ENV] = msgspec.json.encode(cfg).decode()
    host, port = cfg.server.host, cfg.server.port
    workers = f", {cfg.server.workers} workers" if cfg.server.workers > 1 else ""
    print(f"Shenron listening on http://{host}:{port}/v1  (server: {cfg.server.server}{workers})", file=sys.stderr)
    print(_describe(cfg), file=sys.stderr)
    print(f"{auth}\nledger: {describe(cfg)}", file=sys.stderr, flush=True)
    import uvicorn

    uvicorn.run("proxy.app:app_from_env", factory=True, host=host, port=port, loop="uvloop",
                http="proxy.sockets:FromEnv", log_level=cfg.server.log_level, access_log=False, backlog=4096,
                workers=cfg.server.workers, timeout_graceful_shutdown=int(cfg.server.drain_timeout_s))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from proxy import check

    return check.run(resolve(args.config))


def _store_config(explicit: str | None) -> Config:
    """The config whose store `keys` and `usage` use; no file means the default SQLite store."""
    path = find(explicit, dict(os.environ), Path.cwd())
    return load(path) if path is not None else Config(source="defaults")


def _with_store(cfg: Config, fn: Callable[[Store], Awaitable[T]]) -> T:
    from proxy.store import open_store

    async def run() -> T:
        store = await open_store(cfg)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_keys_create(args: argparse.Namespace) -> int:
    cfg = _store_config(args.config)
    tier = ADMIN_TIER if args.admin else args.tier
    if tier not in cfg.tiers and tier != ADMIN_TIER:
        where = cfg.source if cfg.source != "defaults" else "no config file found"
        print(f"shenron: unknown tier {tier!r} ({where}); defined tiers: {', '.join(cfg.tiers) or 'none'}. "
              "Add a [tiers.NAME] table to the config first.", file=sys.stderr)
        return 2
    rec, key = _with_store(cfg, lambda s: s.create_key(args.name, tier))
    print(key)
    print(f"created {rec.id} (name {rec.name!r}, tier {rec.tier!r}). This key is shown once: store it now.",
          file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    keys = _with_store(_store_config(args.config), lambda s: s.list_keys())
    if args.format == "json":
        data = [{k: v for k, v in msgspec.structs.asdict(r).items() if k != "hash"} for r in keys]
        print(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())
        return 0
    rows = [("id", "name", "tier", "key", "created", "status")]
    for r in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created))
        status = "revoked " + time.strftime("%Y-%m-%d", time.gmtime(r.revoked)) if r.revoked else "active"
        rows.append((r.id, r.name, r.tier, r.prefix + "...", created, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    done = _with_store(_store_config(args.config), lambda s: s.revoke_key(args.id))
    if not done:
        print(f"shenron: no active key with id {args.id!r} (see `shenron keys list`)", file=sys.stderr)
        return 1
    print(f"revoked {args.id}; requests with it are refused within a few seconds", file=sys.stderr)
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from proxy import usage

    try:
        start = usage.since(args.since)
    except ValueError as e:
        print(f"shenron: {e}", file=sys.stderr)
        return 2

    async def read(s: Store) -> tuple[list[LedgerRow], list[KeyRecord]]:
        return await s.rows(start), await s.list_keys()

    rows, keys = _with_store(_store_config(args.config), read)
    lines = usage.summarize(rows, args.by, {k.id: k for k in keys})
    print(usage.render(lines, args.format, args.by))
    return 0


def _ram_gb() -> float | None:
    from routing.decide.governor import meminfo

    total = meminfo().get("MemTotal")
    return total / 1024 / 1024 if total else None


def cmd_plan(args: argparse.Namespace) -> int:
    from routing.decide import plan

    path = find(args.config, dict(os.environ), Path.cwd())
    if path is None:
        print("shenron plan: no config found; pass --config PATH (plan needs [gpus.NAME] and each backend's "
              "params-b and quant)", file=sys.stderr)
        return 2
    devices = plan.plan(load(path), _ram_gb())
    print(plan.render(devices))
    return 0 if all(d.fits is not False for d in devices) else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from routing.decide import replay

    path = find(args.config, dict(os.environ), Path.cwd())
    if path is None:
        print("shenron replay: pass --config NEW.toml, the config to replay the records under", file=sys.stderr)
        return 2
    cfg = load(path)
    try:
        records = replay.read(args.records)
    except OSError as e:
        print(f"shenron replay: cannot read {args.records}: {e.strerror or e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"shenron replay: {e}", file=sys.stderr)
        return 2
    changes, stats = replay.replay(records, cfg)
    print(replay.render(changes, stats))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy import demo

    return demo.run(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shenron", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="run the proxy",
                       description="Run the proxy: OpenAI chat completions, the Responses API (Codex CLI), "
                                   "Anthropic's Messages API (Claude Code), embeddings and legacy completions, "
                                   "all under /v1.")
    s.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    s.add_argument("--host", help="address to bind (default: [server] host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to bind (default: [server] port, 8000)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback bind without API keys (anyone who reaches the port may use it)")
    s.add_argument("--workers", type=int, help="server processes on this host (default: [server] workers, 1); "
                   "more than one needs [store] redis-url, which they share GPU slots and limits through")
    s.set_defaults(func=cmd_serve)
    c = sub.add_parser("check", help="validate the config and probe every backend",
                       description="Validate the config and probe every backend. Exit status: 0 all reachable, "
                                   "1 some backend unreachable, 2 invalid config.")
    c.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    c.set_defaults(func=cmd_check)

    k = sub.add_parser("keys", help="create, list and revoke API keys",
                       description="Manage API keys in the store the config names (SQLite by default, or "
                                   "[store] database-url). Keys are stored hashed; `create` prints a key once.")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ksub.add_parser("create", help="create a key and print it once")
    which = kc.add_mutually_exclusive_group(required=True)
    which.add_argument("--tier", help="a tier defined in the config's [tiers.NAME]")
    which.add_argument("--admin", action="store_true",
                    help="a key of the `admin` tier: it may read /status and /metrics while auth is on "
                         "(and use no model, unless the config defines [tiers.admin])")
    kc.add_argument("--name", required=True, help="who the key is for (shown in `keys list` and `usage`)")
    kc.set_defaults(func=cmd_keys_create)
    kl = ksub.add_parser("list", help="list keys (id, name, tier, prefix; never the key)")
    kl.add_argument("--format", choices=("table", "json"), default="table")
    kl.set_defaults(func=cmd_keys_list)
    kr = ksub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("id", help="the key's id, as `keys list` shows it (key_...)")
    kr.set_defaults(func=cmd_keys_revoke)
    for each in (kc, kl, kr):
        each.add_argument("--config", metavar="PATH", help=CONFIG_HELP)

    u = sub.add_parser("usage", help="requests, tokens, cost and latency from the ledger",
                       description="Sum the usage ledger: requests, errors, tokens, local and cloud cost, "
                                   "p50/p95 latency, per key, virtual model or member.")
    u.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    u.add_argument("--since", default="7d", help="a duration (30m, 12h, 7d, 2w) or a date (2026-11-01); default 7d")
    u.add_argument("--by", choices=("key", "model", "member", "session"), default="model",
                   help="group by key, virtual model, member, or session (an agent's conversation: its turns, "
                        "tokens, cost and latency; `council.session` names it)")
    u.add_argument("--format", choices=("table", "csv", "json"), default="table")
    u.set_defaults(func=cmd_usage)

    pl = sub.add_parser("plan", help="will the models fit the GPUs? memory per model and quantization",
                        description="Estimate each local model's memory (weights at its quantization, KV cache, "
                                    "overhead) per [gpus.NAME] and, for backends on no GPU, against host RAM; "
                                    "say whether they fit and at which quantization they would. Exit status: "
                                    "0 everything fits, 1 some device is over budget, 2 no config.")
    pl.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    pl.set_defaults(func=cmd_plan)

    dm = sub.add_parser("demo", help="a real council on this machine: SmolLM2 under llama.cpp, Shenron over it",
                        description="Start llama.cpp's server on the bundled SmolLM2-135M-Instruct model and a "
                                    "Shenron over it with every virtual model (councils of samples of the one "
                                    "model), ask each one question, print the answers and what the council did, "
                                    "and leave the proxy running until Ctrl-C. Needs the demo extra, with "
                                    "llama.cpp built to run on every CPU (a native build crashes on CPUs with "
                                    "AMX): CMAKE_ARGS=\"" + PORTABLE_CMAKE_ARGS + "\" pip install --no-cache-dir "
                                    "'shenron[demo]'. Exit status: 0 every virtual model answered, 1 not (a "
                                    "model server that died is named, with how to rebuild it), 2 not installed.")
    dm.add_argument("--port", type=int, default=8000, help="the proxy's port (default 8000)")
    dm.add_argument("--exit", action="store_true", help="stop after the questions instead of serving on")
    dm.set_defaults(func=cmd_demo)

    rp = sub.add_parser("replay", help="re-decide recorded traffic under a new config",
                        description="Read decision records ([server] decision-log) and print every request whose "
                                    "routing (degradation, cascade escalation, the samples an adaptive council asks: "
                                    "adaptive-confidence, confident-first) would differ under --config.")
    rp.add_argument("records", metavar="RECORDS.jsonl", help="a decision log written by `shenron serve`")
    rp.add_argument("--config", metavar="NEW.toml", help="the config to replay under (default: as for serve)")
    rp.set_defaults(func=cmd_replay)
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
    except Exception as e:
        from proxy.store import StoreError

        if not isinstance(e, StoreError):
            raise
        print(f"shenron: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
