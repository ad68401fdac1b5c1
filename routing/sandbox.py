"""Compile checks for generated code: a subprocess in a fresh temp directory, never the code itself.

Each language has a check command (`python` is built in; `node --check`, `tsc --noEmit`,
`go vet`, `cargo check` and `dotnet build` are used when on PATH; `[checks.LANG]` adds or
replaces entries). The command runs:

- in a new temporary directory that is deleted afterwards, with HOME pointing into it;
- with a small environment (PATH, locale, the toolchain homes), not the proxy's secrets;
- under resource limits (address space, CPU seconds, file size, no core dumps) set by a tiny
  launcher before it execs the command, and killed with its whole process group at the deadline;
- without network, inside a new network namespace (`unshare -rn`) where the platform allows it;
  `CheckResult.network_isolated` says whether it did.

Generated code is only executed when a language's config sets `run` (opt-in, for tests).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from routing.config import CheckConfig

OUTPUT_LIMIT = 4000
"""Characters of check output kept (for the next attempt's prompt); the metadata trims further."""

_PY_CHECK = r"""
import ast, importlib.util, sys
path = sys.argv[1]
src = open(path, encoding="utf-8").read()
try:
    tree = compile(src, "main.py", "exec", ast.PyCF_ONLY_AST)
    compile(tree, "main.py", "exec")
except SyntaxError as e:
    print(f"main.py:{e.lineno}:{e.offset}: {type(e).__name__}: {e.msg}", file=sys.stderr)
    if e.text:
        print("    " + e.text.rstrip(), file=sys.stderr)
    sys.exit(1)
except (ValueError, RecursionError, MemoryError) as e:
    print(f"main.py: cannot compile: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
missing = []
for node in ast.walk(tree):
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    else:
        continue
    for name in names:
        top = name.split(".")[0]
        if top not in missing and importlib.util.find_spec(top) is None:
            missing.append(top)
for name in missing:
    print(f"warning: module {name!r} is not installed where this was checked (the code was not run)")
"""

_LIMITS = r"""
import os, resource, sys
mem, cpu, fsize = (int(v) for v in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
try:
    os.execvp(sys.argv[5], sys.argv[5:])
except OSError as e:
    print(f"cannot start {sys.argv[5]!r}: {e.strerror}", file=sys.stderr)
    sys.exit(127)
"""
"""Sets the limits in the child and execs the check: no `preexec_fn`, which is unsafe with threads."""

FILE_LIMIT = 64 * 1024 * 1024

BUILTIN: dict[str, CheckConfig] = {
    "python": CheckConfig(command=["{python}", "-I", "-B", "-c", _PY_CHECK, "{file}"], file="main.py",
                          aliases=["py", "python3"], timeout_s=10),
    "javascript": CheckConfig(command=["node", "--check", "{file}"], file="main.js",
                              aliases=["js", "node", "nodejs", "mjs"], timeout_s=10, memory_mb=8192),
    "typescript": CheckConfig(command=["tsc", "--noEmit", "--pretty", "false", "{file}"], file="main.ts",
                              aliases=["ts"], memory_mb=8192),
    "go": CheckConfig(command=["go", "vet", "./..."], file="main.go", files={"go.mod": "module check\n\ngo 1.21\n"},
                      aliases=["golang"], timeout_s=60, memory_mb=8192),
    "rust": CheckConfig(command=["cargo", "check", "--offline", "--quiet"], file="src/lib.rs",
                        files={"Cargo.toml": '[package]\nname = "check"\nversion = "0.0.0"\nedition = "2021"\n'},
                        aliases=["rs"], timeout_s=120, memory_mb=8192),
    "csharp": CheckConfig(command=["dotnet", "build", "-nologo", "-v", "q"], file="Program.cs",
                          files={"check.csproj": '<Project Sdk="Microsoft.NET.Sdk"><PropertyGroup>'
                                 "<OutputType>Library</OutputType><TargetFramework>net8.0</TargetFramework>"
                                 "</PropertyGroup></Project>\n"},
                          aliases=["cs", "c#"], timeout_s=120, memory_mb=8192),
}


@dataclass(frozen=True)
class CheckResult:
    language: str | None
    ok: bool | None
    """True: it compiles; False: it does not (or timed out); None: no check for this language here."""
    output: str
    seconds: float = 0.0
    timed_out: bool = False
    ran_code: bool = False
    """True only when the language's config opted in to `run`."""
    network_isolated: bool = False


def table(overrides: Mapping[str, CheckConfig] | None = None) -> dict[str, CheckConfig]:
    return {**BUILTIN, **(overrides or {})}


def language(name: str | None, checks: Mapping[str, CheckConfig]) -> str | None:
    """The table's name for a fence tag or request option (`py` is `python`); unknown names stay as given."""
    if not name:
        return None
    n = name.strip().lower()
    if n in checks:
        return n
    for lang, c in checks.items():
        if n in (a.lower() for a in c.aliases):
            return lang
    return n


@cache
def can_isolate_network() -> bool:
    """Whether `unshare -rn` works here (Linux with user namespaces, as in most containers run as root)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _env(home: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8", "TMPDIR": home,
           "NO_COLOR": "1", "DOTNET_CLI_TELEMETRY_OPTOUT": "1", "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
    real_home = os.path.expanduser("~")
    for var, default in (("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo"), ("GOPATH", "go"),
                         ("GOCACHE", ".cache/go-build"), ("DOTNET_ROOT", ".dotnet")):
        value = os.environ.get(var) or os.path.join(real_home, default)
        if os.path.exists(value):
            env[var] = value
    return env


def _argv(template: list[str], file: Path, tmp: Path) -> list[str]:
    subs = {"{python}": sys.executable, "{file}": str(file), "{dir}": str(tmp)}
    out = []
    for arg in template:
        for k, v in subs.items():
            arg = arg.replace(k, v)
        out.append(arg)
    return out


def _launcher(cfg: CheckConfig, argv: list[str], isolate: bool) -> list[str]:
    limits = [sys.executable, "-I", "-S", "-c", _LIMITS, str(cfg.memory_mb * 1024 * 1024),
              str(int(cfg.timeout_s) + 1), str(FILE_LIMIT), "--", *argv]
    return ["unshare", "-rn", *limits] if isolate else limits


async def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> tuple[int | None, str]:
    """Exit status (None on timeout) and the combined output, the temp path shown as `.`."""
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                start_new_session=True)
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        return None, ""
    except asyncio.CancelledError:  # the request went away: the check goes too
        _kill(proc)
        raise
    text = out.decode("utf-8", "replace").replace(str(cwd) + os.sep, "").replace(str(cwd), ".")
    return proc.returncode, text


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _trim(text: str, limit: int = OUTPUT_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 20] + "\n… (output trimmed)"


async def check(code: str, lang: str | None, checks: Mapping[str, CheckConfig] | None = None) -> CheckResult:
    """Check `code` as language `lang` without running it (unless that language opts in to `run`)."""
    known = table(checks)
    lang = language(lang, known)
    cfg = known.get(lang) if lang else None
    if cfg is None:
        return CheckResult(lang, None, f"no check configured for language {lang!r}" if lang
                           else "language unknown: not checked")
    program = cfg.command[0]
    if program != "{python}" and shutil.which(program) is None:
        return CheckResult(lang, None, f"not checked: `{program}` is not installed here")
    isolate = can_isolate_network()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shenron-check-") as tmp_name:
        tmp = Path(tmp_name)
        for rel, content in cfg.files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(content, encoding="utf-8")
        file = tmp / cfg.file
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(code, encoding="utf-8")
        env = _env(tmp_name)
        status, output = await _run(_launcher(cfg, _argv(cfg.command, file, tmp), isolate), tmp, env, cfg.timeout_s)
        if status is None:
            return CheckResult(lang, False, _trim(f"{output}\ncheck timed out after {cfg.timeout_s:g}s and was killed"),
                               time.perf_counter() - start, timed_out=True, network_isolated=isolate)
        ok = status == 0
        ran = False
        if ok and cfg.run:
            ran = True
            run_status, run_out = await _run(_launcher(cfg, _argv(cfg.run, file, tmp), isolate), tmp, env,
                                             cfg.timeout_s)
            if run_status is None:
                return CheckResult(lang, False, _trim(f"{output}\n{run_out}\ntests timed out after "
                                                      f"{cfg.timeout_s:g}s and were killed"),
                                   time.perf_counter() - start, timed_out=True, ran_code=True,
                                   network_isolated=isolate)
            ok = run_status == 0
            output = f"{output}\n{run_out}".strip()
        if not ok and not output.strip():
            output = f"`{program}` exited with status {status}"
    return CheckResult(lang, ok, _trim(output), time.perf_counter() - start, ran_code=ran, network_isolated=isolate)
