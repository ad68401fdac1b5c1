"""The compile-check sandbox: real subprocesses, hostile code, and proof that nothing generated runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from routing import sandbox
from routing.models import CheckConfig


class Listener:
    """A TCP server on loopback that counts the connections it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> object:
    lst = Listener()
    yield lst
    lst.close()


def marker_code(marker: Path, tail: str = "") -> str:
    return f"open({str(marker)!r}, 'w').write('ran')\n{tail}"


async def test_valid_python_compiles_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = await sandbox.check(marker_code(marker, "def f(x):\n    return x + 1\n"), "python")
    assert result.ok is True and result.language == "python" and not result.ran_code
    assert not marker.exists(), "the check executed the generated code"


async def test_syntax_error_fails_with_the_line(tmp_path: Path) -> None:
    result = await sandbox.check("def f(x)\n    return x\n", "py")
    assert result.ok is False
    assert "main.py:1" in result.output and "SyntaxError" in result.output
    assert str(tmp_path) not in result.output


async def test_an_endless_loop_is_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    start = time.monotonic()
    result = await sandbox.check(marker_code(marker, "while True:\n    pass\n"), "python")
    assert result.ok is True and time.monotonic() - start < 8
    assert not marker.exists()


async def test_a_missing_module_is_reported_not_imported() -> None:
    result = await sandbox.check("import json\nimport surely_not_installed_xyz\nfrom os import path\n", "python")
    assert result.ok is True
    assert "surely_not_installed_xyz" in result.output and "json" not in result.output


async def test_code_that_opens_a_socket_never_connects(listener: Listener) -> None:
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {listener.port})).close()\n"
    result = await sandbox.check(code, "python")
    time.sleep(0.3)
    assert result.ok is True and listener.connections == 0


@pytest.mark.skipif(sandbox.bubblewrap() is None, reason="bubblewrap is not installed or cannot run here")
async def test_opted_in_tests_run_without_network(listener: Listener, tmp_path: Path) -> None:
    checks = {"python": CheckConfig(command=["{python}", "-c", "pass"], file="main.py", run=["{python}", "{file}"])}
    code = f"print('ran')\nimport socket\nsocket.create_connection(('127.0.0.1', {listener.port})).close()\n"
    result = await sandbox.check(code, "python", checks)
    time.sleep(0.3)
    assert result.ran_code and result.network_isolated and result.output.startswith("ran")
    assert listener.connections == 0
    assert result.ok is False and ("Network is unreachable" in result.output or "refused" in result.output)


async def test_opted_in_endless_loop_is_killed_at_the_time_limit() -> None:
    checks = {"python": CheckConfig(command=["{python}", "-c", "pass"], file="main.py", run=["{python}", "{file}"],
                                    timeout_s=1.5)}
    start = time.monotonic()
    result = await sandbox.check("while True:\n    pass\n", "python", checks)
    assert result.ok is False and result.timed_out and result.ran_code
    assert "timed out" in result.output and time.monotonic() - start < 10


async def test_a_hanging_checker_is_killed() -> None:
    checks = {"slow": CheckConfig(command=["{python}", "-c", "import time; time.sleep(60)"], file="x", timeout_s=1)}
    start = time.monotonic()
    result = await sandbox.check("anything", "slow", checks)
    assert result.ok is False and result.timed_out and time.monotonic() - start < 10


async def test_memory_is_limited() -> None:
    checks = {"python": CheckConfig(command=["{python}", "-c", "pass"], file="main.py", run=["{python}", "{file}"],
                                    memory_mb=256)}
    result = await sandbox.check("x = bytearray(2 * 1024 ** 3)\n", "python", checks)
    assert result.ok is False and "MemoryError" in result.output


async def test_unknown_language_and_missing_tool_are_not_checked() -> None:
    result = await sandbox.check("whatever", "cobol")
    assert result.ok is None and "cobol" in result.output
    checks = {"zig": CheckConfig(command=["surely-not-a-compiler-xyz", "{file}"], file="main.zig")}
    result = await sandbox.check("const x = 1;", "zig", checks)
    assert result.ok is None and "not installed" in result.output


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_javascript_uses_node_check(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    good = f"require('fs').writeFileSync({str(marker)!r}, 'ran');\nfunction f(a) {{ return a + 1; }}\n"
    assert (await sandbox.check(good, "js")).ok is True
    assert not marker.exists()
    bad = await sandbox.check("function f(a { return a; }\n", "javascript")
    assert bad.ok is False and "SyntaxError" in bad.output


def test_language_names_resolve_through_aliases() -> None:
    table = sandbox.table()
    assert sandbox.language("py", table) == "python"
    assert sandbox.language("TS", table) == "typescript"
    assert sandbox.language("rs", table) == "rust"
    assert sandbox.language(None, table) is None


RUN = {"python": CheckConfig(command=["{python}", "-c", "pass"], file="main.py", run=["{python}", "{file}"],
                             timeout_s=5)}
needs_bwrap = pytest.mark.skipif(sandbox.bubblewrap() is None,
                                 reason="bubblewrap is not installed or cannot run here (.ci/run installs it)")


@needs_bwrap
async def test_generated_code_writes_nothing_outside_its_temp_dir(tmp_path: Path) -> None:
    escape = tmp_path / "escaped"
    code = (f"import os\nfor p in ({str(escape)!r}, '/tmp/shenron-escaped', '/usr/escaped'):\n"
            "    try:\n        open(p, 'w').write('x')\n    except OSError as e:\n        print('refused', p)\n"
            "open('inside.txt', 'w').write('fine')\nprint('inside ok')\n")
    result = await sandbox.check(code, "python", RUN)
    assert result.ok is True and "inside ok" in result.output and result.isolation == "bubblewrap"
    assert not escape.exists() and not Path("/tmp/shenron-escaped").exists() and not Path("/usr/escaped").exists()


@needs_bwrap
async def test_generated_code_reads_no_host_file_and_no_process_environment(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-cloud-" + "7" * 24
    monkeypatch.setenv("SHENRON_TEST_CLOUD_KEY", secret)  # what /proc/<proxy>/environ would hold
    (tmp_path / "ledger.db").write_text(secret)
    code = ("import glob, os\nfound = []\n"
            "for p in glob.glob('/proc/*/environ') + " + repr([str(tmp_path / "ledger.db"), "/etc/passwd"]) + ":\n"
            "    try:\n        found.append(open(p, 'rb').read().decode('latin-1'))\n"
            "    except OSError:\n        pass\n"
            f"print('SECRET' if any({secret!r} in f for f in found) else 'nothing', len(os.listdir('/proc')))\n")
    result = await sandbox.check(code, "python", RUN)
    assert result.ok is True and result.output.startswith("nothing")
    assert secret not in result.output


@needs_bwrap
async def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind() -> None:
    code = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            os.close(1)\n            os.close(2)\n            time.sleep(30)\n            os._exit(0)\n"
            "        n += 1\nexcept OSError:\n    print('stopped after', n)\n")
    start = time.monotonic()
    result = await sandbox.check(code, "python", RUN)
    assert not result.timed_out and time.monotonic() - start < 10
    assert int(result.output.split("stopped after")[1].split()[0]) < sandbox.PROCESS_LIMIT
    time.sleep(0.5)  # the sandbox's PID namespace went with it: none of the sleepers is left
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_main_py(p)]
    assert left == []


def _runs_main_py(p: Path) -> bool:
    """A process running a sandbox's generated `main.py` (its argv is `python /tmp/shenron-check-*/main.py`)."""
    try:
        argv = (p / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return len(argv) > 1 and b"shenron-check-" in argv[1] and argv[1].endswith(b"/main.py")


@needs_bwrap
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed here")
@pytest.mark.parametrize("trick", [
    'pub const X: &str = include_str!("{secret}");\ncompile_error!(include_str!("{secret}"));\n',
    '#[path = "{secret}"]\nmod leaked;\n',
])
async def test_rust_compiler_tricks_read_nothing_of_the_host(tmp_path: Path, trick: str) -> None:
    secret_file = tmp_path / "host-secret.rs"
    secret_file.write_text('compile_error!("HOST-SECRET-CONTENT-42");\n')
    result = await sandbox.check(trick.format(secret=secret_file), "rust")
    assert result.ok is False and result.isolation == "bubblewrap"
    assert "HOST-SECRET-CONTENT-42" not in result.output
    assert "couldn't read" in result.output or "No such file" in result.output or "not found" in result.output


async def test_without_isolation_only_python_s_own_check_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bubblewrap", lambda: None)
    rust = await sandbox.check("fn main() {}", "rust", {"rust": CheckConfig(command=["{python}", "-c", "pass"])})
    assert rust.ok is None and "without isolation" in rust.output
    opted_in = await sandbox.check("print(1)", "python", RUN)
    assert opted_in.ok is None and not opted_in.ran_code
    plain = await sandbox.check("def f():\n    return 1\n", "python")
    assert plain.ok is True and plain.isolation == "none"


def _tool(where: Path, script: str) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text("#!/bin/sh\n" + script)
    where.chmod(0o755)
    return where


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home directory with credentials and a default Shenron store in it."""
    h = tmp_path / "home"
    for rel in (".ssh/id_ed25519", ".cargo/credentials.toml", ".local/share/shenron/shenron.db"):
        (h / rel).parent.mkdir(parents=True, exist_ok=True)
        (h / rel).write_text("HOME-SECRET-" + rel)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return h


@needs_bwrap
@pytest.mark.parametrize(("layout", "refused"), [
    ("bin/cat-code", "home directory"),            # `tsc` in ~/bin: binding its prefix binds the home
    (".local/bin/cat-code", ".local/share/shenron"),  # `node` in ~/.local/bin: that prefix holds the store
    (".dotnet/cat-code", None),                    # `dotnet` in ~/.dotnet: only that directory is bound
])
async def test_a_toolchain_installed_under_a_home_directory_sees_nothing_of_it(
        home: Path, monkeypatch: pytest.MonkeyPatch, layout: str, refused: str | None) -> None:
    """The check program reads the file named in the generated code (as `include_str!` or `//go:embed` would)."""
    tool = _tool(home / layout, 'for f in $(cat "$1"); do cat "$f" 2>&1; done; exit 1\n')
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    checks = {"leaky": CheckConfig(command=["cat-code", "{file}"], file="main.txt", timeout_s=10)}
    secrets = [home / ".ssh/id_ed25519", home / ".cargo/credentials.toml", home / ".local/share/shenron/shenron.db"]
    result = await sandbox.check("\n".join(map(str, secrets)), "leaky", checks)
    assert "HOME-SECRET" not in result.output
    if refused is not None:
        assert result.ok is None and refused in result.output and "install it where nothing private" in result.output
    else:
        assert result.ok is False and result.output.count("No such file") == 3  # it ran, and found none of them
        assert sandbox.toolchain("cat-code").binds[-1:] != (home,)
        assert home / ".dotnet" in sandbox.toolchain("cat-code").binds


@needs_bwrap
async def test_a_toolchain_beside_the_store_or_the_config_is_refused(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _tool(tmp_path / "srv" / "bin" / "cat-code", 'cat "$1"\n')
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    checks = {"leaky": CheckConfig(command=["cat-code", "{file}"], file="main.txt", timeout_s=10)}
    result = await sandbox.check("x", "leaky", checks, (tmp_path / "srv" / "shenron.toml",))
    assert result.ok is None and "shenron.toml" in result.output


@needs_bwrap
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed here")
async def test_rust_reads_no_registry_token_through_cargo_home(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`cargo login` leaves a token in $CARGO_HOME/credentials.toml; the check gets a CARGO_HOME of its own."""
    cargo_home = tmp_path / "cargo-home"
    cargo_home.mkdir()
    (cargo_home / "credentials.toml").write_text('[registry]\ntoken = "cio-REGISTRY-TOKEN-42"\n')
    monkeypatch.setenv("CARGO_HOME", str(cargo_home))
    for code in ('compile_error!(include_str!(concat!(env!("CARGO_HOME"), "/credentials.toml")));\n',
                 f'compile_error!(include_str!("{cargo_home}/credentials.toml"));\n'):
        result = await sandbox.check(code, "rust")
        assert result.ok is False and "REGISTRY-TOKEN" not in result.output
    assert (await sandbox.check("pub fn f() -> u8 { 1 }\n", "rust")).ok is True  # the toolchain itself still works


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="per-check users need root (as a user every check shares its limits)")
async def test_one_tenant_s_fork_bomb_does_not_fail_another_tenant_s_check() -> None:
    bomb = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            time.sleep(8)\n            os._exit(0)\n        n += 1\nexcept OSError:\n"
            "    print('bomb held', n, flush=True)\n    time.sleep(6)\n")
    worker = ("import os\nkids = [os.fork() for _ in range(8)]\nif 0 in kids:\n    os._exit(0)\n"
              "for k in kids:\n    os.waitpid(k, 0)\nprint('forked', len(kids))\n")
    slow = {"python": CheckConfig(command=["{python}", "-c", "pass"], file="main.py", run=["{python}", "{file}"],
                                  timeout_s=15)}
    bombing = asyncio.ensure_future(sandbox.check(bomb, "python", slow))
    await asyncio.sleep(2)  # the bomb holds its user's whole process limit by now
    other = await sandbox.check(worker, "python", RUN)
    held = await bombing
    assert "bomb held" in held.output
    assert other.ok is True and "forked 8" in other.output, other.output


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="checks change user only when the proxy is root")
async def test_checks_run_as_users_of_the_configured_range_one_each() -> None:
    from routing import config
    from routing.strategies.escalate import Escalate

    cfg = config.parse('[backends.a]\nurl = "http://a.test/v1"\nmodel = "m"\n[sandbox]\nuids = [300000, 300002]\n'
                       '[models.code]\nstrategy = "escalate"\n'
                       'rungs = [{ coder = "a", attempts = 1, thinking = "solo", validators = ["a"] }]\n')
    model = cfg.models["code"]
    assert isinstance(model, config.EscalateModel)
    from types import SimpleNamespace

    backends = {"a": SimpleNamespace(cfg=SimpleNamespace(weight=1.0))}
    uids = Escalate.from_config("code", model, backends, cfg).uids  # type: ignore[arg-type]
    assert uids == range(300000, 300003)
    who = "import os, time\ntime.sleep(0.5)\nprint('uid', os.getuid())\n"
    results = await asyncio.gather(*(sandbox.check(who, "python", RUN, uids=uids) for _ in range(3)))
    seen = [int(r.output.split("uid")[1]) for r in results]
    assert sorted(seen) == [300000, 300001, 300002]  # three at once: three users
