"""Which host directories a code check may see: a toolchain's own installation, never anything private.

`routing/sandbox.py` binds what `toolchain` returns read-only into its bubblewrap sandbox. The rule: the
Python that runs the launcher and the program's own installation directory (through symlinks and
rustup's proxies), never a home directory, nor a directory that holds an account's credentials, the
store or the config; a toolchain that would need one is refused, with how to install it elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS = (".ssh", ".aws", ".azure", ".config", ".docker", ".gnupg", ".kube", ".netrc", ".npmrc", ".pypirc",
               ".git-credentials", ".cargo", ".m2", ".gradle", ".nuget", ".local/share/shenron")
"""Under a home directory: what holds credentials, keys or Shenron's own store. A directory holding one
of them is never bound into a check, so a toolchain installed there is refused."""

def homes() -> set[Path]:
    """People's home directories here: HOME, root's, /home/*, and every account's with uid 0 or >= 1000."""
    out = {Path(os.path.expanduser("~")), Path("/root")}
    try:
        out |= {Path(e.pw_dir) for e in pwd.getpwall() if e.pw_uid == 0 or 1000 <= e.pw_uid < 65534}
    except OSError:
        pass
    with contextlib.suppress(OSError):
        out |= {p for p in Path("/home").iterdir() if p.is_dir()}
    return {p for p in out if str(p) not in ("", "/")}


def private(extra: tuple[Path, ...] = ()) -> list[Path]:
    """What no check may see: each home's credentials (CREDENTIALS), the default store, and `extra` (the
    store and config files of this proxy, as `shenron check` and the strategies pass them)."""
    data = Path(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")) / "shenron"
    return [*(h / c for h in homes() for c in CREDENTIALS), data, *extra]


def refusal(root: Path, secret: list[Path], people: set[Path]) -> str | None:
    """Why `root` may not be bound into a check, or None."""
    for home in people:
        if home == root or home.is_relative_to(root):
            return f"{root} is (or holds) the home directory {home}"
    for p in secret:
        if p == root or p.is_relative_to(root):
            return f"{root} holds {p}"
    return None


def _installed(program: str, env: Mapping[str, str]) -> Path | None:
    """The program's own binary: through symlinks, and through rustup's proxies (`~/.cargo/bin/cargo` is
    rustup itself, which needs all of `~/.cargo` and `~/.rustup`; the toolchain's cargo needs only its own
    directory)."""
    where = shutil.which(program, path=env.get("PATH"))
    if where is None:
        return None
    real = Path(where).resolve()
    if real.name.startswith("rustup"):
        found = _rustup_which(str(real), program, env.get("RUSTUP_HOME"), env.get("RUSTUP_TOOLCHAIN"), os.getcwd())
        return Path(found) if found else None
    return real


@functools.lru_cache(maxsize=64)
def _rustup_which(rustup: str, program: str, home: str | None, pinned: str | None, cwd: str) -> str | None:
    """`rustup which PROGRAM`, asked once per process for what decides its answer (a subprocess per code
    check otherwise; a toolchain installed or switched later means a restart, as for PATH)."""
    env = {**os.environ, **({"RUSTUP_HOME": home} if home else {}), **({"RUSTUP_TOOLCHAIN": pinned} if pinned else {})}
    try:
        out = subprocess.run([rustup, "which", program], capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = out.stdout.strip()
    return str(Path(found).resolve()) if out.returncode == 0 and found else None


def installation(binary: Path) -> Path:
    """A binary's installation directory: `<prefix>` for `<prefix>/bin/x`, else the binary's own directory
    (`~/.dotnet/dotnet` is installed in `~/.dotnet`)."""
    return binary.parent.parent if binary.parent.name == "bin" else binary.parent


@dataclass(frozen=True)
class Toolchain:
    """What a check's program needs: the binary to run, the directories bound read-only, or why not."""

    program: str
    binds: tuple[Path, ...] = ()
    refused: str | None = None


def toolchain(program: str, env: Mapping[str, str] | None = None, extra_private: tuple[Path, ...] = ()) -> Toolchain:
    """The binds for `program`, from an explicit list: the Python that runs the launcher, the program's own
    installation directory, and GOROOT or DOTNET_ROOT where set; never a home directory or a directory
    that holds credentials, the store or the config (`refused` then says so, and how to do better)."""
    env = env if env is not None else os.environ
    people, secret = homes(), private(extra_private)
    wanted: dict[Path, str] = {Path(sys.base_prefix).resolve(): "python", Path(sys.prefix).resolve(): "python"}
    binary = Path(sys.executable) if program == "{python}" else _installed(program, env)
    if binary is None:
        return Toolchain(program, refused=f"`{program}` is not installed here")
    wanted.setdefault(installation(binary), program)
    for var in ("GOROOT", "DOTNET_ROOT"):
        if env.get(var) and program in ("go", "dotnet"):
            wanted.setdefault(Path(env[var]).resolve(), var)
    roots = sorted(r for r in wanted if not r.is_relative_to("/usr") and r != Path("/"))
    for r in roots:
        why = refusal(r, secret, people)
        if why is not None:
            return Toolchain(str(binary), tuple(roots), refused=(
                f"`{program}` ({wanted[r]}) would need {why}; install it where nothing private lives (under "
                f"/opt or /usr/local, e.g. a toolchain's own directory) or give its full path in [checks]"))
    return Toolchain(str(binary), tuple(roots))
