"""Every example runs: the configs parse and pass `shenron check`'s validation, the client script works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from routing import config
from tests.procs import ROOT, SHENRON, Proc, fake_upstream, shenron

EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path: Path) -> None:
    cfg = config.load(path)
    assert "ultra-instinct" in cfg.models
    done = subprocess.run([str(SHENRON), "check", "--config", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode in (0, 1), done.stderr  # 1: some backend is not running here; 2 would be invalid
    assert "config OK" in done.stdout and "Traceback" not in done.stderr
    if "codegen-escalate" in cfg.models:  # a ladder's user learns which languages can be checked here
        assert "code checks" in done.stdout
        assert any(line.split()[:1] == ["python"] and "available" in line for line in done.stdout.splitlines())


def test_the_seed_council_has_six_members() -> None:
    cfg = config.load(ROOT / "examples" / "shenron.toml")
    assert len(cfg.models["full-council"].members) == 6 and len(cfg.models["agent-lite"].members) == 3


@pytest.mark.integration
def test_client_example_runs_against_a_proxy(tmp_path: Path, procs: list[Proc]) -> None:
    up, url = fake_upstream(tmp_path, "--models", "m", "--answer", "42")
    procs.append(up)
    proxy, base = shenron(tmp_path, f'[backends.a]\nurl = "{url}"\nmodel = "m"\n'
                                    '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n')
    procs.append(proxy)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py")], capture_output=True, text=True,
                          env={"OPENAI_BASE_URL": base, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "42"
    assert "winner: a" in done.stdout and "streamed: 42" in done.stdout


@pytest.mark.integration
def test_dialect_examples_run_against_a_proxy(tmp_path: Path, procs: list[Proc]) -> None:
    up, url = fake_upstream(tmp_path, "--models", "m", "--answer", "42")
    procs.append(up)
    proxy, base = shenron(tmp_path, f'[backends.a]\nurl = "{url}"\nmodel = "m"\n'
                                    '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n')
    procs.append(proxy)
    env = {"OPENAI_BASE_URL": base, "ANTHROPIC_BASE_URL": base.removesuffix("/v1"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "responses_client.py")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "42" and "winner: a" in lines[1] and lines[2] == "42" and lines[3] == "streamed: 42"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "anthropic_client.py")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "42" and "stop: end_turn" in lines[1] and "winner: a" in lines[1]
    assert lines[2] == "streamed: 42" and lines[3].startswith("prompt tokens (estimated): ")
