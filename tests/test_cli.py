"""The CLI as a user meets it: help, config errors without tracebacks, check's table, serving with nothing found."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.procs import SHENRON, Proc, fake_upstream, free_port


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SHENRON), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_help_lists_the_commands() -> None:
    out = run("--help").stdout
    assert "serve" in out and "check" in out
    assert "--config" in run("serve", "--help").stdout


def test_a_bad_config_names_file_and_key_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[backends.goku]\nurl = "http://x/v1"\nmodel = "m"\ntimeout = 5\n')
    for cmd in ("check", "serve"):
        done = run(cmd, "--config", str(bad))
        assert done.returncode == 2
        assert f"{bad}: key `backends.goku`: unknown key `timeout`" in done.stderr
        assert "Traceback" not in done.stderr


def test_an_access_log_that_cannot_be_written_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    for where in ("", str(tmp_path / "no-such-dir" / "access.log"), str(tmp_path)):
        cfg = tmp_path / "shenron.toml"
        cfg.write_text(f'[server]\naccess-log = "{where}"\n'
                       '[backends.goku]\nurl = "http://127.0.0.1:9/v1"\nmodel = "m"\n')
        done = run("serve", "--config", str(cfg), "--port", "0")
        assert done.returncode == 2, done.stderr
        assert "access-log" in done.stderr and "cannot be written" in done.stderr
        assert "Traceback" not in done.stderr


def test_config_is_found_through_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('[backends.a]\nurl = "http://127.0.0.1:9/v1"\nmodel = "m"\n')
    done = run("check", cwd=tmp_path, env={"SHENRON_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"})
    assert f"config OK: {cfg}" in done.stdout


@pytest.mark.integration
def test_check_prints_a_table_and_fails_on_an_unreachable_backend(tmp_path: Path, procs: list[Proc]) -> None:
    up, url = fake_upstream(tmp_path, "--models", "m,other")
    procs.append(up)
    cfg = tmp_path / "shenron.toml"
    cfg.write_text(f'[backends.up]\nurl = "{url}"\nmodel = "m"\n[backends.down]\nurl = "http://127.0.0.1:9/v1"\n'
                   'model = "x"\n')
    done = run("check", cwd=tmp_path)
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("member"))
    assert all(col in header for col in ("url", "reachable", "models served", "latency"))
    up_row = next(line for line in lines if line.startswith("up "))
    down_row = next(line for line in lines if line.startswith("down "))
    assert "yes" in up_row and "m, other" in up_row and "ms" in up_row
    assert "no" in down_row and "connection refused" in down_row
    assert done.returncode == 1


def test_check_says_which_cascade_can_read_its_confidence(tmp_path: Path, procs: list[Proc]) -> None:
    sure, sure_url = fake_upstream(tmp_path, "--models", "a", "--logprob", "-0.1")
    blind, blind_url = fake_upstream(tmp_path, "--models", "b")
    procs += [sure, blind]
    (tmp_path / "shenron.toml").write_text(
        f'[backends.sure]\nurl = "{sure_url}"\nmodel = "a"\n[backends.blind]\nurl = "{blind_url}"\nmodel = "b"\n'
        '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["sure"]\n'
        '[models.quick]\nstrategy = "single"\nmembers = ["blind"]\n'
        '[models.council]\nstrategy = "council"\nmembers = ["sure", "blind"]\n'
        '[models.cascade]\nstrategy = "cascade"\nfirst = "ultra-instinct"\nescalate-to = "council"\n'
        '[models.blind-cascade]\nstrategy = "cascade"\nfirst = "quick"\nescalate-to = "council"\n')
    done = run("check", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  cascade: ultra-instinct -> sure: logprobs yes" in done.stdout
    assert ("  blind-cascade: quick -> blind: logprobs NO (it answered without logprobs); it escalates only on "
            "risk words or when asked (set second-opinion)") in done.stdout


@pytest.mark.integration
def test_serve_with_nothing_found_still_starts_and_says_503(tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    # an empty cwd and no $SHENRON_CONFIG: the built-in default discovers (nothing on this machine's usual ports
    # is assumed; if something does answer there, the test cannot make its point)
    proxy = Proc([str(SHENRON), "serve", "--port", str(port)], tmp_path / "serve.log", cwd=tmp_path,
                 env={"SHENRON_CONFIG": ""})
    procs.append(proxy)
    proxy.wait_http(f"http://127.0.0.1:{port}/health")
    if "discovered 0 model" not in proxy.log():
        pytest.skip("a local model server answers on a usual port here")
    assert "No backends configured or found" in proxy.log()
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                   json={"model": "ultra-instinct", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and "no backends" in r.json()["error"]["message"]
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"] == []


def test_a_network_bind_requires_keys_unless_insecure(tmp_path: Path, procs: list[Proc]) -> None:
    backend = '[backends.a]\nurl = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(backend)
    port = free_port()
    proxy = Proc([str(SHENRON), "serve", "--config", str(keyed), "--host", "0.0.0.0", "--port", str(port)],
                 tmp_path / "keyed.log")
    procs.append(proxy)
    proxy.wait_http(f"http://127.0.0.1:{port}/health")
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401  # keys on by default off loopback
    cfg = tmp_path / "open.toml"
    cfg.write_text("[auth]\nenabled = false\n" + backend)
    done = run("serve", "--config", str(cfg), "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr and "--insecure" in done.stderr
    port = free_port()
    proxy = Proc([str(SHENRON), "serve", "--config", str(cfg), "--host", "0.0.0.0", "--port", str(port),
                  "--insecure"], tmp_path / "insecure.log")
    procs.append(proxy)
    proxy.wait_http(f"http://127.0.0.1:{port}/health")
    assert "auth: OFF on 0.0.0.0 (--insecure)" in proxy.log()


def test_keys_and_usage_explain_mistakes(tmp_path: Path) -> None:
    cfg = tmp_path / "tiers.toml"
    cfg.write_text(f'[tiers.pro]\nmodels = ["*"]\n[store]\npath = "{tmp_path / "k.db"}"\n')
    done = run("keys", "create", "--tier", "gold", "--name", "x", "--config", str(cfg))
    assert done.returncode == 2 and "unknown tier 'gold'" in done.stderr and "defined tiers: pro" in done.stderr
    assert run("keys", "revoke", "key_nope", "--config", str(cfg)).returncode == 1
    bad = run("usage", "--since", "yesterday", "--config", str(cfg))
    assert bad.returncode == 2 and "expected a duration" in bad.stderr and "Traceback" not in bad.stderr
    assert "keys" in run("--help").stdout and "--tier" in run("keys", "create", "--help").stdout
