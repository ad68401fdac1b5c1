"""Compile checks for generated code: a subprocess in a fresh temp directory, never the code itself.

Each language has a check command (`python` is built in; `node --check`, `tsc --noEmit`,
`go vet`, `cargo check` and `dotnet build` are used when on PATH; `[checks.LANG]` adds or
replaces entries). The command runs:

- inside bubblewrap (`bwrap`, Debian's `bubblewrap`): the process sees its own temporary directory
  (writable, deleted afterwards, HOME points into it), the system's /usr and the toolchain's own
  installation directory (read-only; never a home directory or one that holds credentials, the
  store or the config: such a toolchain is refused, see `toolchain`), a /proc of its own PID
  namespace, and nothing else of the host: no other paths (so `include_str!("/etc/...")`, `#[path]`
  or `//go:embed` of a host file find nothing), no network,
  no other processes (so no `/proc/<proxy>/environ`);
- as a user of its own (UIDS) when the proxy runs as root, so process limits are per check, with an
  allowlisted environment (PATH, locale, a fresh CARGO_HOME), never the proxy's secrets;
- under resource limits (address space, CPU seconds, file size, processes, no core dumps) set by a
  tiny launcher before it execs the command, and killed with its whole process group (and so its
  PID namespace) at the deadline.

Where bubblewrap cannot run, every check but Python's built-in one (which compiles its one file and
looks imports up without executing or reading anything else) is refused and reported as not
checked, never run unisolated; so is `run`. Generated code is only executed when a language's
config sets `run` (opt-in, for tests).
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

from routing.models import CheckConfig
from routing.toolchains import Toolchain, toolchain

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
mem, cpu, fsize, nproc, uid = (int(v) for v in sys.argv[1:6])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if nproc:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
if os.geteuid() == 0 and nproc:  # root ignores RLIMIT_NPROC: become this check's own user (a fork bomb stops)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
try:
    os.execvp(sys.argv[7], sys.argv[7:])
except OSError as e:
    print(f"cannot start {sys.argv[7]!r}: {e.strerror}", file=sys.stderr)
    sys.exit(127)
"""
"""Sets the limits in the child and execs the check: no `preexec_fn`, which is unsafe with threads."""

FILE_LIMIT = 64 * 1024 * 1024
PROCESS_LIMIT = 256
"""Processes the check's user may have at once (toolchains fork a few dozen; a fork bomb stops here)."""
UIDS = range(200_000, 265_536)
"""The users checks run as when the proxy is root (`[sandbox] uids` sets them), one per check at a time:
RLIMIT_NPROC counts a user's processes, so one tenant's fork bomb must not count against another's check
(under one shared user, `nobody`, it did). No account needs to exist for them."""
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
    isolation: str = "none"
    """`bubblewrap`, or `none` (only Python's built-in check runs so)."""


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
def bubblewrap() -> str | None:
    """The bwrap binary when it can build a sandbox here (namespaces allowed), else None."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    try:
        probe = subprocess.run([bwrap, *_mounts(), "--unshare-all", "--die-with-parent", "/usr/bin/true"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bwrap if probe.returncode == 0 else None


def isolation() -> str:
    """What `shenron check` says of the sandbox."""
    if bubblewrap() is not None:
        return "bubblewrap: own temp dir, read-only toolchain, no network, no host paths or processes"
    return ("NONE: bubblewrap is missing or cannot run here, so only Python's built-in check runs; install "
            "Debian's `bubblewrap` for the others")


def _mounts() -> list[str]:
    """The system a check may read: /usr (and the merged-/usr links), loader and alternatives."""
    out = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "lib", "lib64", "sbin", "lib32"):
        path = Path("/" + top)
        if path.is_symlink():
            out += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            out += ["--ro-bind", str(path), str(path)]
    out += ["--perms", "0755", "--dir", "/etc"]  # else bwrap makes it 0700, and `nobody` reads nothing below
    for extra in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                  "/etc/ssl", "/etc/localtime"):  # node reads /etc/ssl/openssl.cnf; private/ is root-only
        out += ["--ro-bind-try", extra, extra]
    return [*out, "--proc", "/proc", "--dev", "/dev"]


def _binds(read_only: list[Path], writable: Path) -> list[str]:
    """Binds at the same paths, their parent directories created first as 0755 (bwrap would make
    them 0700 root, which `nobody` cannot pass through)."""
    parents = sorted({a for p in [*read_only, writable] for a in p.parents if a != Path("/")},
                     key=lambda a: len(a.parts))
    out: list[str] = []
    for a in parents:
        out += ["--perms", "0755", "--dir", str(a)]
    for p in read_only:
        out += ["--ro-bind-try", str(p), str(p)]
    return [*out, "--bind", str(writable), str(writable)]


def _env(home: str, tool: Toolchain) -> dict[str, str]:
    """An allowlist: nothing of the proxy's environment but its locale, and a PATH of the toolchain's own
    directories; CARGO_HOME a fresh directory (the real one holds `credentials.toml`), no RUSTUP_HOME."""
    binary = Path(tool.program)
    path = [str(binary.parent)] + [str(r / "bin") for r in tool.binds if (r / "bin").is_dir()]
    env = {"PATH": ":".join(dict.fromkeys([*path, "/usr/local/bin", "/usr/bin", "/bin"])), "HOME": home,
           "LANG": "C.UTF-8", "TMPDIR": home, "NO_COLOR": "1", "DOTNET_CLI_TELEMETRY_OPTOUT": "1",
           "GOFLAGS": "-mod=mod", "GOPROXY": "off", "CARGO_HOME": os.path.join(home, ".cargo"),
           "GOPATH": os.path.join(home, "go"), "GOCACHE": os.path.join(home, ".cache", "go-build")}
    for var in ("GOROOT", "DOTNET_ROOT"):
        value = os.environ.get(var)
        if value and Path(value).resolve() in tool.binds:
            env[var] = value
    return env


def _argv(template: list[str], file: Path, tmp: Path, tool: Toolchain) -> list[str]:
    subs = {"{python}": sys.executable, "{file}": str(file), "{dir}": str(tmp)}
    out = [tool.program if template[0] != "{python}" else sys.executable]
    for arg in template[1:]:
        for k, v in subs.items():
            arg = arg.replace(k, v)
        out.append(arg)
    return out


def _launcher(cfg: CheckConfig, argv: list[str], tmp: Path, tool: Toolchain, isolated: bool, uid: int) -> list[str]:
    limits = [sys.executable, "-I", "-S", "-c", _LIMITS, str(cfg.memory_mb * 1024 * 1024),
              str(int(cfg.timeout_s) + 1), str(FILE_LIMIT), str(PROCESS_LIMIT if isolated else 0), str(uid), "--",
              *argv]
    bwrap = bubblewrap()
    if not isolated or bwrap is None:
        return limits
    return [bwrap, *_mounts(), *_binds(list(tool.binds), tmp), "--chdir", str(tmp),
            "--unshare-ipc", "--unshare-pid", "--unshare-net",
            "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--", *limits]


def _hand_over(tmp: Path, uid: int) -> None:
    """The temp dir belongs to the check's own user, who runs the check when the proxy is root."""
    if os.geteuid() != 0:
        return
    for path in (tmp, *tmp.rglob("*")):
        os.chown(path, uid, uid, follow_symlinks=False)


_busy: set[int] = set()
"""The check users this process has handed out and not yet taken back."""
_next = [os.getpid() * 7919]


def _user(uids: range) -> int:
    """A user of `uids` that no other check of this process runs as (another process starts elsewhere in
    the range, from its pid)."""
    for _ in range(len(uids)):
        _next[0] += 1
        uid = uids[_next[0] % len(uids)]
        if uid not in _busy:
            _busy.add(uid)
            return uid
    raise RuntimeError("every check user is busy")


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


async def check(code: str, lang: str | None, checks: Mapping[str, CheckConfig] | None = None,
                private_paths: tuple[Path, ...] = (), uids: range = UIDS) -> CheckResult:
    """Check `code` as language `lang` without running it (unless that language opts in to `run`).
    `private_paths`: files no check may see besides each home's credentials (the store, the config);
    `uids`: the users checks run as when the proxy is root."""
    uid = _user(uids)
    try:
        return await _check(code, lang, checks, private_paths, uid)
    finally:
        _busy.discard(uid)


async def _check(code: str, lang: str | None, checks: Mapping[str, CheckConfig] | None,
                 private_paths: tuple[Path, ...], uid: int) -> CheckResult:
    known = table(checks)
    lang = language(lang, known)
    cfg = known.get(lang) if lang else None
    if cfg is None:
        return CheckResult(lang, None, f"no check configured for language {lang!r}" if lang
                           else "language unknown: not checked")
    program = cfg.command[0]
    if program != "{python}" and shutil.which(program) is None:
        return CheckResult(lang, None, f"not checked: `{program}` is not installed here")
    tool = toolchain(program, extra_private=private_paths)
    if tool.refused is not None:
        return CheckResult(lang, None, f"not checked: {tool.refused}")
    isolated = bubblewrap() is not None
    if not isolated and (program != "{python}" or cfg.command != BUILTIN["python"].command or cfg.run):
        return CheckResult(lang, None, f"not checked: `{program}` would run without isolation (bubblewrap is "
                                       "missing or cannot run here), and only Python's built-in check may")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shenron-check-") as tmp_name:
        tmp = Path(tmp_name)
        for rel, content in cfg.files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(content, encoding="utf-8")
        file = tmp / cfg.file
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(code, encoding="utf-8")
        if isolated:
            _hand_over(tmp, uid)
        env = _env(tmp_name, tool)
        how = "bubblewrap" if isolated else "none"

        def launch(template: list[str]) -> list[str]:
            t = tool if template[0] == program else toolchain(template[0], extra_private=private_paths)
            if t.refused is not None:  # a `run` command's own program: the same rules
                return [sys.executable, "-I", "-S", "-c", f"import sys; sys.exit({('not run: ' + t.refused)!r})"]
            return _launcher(cfg, _argv(template, file, tmp, t), tmp, t, isolated, uid)

        status, output = await _run(launch(cfg.command), tmp, env, cfg.timeout_s)
        if status is None:
            return CheckResult(lang, False, _trim(f"{output}\ncheck timed out after {cfg.timeout_s:g}s and was killed"),
                               time.perf_counter() - start, timed_out=True, network_isolated=isolated,
                               isolation=how)
        ok = status == 0
        ran = False
        if ok and cfg.run:
            ran = True
            run_status, run_out = await _run(launch(cfg.run), tmp, env, cfg.timeout_s)
            if run_status is None:
                return CheckResult(lang, False, _trim(f"{output}\n{run_out}\ntests timed out after "
                                                      f"{cfg.timeout_s:g}s and were killed"),
                                   time.perf_counter() - start, timed_out=True, ran_code=True,
                                   network_isolated=isolated, isolation=how)
            ok = run_status == 0
            output = f"{output}\n{run_out}".strip()
        if not ok and not output.strip():
            output = f"`{program}` exited with status {status}"
    return CheckResult(lang, ok, _trim(output), time.perf_counter() - start, ran_code=ran,
                       network_isolated=isolated, isolation=how)
