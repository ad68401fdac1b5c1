"""Shenron's configuration: TOML with kebab-case keys, every type a msgspec Struct.

Unknown keys are errors so that a typo never silently changes routing. `load`
returns a `Config` or raises `ConfigError` naming the file, the key and the fault.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from routing.models import (
    STRATEGY_NAMES,
    CascadeModel,
    CheckConfig,
    EscalateModel,
    SingleModel,
    ThinkingModel,
    VirtualModel,
)
from routing.settings import AuthConfig, SandboxConfig, ServerConfig, StoreConfig, TierConfig, redacted
from routing.vote.samples import backend_of

CONFIG_ENV = "SHENRON_CONFIG"
DEFAULT_FILE = "shenron.toml"


class ConfigError(Exception):
    """A config that cannot be used; the message is meant for a person."""


class _Base(msgspec.Struct, rename="kebab", forbid_unknown_fields=True, omit_defaults=True):
    """A table of the routing config; the same rules as `routing.models.Table` and
    `routing.settings.Section` (defined here too so that linters see a msgspec Struct)."""


class EndpointConfig(_Base):
    """One server of a pool, where it needs more than its URL."""
    url: str
    capacity: float = 1.0
    """Its share of the pool's load against the others' (a GPU twice as fast: 2)."""
    label: str | None = None
    """Its name in reports, the ledger and /status; default: host:port."""


class BackendConfig(_Base):
    model: str
    """Upstream model id sent in the request body."""
    url: str = ""
    """OpenAI-compatible base URL, ending in /v1 for most servers."""
    urls: list[str | EndpointConfig] = []
    """Several servers of this one model (instead of `url`): a pool, balanced and failed over per request.
    A host name that resolves to several addresses is several endpoints, re-resolved on the refresh timer."""
    affinity: Literal["session", "prefix", "none"] = "session"
    """A pool's choice of endpoint: the session's (else the prompt prefix's) endpoint while it is not
    overloaded, so its KV cache is reused; `prefix` ignores session keys; `none`: least outstanding only."""
    affinity_bound: float = 1.25
    """An endpoint above this times the pool's mean load (per capacity) is passed over, whatever the affinity."""
    """Upstream model id sent in the request body."""
    kind: Literal["openai", "anthropic"] = "openai"
    api_key_env: str | None = None
    weight: float = 1.0
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    headers: dict[str, str] = {}
    price_in: float = 0.0
    """USD per million prompt tokens (0 for a local model)."""
    price_out: float = 0.0
    """USD per million completion tokens."""
    price_cached_in: float | None = None
    """USD per million prompt tokens read from the server's prompt cache (OpenAI: half or a tenth of
    price-in, Anthropic: a tenth); unset: price-in."""
    price_cache_write: float | None = None
    """USD per million prompt tokens written to the prompt cache (Anthropic: 1.25x price-in); unset: price-in."""
    cloud: bool | None = None
    """Whether its spend is cloud spend (counts against budgets); unset: true for a public host name."""
    server: Literal["auto", "llamacpp", "vllm", "ollama", "lmstudio", "openai"] = "auto"
    """What serves it, for health probes; auto: Ollama by its port 11434, else the generic /models."""
    keep_alive: bool = False
    """Keep the model loaded: warm it at start and every `warmup-interval-s`."""
    gpu: str | None = None
    """The `[gpus.NAME]` pool it runs on: its requests share that GPU's concurrency limit."""
    params_b: float | None = None
    """Parameters in billions, for `shenron plan`."""
    quant: str | None = None
    """Quantization (fp16, q8_0, q6_k, q5_k_m, q4_k_m, ...), for `shenron plan`."""
    context_tokens: int | None = None
    """Its context window in tokens. Unset: read from the server where it says (vLLM's `max_model_len`,
    llama.cpp's `/props`), else unknown. A member whose window cannot hold a request's prompt and
    `max_tokens` is skipped, saying both numbers; `shenron plan` assumes 4096 when unknown."""
    max_connections: int | None = None
    """Its connection pool's size; unset: `[server] upstream-max-connections`."""
    keepalive_s: float | None = None
    """How long its idle connections are kept; unset: `[server] upstream-keepalive-s`."""

    @property
    def is_cloud(self) -> bool:
        return self.cloud if self.cloud is not None else _public(self.url)


@functools.lru_cache(maxsize=256)
def _public(url: str) -> bool:
    """Asked on every member call (budgets); parsing the address each time cost 0.05 ms a request."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith((".local", ".lan", ".internal", ".localdomain")) or "." not in host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (ip.is_private or ip.is_loopback or ip.is_link_local)


class GpuConfig(_Base):
    vram_gb: float
    max_concurrent: int | None = None
    """Requests admitted at once to the members on this GPU; others queue (the wait is in the metadata).
    With `[store] redis-url` it holds across every replica of Shenron, not per process."""
    lease_s: float = 30.0
    """With Redis: how long a slot of a replica that died or hangs stays taken before others get it."""


class Config(_Base):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    backends: dict[str, BackendConfig] = {}
    models: dict[str, VirtualModel] = {}
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    tiers: dict[str, TierConfig] = {}
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    checks: dict[str, CheckConfig] = {}
    """Per-language code checks for `escalate`, merged over the built-in table."""
    gpus: dict[str, GpuConfig] = {}
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    source: str | None = None
    """Where this config came from (a path, or a note about discovery); not read from TOML."""
    defined: dict[str, str] = {}
    """Discovery's virtual models and why each is what it is, for `serve` to print; not read from TOML."""


_PATH_RE = re.compile(r" - at `\$\.?(.*)`$")


def _explain(err: msgspec.ValidationError, prefix: str) -> str:
    text = str(err)
    m = _PATH_RE.search(text)
    where, what = (m.group(1), text[: m.start()]) if m else ("", text)
    key = ".".join(k for k in (prefix, where) if k) or "(top level)"
    what = what.replace("Object contains unknown field", "unknown key")
    what = what.replace("Object missing required field", "missing required key")
    what = what.replace("Expected `float`", "expected a number").replace("Expected `int`", "expected an integer")
    what = what.replace("Expected `str`", "expected a string").replace("Expected `array`", "expected a list")
    if what.startswith("Invalid value") and where.endswith("strategy"):
        what += f" (expected one of: {', '.join(STRATEGY_NAMES)})"
    return f"key `{key}`: {what}"


def _convert(raw: dict[str, object]) -> Config:
    """Convert section by section so that an error names the table entry (msgspec says `[...]`)."""
    sections = {"server", "backends", "models", "auth", "tiers", "store", "checks", "gpus", "sandbox"}
    for key in raw:
        if key not in sections:
            raise ConfigError(f"key `{key}`: unknown key (expected: {', '.join(sorted(sections))})")

    def conv(value: object, typ: Any, prefix: str) -> Any:
        try:
            return msgspec.convert(value, typ)
        except msgspec.ValidationError as e:
            raise ConfigError(_explain(e, prefix)) from None

    def table(name: str) -> dict[str, object]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"key `{name}`: expected a table")
        return value

    server = conv(raw.get("server", {}), ServerConfig, "server")
    backends = {k: _one_url(conv(v, BackendConfig, f"backends.{k}"), k) for k, v in table("backends").items()}
    models = {k: conv(v, VirtualModel, f"models.{k}") for k, v in table("models").items()}
    tiers = {k: conv(v, TierConfig, f"tiers.{k}") for k, v in table("tiers").items()}
    checks = {k: conv(v, CheckConfig, f"checks.{k}") for k, v in table("checks").items()}
    gpus = {k: conv(v, GpuConfig, f"gpus.{k}") for k, v in table("gpus").items()}
    return Config(server=server, backends=backends, models=models, auth=conv(raw.get("auth", {}), AuthConfig, "auth"),
                  tiers=tiers, store=conv(raw.get("store", {}), StoreConfig, "store"), checks=checks, gpus=gpus,
                  sandbox=conv(raw.get("sandbox", {}), SandboxConfig, "sandbox"))


def _one_url(b: BackendConfig, name: str) -> BackendConfig:
    """`url` or `urls`, never both or neither; a pool's first URL stands for it where one is read (its
    kind of server, whether it is a cloud)."""
    if b.url and b.urls:
        raise ConfigError(f"key `backends.{name}`: give `url` (one server) or `urls` (a pool), not both")
    if not b.url and not b.urls:
        raise ConfigError(f"key `backends.{name}`: missing required key `url` (or `urls` for a pool of servers)")
    if b.urls and not b.url:
        first = b.urls[0]
        b.url = first if isinstance(first, str) else first.url
    return b


def endpoint_urls(b: BackendConfig) -> list[EndpointConfig]:
    """The servers a backend names, each with its capacity and label."""
    return [EndpointConfig(u) if isinstance(u, str) else u for u in b.urls] or [EndpointConfig(b.url)]


def _check_refs(cfg: Config) -> None:
    problems: list[str] = []
    known = sorted(cfg.backends)
    for name, b in cfg.backends.items():
        for i, e in enumerate(endpoint_urls(b)):
            key = f"urls[{i}]" if b.urls else "url"
            if not e.url.startswith(("http://", "https://")):
                problems.append(f"key `backends.{name}.{key}`: must start with http:// or https://, "
                                f"got {redacted(e.url)!r}")
            if e.capacity <= 0:
                problems.append(f"key `backends.{name}.{key}.capacity`: must be > 0")
        if b.affinity_bound < 1:
            problems.append(f"key `backends.{name}.affinity-bound`: must be >= 1")
        if b.timeout_s <= 0:
            problems.append(f"key `backends.{name}.timeout-s`: must be > 0")
        if b.gpu is not None and b.gpu not in cfg.gpus:
            problems.append(f"key `backends.{name}.gpu`: unknown GPU {b.gpu!r} "
                            f"(known: {', '.join(cfg.gpus) or 'none; add a [gpus.NAME] table'})")
    for name, vm in cfg.models.items():
        if name in cfg.backends:
            problems.append(f"key `models.{name}`: a backend has the same name; names must be unique")
        fields, faults = _model_refs(vm)
        problems += [f"key `models.{name}.{f}" for f in faults]
        targets = [("degrade-to", vm.degrade_to)]
        if isinstance(vm, CascadeModel):
            targets += [("first", vm.first), ("escalate-to", vm.escalate_to)]
        for key, target in targets:
            if target is not None and (target not in cfg.models or target == name):
                problems.append(f"key `models.{name}.{key}`: {target!r} is not another virtual model "
                                f"(known: {', '.join(m for m in cfg.models if m != name) or 'none'})")
            elif target is not None and isinstance(cfg.models[target], CascadeModel):
                problems.append(f"key `models.{name}.{key}`: {target!r} is itself a cascade; point at the model "
                                "that answers")
        for key, names in fields:
            for member in names:
                if member not in cfg.backends:
                    problems.append(
                        f"key `models.{name}.{key}`: unknown backend {member!r} (known: {', '.join(known) or 'none'})"
                    )
    for lang, check in cfg.checks.items():
        if not check.command:
            problems.append(f"key `checks.{lang}.command`: needs at least the program to run")
        if check.timeout_s <= 0:
            problems.append(f"key `checks.{lang}.timeout-s`: must be > 0")
    for name, tier in cfg.tiers.items():
        for key in ("requests_per_minute", "tokens_per_day", "cloud_budget_usd_per_month"):
            v = getattr(tier, key)
            if v is not None and v < 0:
                problems.append(f"key `tiers.{name}.{key.replace('_', '-')}`: must be >= 0")
    db = cfg.store.database_url
    if db is not None and not db.startswith(("postgresql://", "postgres://")):
        problems.append(f"key `store.database-url`: expected postgresql://..., got {redacted(db)!r}")
    if cfg.store.redis_url is not None and not cfg.store.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("key `store.redis-url`: expected redis://... or rediss://...")
    if problems:
        raise ConfigError("\n  ".join(problems))


def _model_refs(vm: VirtualModel) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The backend names a virtual model refers to (by key), and its own faults (`key`: what)."""
    faults: list[str] = []
    if isinstance(vm, CascadeModel):
        if not 0 <= vm.min_confidence <= 1:
            faults.append("min-confidence`: must be between 0 and 1")
        return [("second-opinion", [vm.second_opinion] if vm.second_opinion else [])], faults
    if isinstance(vm, EscalateModel):
        fields: list[tuple[str, list[str]]] = [("validator-weights", list(vm.validator_weights))]
        if not vm.rungs:
            faults.append("rungs`: needs at least one rung")
        elif not vm.rungs[0].validators:
            faults.append("rungs[0].validators`: the first rung needs validators (later ones inherit them)")
        for i, r in enumerate(vm.rungs):
            fields += [(f"rungs[{i}].coder", [r.coder]), (f"rungs[{i}].validators", r.validators or []),
                       (f"rungs[{i}].partners", r.partners or [])]
            if r.attempts < 1:
                faults.append(f"rungs[{i}].attempts`: must be >= 1")
        if not 0 <= vm.pass_score <= 10:
            faults.append("pass-score`: must be between 0 and 10")
        if vm.max_iterations < 1:
            faults.append("max-iterations`: must be >= 1")
        if vm.cloud_budget_usd is not None and vm.cloud_budget_usd < 0:
            faults.append("cloud-budget-usd`: must be >= 0")
        return fields, faults
    if not vm.members:
        faults.append("members`: needs at least one backend")
    fields = [("members", vm.members)]
    if isinstance(vm, SingleModel):
        fields.append(("fallbacks", vm.fallbacks))
        return fields, faults
    fields.append(("weights", [backend_of(w) for w in vm.weights]))
    if not 0.0 < vm.similarity <= 1.0:
        faults.append("similarity`: must be in (0, 1]")
    if isinstance(vm, ThinkingModel):
        need = {"duo-debate": 2, "trio-consensus": 3, "debate": 2}.get(vm.thinking, 1)
        if len(vm.members) < need:
            faults.append(f"members`: {vm.thinking} needs at least {need} members")
        if vm.rounds < 1:
            faults.append("rounds`: must be >= 1")
        return fields, faults
    if vm.chairman is not None:
        fields.append(("chairman", [vm.chairman]))
    if vm.judge is not None:
        fields.append(("judge", [vm.judge]))
    if vm.similarity_backend is not None:
        fields.append(("similarity-backend", [vm.similarity_backend]))
    if not 0.0 < vm.embedding_similarity <= 1.0:
        faults.append("embedding-similarity`: must be in (0, 1]")
    if vm.sample_temperature is not None and not 0 <= vm.sample_temperature <= 2:
        faults.append("sample-temperature`: must be between 0 and 2")
    if vm.tie_break == "chairman" and vm.chairman is None:
        faults.append("chairman`: tie-break = \"chairman\" needs a chairman")
    if vm.merge == "synthesize" and vm.chairman is None:
        faults.append("chairman`: merge = \"synthesize\" needs a chairman")
    if not 1 <= vm.min_answers:
        faults.append("min-answers`: must be >= 1")
    if vm.confident_first is not None and not 0.0 < vm.confident_first <= 1.0:
        faults.append("confident-first`: must be in (0, 1]")
    if vm.confident_first is not None and vm.samples != "adaptive":
        faults.append("confident-first`: needs samples = \"adaptive\"")
    return fields, faults


def parse(text: str, source: str = "<string>") -> Config:
    """Parse and validate TOML text; errors name `source` and the offending key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        cfg = _convert(raw)
        _check_refs(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    cfg.source = source
    return cfg


def default_store_path(environ: dict[str, str]) -> Path:
    base = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                        ".local", "share")
    return Path(base) / "shenron" / "shenron.db"


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from None
    cfg = parse(text, str(p))
    if cfg.store.path is not None:  # relative to the file, so every command finds the same store from anywhere
        cfg.store.path = str((p.resolve().parent / os.path.expanduser(cfg.store.path)).resolve())
    return cfg


def store_path(cfg: Config, environ: dict[str, str] | None = None) -> Path:
    return Path(cfg.store.path) if cfg.store.path else default_store_path(dict(environ or os.environ))


def private_paths(cfg: Config) -> tuple[Path, ...]:
    """Files no generated code may see: the SQLite store (and its WAL) and the config file. The ledger's
    spool files lie beside the store, so a directory that holds them holds it too and is refused."""
    db = store_path(cfg).resolve()
    out = [db, db.with_name(db.name + "-wal")]
    if cfg.source and Path(cfg.source).is_file():
        out.append(Path(cfg.source).resolve())
    return tuple(out)


def find(explicit: str | None, environ: dict[str, str], cwd: Path) -> Path | None:
    """The config file to use: --config, then $SHENRON_CONFIG, then ./shenron.toml."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    candidate = cwd / DEFAULT_FILE
    return candidate if candidate.is_file() else None
