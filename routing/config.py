"""Shenron's configuration: TOML with kebab-case keys, every type a msgspec Struct.

Unknown keys are errors so that a typo never silently changes routing. `load`
returns a `Config` or raises `ConfigError` naming the file, the key and the fault.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

CONFIG_ENV = "SHENRON_CONFIG"
DEFAULT_FILE = "shenron.toml"


class ConfigError(Exception):
    """A config that cannot be used; the message is meant for a person."""


class _Base(msgspec.Struct, rename="kebab", forbid_unknown_fields=True, omit_defaults=True):
    pass


class ServerConfig(_Base):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_mb: float = 32.0
    """Largest request body accepted; larger ones get a 413."""
    server: Literal["uvicorn", "granian"] = "uvicorn"
    """ASGI server that `shenron serve` runs (see BENCHMARKS.md for why uvicorn)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    models_refresh_s: float = 60.0
    """How often the served-model lists of backends are refreshed in the background."""


class BackendConfig(_Base):
    url: str
    """OpenAI-compatible base URL, ending in /v1 for most servers."""
    model: str
    """Upstream model id sent in the request body."""
    kind: Literal["openai"] = "openai"
    api_key_env: str | None = None
    weight: float = 1.0
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    headers: dict[str, str] = {}


class SingleModel(_Base, tag="single", tag_field="strategy"):
    """ultra-instinct: one member, then fallbacks while nothing has been sent."""

    members: list[str]
    fallbacks: list[str] = []
    description: str = ""


class CouncilModel(_Base, tag="council", tag_field="strategy"):
    """agent-lite / full-council: every member at once, merged by weighted vote."""

    members: list[str]
    weights: dict[str, float] = {}
    timeout_s: float = 60.0
    min_answers: int = 2
    merge: Literal["vote", "synthesize"] = "vote"
    chairman: str | None = None
    similarity: float = 0.8
    """Lexical similarity (0..1) at which two free-text answers join one cluster."""
    early_decision: bool = True
    heartbeat_s: float = 5.0
    description: str = ""


VirtualModel = SingleModel | CouncilModel


class Config(_Base):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    backends: dict[str, BackendConfig] = {}
    models: dict[str, VirtualModel] = {}
    source: str | None = None
    """Where this config came from (a path, or a note about discovery); not read from TOML."""


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
        what += " (expected one of: single, council)"
    return f"key `{key}`: {what}"


def _convert(raw: dict[str, object]) -> Config:
    """Convert section by section so that an error names the table entry (msgspec says `[...]`)."""
    sections = {"server", "backends", "models"}
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
    backends = {k: conv(v, BackendConfig, f"backends.{k}") for k, v in table("backends").items()}
    models = {k: conv(v, VirtualModel, f"models.{k}") for k, v in table("models").items()}
    return Config(server=server, backends=backends, models=models)


def _check_refs(cfg: Config) -> None:
    problems: list[str] = []
    known = sorted(cfg.backends)
    for name, b in cfg.backends.items():
        if not b.url.startswith(("http://", "https://")):
            problems.append(f"key `backends.{name}.url`: must start with http:// or https://, got {b.url!r}")
        if b.timeout_s <= 0:
            problems.append(f"key `backends.{name}.timeout-s`: must be > 0")
    for name, vm in cfg.models.items():
        if name in cfg.backends:
            problems.append(f"key `models.{name}`: a backend has the same name; names must be unique")
        if not vm.members:
            problems.append(f"key `models.{name}.members`: needs at least one backend")
        fields = [("members", vm.members)]
        if isinstance(vm, SingleModel):
            fields.append(("fallbacks", vm.fallbacks))
        else:
            fields.append(("weights", list(vm.weights)))
            if vm.chairman is not None:
                fields.append(("chairman", [vm.chairman]))
            if vm.merge == "synthesize" and vm.chairman is None:
                problems.append(f"key `models.{name}.chairman`: merge = \"synthesize\" needs a chairman")
            if not 1 <= vm.min_answers:
                problems.append(f"key `models.{name}.min-answers`: must be >= 1")
            if not 0.0 < vm.similarity <= 1.0:
                problems.append(f"key `models.{name}.similarity`: must be in (0, 1]")
        for key, names in fields:
            for member in names:
                if member not in cfg.backends:
                    problems.append(
                        f"key `models.{name}.{key}`: unknown backend {member!r} (known: {', '.join(known) or 'none'})"
                    )
    if problems:
        raise ConfigError("\n  ".join(problems))


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


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from None
    return parse(text, str(p))


def find(explicit: str | None, environ: dict[str, str], cwd: Path) -> Path | None:
    """The config file to use: --config, then $SHENRON_CONFIG, then ./shenron.toml."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    candidate = cwd / DEFAULT_FILE
    return candidate if candidate.is_file() else None
