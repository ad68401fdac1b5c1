"""End to end: Codex CLI (Responses API) and Claude Code (Messages API) finish a small task that needs a
tool call, through `shenron serve`, over `ultra-instinct` and a `full-council` of three.

The upstreams are fakes that ask for the agent's own shell tool (`exec_command` for Codex, `Bash`
for Claude Code) until the tool's result comes back, then say "Done."; the task is done when
the file the command writes exists. Each agent skips, saying why, where it is not installed
(`npm install -g @openai/codex @anthropic-ai/claude-code`; `.ci/run` installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import fake_upstream, running, shenron

pytestmark = pytest.mark.integration
MEMBERS = ["goku", "vegeta", "piccolo"]
CALLS = ['exec_command:{"cmd":"echo hi > done.txt"}',
         'Bash:{"command":"echo hi > done.txt","description":"Write done.txt"}']


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("agents")
    with running() as started:
        blocks = []
        for name in MEMBERS:
            args = ["--models", name, "--answer", "Done."] + [a for c in CALLS for a in ("--tool-call", c)]
            proc, url = fake_upstream(tmp, *args)
            started.append(proc)
            blocks.append(f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n')
        config = "\n".join(blocks) + f"""
[models.ultra-instinct]
strategy = "single"
members = ["goku"]

[models.full-council]
strategy = "council"
members = {json.dumps(MEMBERS)}
timeout-s = 20
"""
        proxy, url = shenron(tmp, config)
        started.append(proxy)
        yield url


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (npm install -g {package})")
    return path


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("model", ["ultra-instinct", "full-council"])
def test_codex_cli_finishes_a_task_with_a_tool_call(base: str, model: str, tmp_path: Path) -> None:
    codex = _need("codex", "@openai/codex")
    home, work = Path.home() / f".shenron-test-codex-{os.getpid()}", tmp_path / "work"
    home.mkdir(exist_ok=True)  # not under /tmp: Codex refuses to set up its helpers there
    work.mkdir()
    (home / "config.toml").write_text(f'model = "{model}"\nmodel_provider = "shenron"\n\n'
                                      '[model_providers.shenron]\nname = "Shenron"\n'
                                      f'base_url = "{base}"\nwire_api = "responses"\n')
    try:
        done = _run([codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                     "Create done.txt containing hi"], work, {"CODEX_HOME": str(home)})
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (work / "done.txt").read_text().strip() == "hi"
    assert "Done." in done.stdout


@pytest.mark.parametrize("model", ["ultra-instinct", "full-council"])
def test_claude_code_finishes_a_task_with_a_tool_call(base: str, model: str, tmp_path: Path) -> None:
    claude = _need("claude", "@anthropic-ai/claude-code")
    env: dict[str, Any] = {"ANTHROPIC_BASE_URL": base.removesuffix("/v1"), "ANTHROPIC_API_KEY": "sk-unused",
                           "IS_SANDBOX": "1",  # lets root skip the permission prompts, as in a container
                           "HOME": str(tmp_path), "DISABLE_AUTOUPDATER": "1"}
    done = _run([claude, "-p", "Create done.txt containing hi", "--model", model,
                 "--dangerously-skip-permissions"], tmp_path, env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "done.txt").read_text().strip() == "hi"
    assert "Done." in done.stdout
