"""An attacker against what users install: the wheel in a fresh venv, auth on, as `.ci/run` runs it.

Every path and method, with no key, a wrong key, a revoked key, a key whose tier has no models and a
good key; header and body limits; and upstreams that repeat what they were sent (one answers, one
fails with OpenAI's 401 that quotes the key it got). Nothing may answer 500, and no key of the
operator's or the client's may reach an answer, an error, the log, `/status`, `/metrics` or a decision
record; the client's key never reaches an upstream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import ROOT, Proc, events, fake_upstream, free_port

pytestmark = pytest.mark.integration
OPERATOR_KEY = "sk-proj-OPERATOR" + "x" * 24 + "abcd"
ROUTES = ["/", "/health", "/ready", "/metrics", "/status", "/v1/models", "/v1/models/echo",
          "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/responses/resp_1",
          "/v1/messages", "/v1/messages/count_tokens", "/v1/nope", "/admin", "/v1/chat/completions/../../status"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def wheel_shenron(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`shenron` from the wheel built from this tree, installed into a fresh venv (no checkout importable)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:  # the tracked tree only: a stale build/ or .venv must not hide a missing package
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(src)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    wheel = next((work / "dist").glob("shenron-*.whl"))
    subprocess.run([str(work / "venv/bin/pip"), "install", "-q", str(wheel)], check=True, capture_output=True)
    return work / "venv/bin/shenron"


class Deployment:
    def __init__(self, tmp: Path, binary: Path, procs: list[Proc]) -> None:
        self.tmp, self.binary = tmp, binary
        self.echo_log, self.failing_log = tmp / "echo.jsonl", tmp / "failing.jsonl"
        echo = fake_upstream(tmp, "--models", "echo", "--echo", "--log", str(self.echo_log))
        failing = fake_upstream(tmp, "--models", "walled", "--echo", "--fail", "http401",
                                "--log", str(self.failing_log))
        procs += [echo[0], failing[0]]
        self.decisions = tmp / "decisions.jsonl"
        self.cfg = tmp / "shenron.toml"
        self.cfg.write_text(f"""
[server]
max-body-mb = 1
max-header-kb = 16
decision-log = "{self.decisions}"
[auth]
enabled = true
[store]
path = "{tmp / 'store.db'}"
[tiers.pro]
models = ["*"]
[tiers.nothing]
models = []
[tiers.ops]
models = []
admin = true
[backends.echo]
url = "{echo[1]}"
model = "echo"
api-key-env = "SHENRON_TEST_OPERATOR_KEY"
[backends.walled]
url = "{failing[1]}"
model = "walled"
api-key-env = "SHENRON_TEST_OPERATOR_KEY"
[models.ultra-instinct]
strategy = "single"
members = ["walled"]
fallbacks = ["echo"]
[models.no-fallback]
strategy = "single"
members = ["walled"]
""")
        self.env = {"SHENRON_TEST_OPERATOR_KEY": OPERATOR_KEY, "XDG_DATA_HOME": str(tmp / "xdg")}
        self.pro, self.pro_id = self.key("pro")
        self.nothing, _ = self.key("nothing")
        self.ops, _ = self.key("ops")
        self.revoked, revoked_id = self.key("pro")
        assert self.cli("keys", "revoke", revoked_id).returncode == 0
        port = free_port()
        self.proc = Proc([str(binary), "serve", "--config", str(self.cfg), "--port", str(port)],
                         tmp / "shenron.log", cwd=tmp, env=self.env)
        procs.append(self.proc)
        self.base = f"http://127.0.0.1:{port}"
        self.proc.wait_http(self.base + "/health")
        self.http = httpx.Client(base_url=self.base, timeout=30)
        self.seen: list[str] = []
        """Every answer's status line, headers and body, as a client saw them."""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args, "--config", str(self.cfg)], cwd=self.tmp, text=True,
                              capture_output=True, env={**os.environ, **self.env}, timeout=60)

    def key(self, tier: str) -> tuple[str, str]:
        made = self.cli("keys", "create", "--tier", tier, "--name", f"attacker-{tier}-{time.monotonic_ns()}")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        listed = self.cli("keys", "list").stdout
        key_id = next(line.split()[0] for line in listed.splitlines() if key[:17] in line)
        return key, key_id

    def send(self, method: str, path: str, key: str | None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        headers.update(kw.pop("headers", {}))
        r = self.http.request(method, path, headers=headers, **kw)
        self.seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        return r


@pytest.fixture(scope="module")
def deployment(wheel_shenron: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    procs: list[Proc] = []
    try:
        yield Deployment(tmp_path_factory.mktemp("attack"), wheel_shenron, procs)
    finally:
        for p in procs:
            p.stop()


def _keys(d: Deployment) -> list[str]:
    return [OPERATOR_KEY, OPERATOR_KEY[-12:], d.pro, d.pro[12:], d.nothing, d.ops, d.revoked]


def test_every_path_and_method_answers_without_a_500_or_a_traceback(deployment: Deployment) -> None:
    d = deployment
    for key in (None, "sk-shenron-wrong", d.revoked, d.nothing, d.pro):
        for path in ROUTES:
            for method in METHODS:
                for body in (CHAT, b"\xff{not json", None):
                    kw: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"content": body}
                    r = d.send(method, path, key, **kw)
                    assert r.status_code < 500 or r.status_code in (502, 503), (method, path, r.status_code, r.text)
                    assert "Traceback" not in r.text
                    if r.status_code >= 400 and method != "HEAD":
                        assert isinstance(r.json().get("error"), dict), (method, path, r.text)
    assert "Traceback" not in d.proc.log()


def test_keys_are_checked_before_anything_is_looked_up(deployment: Deployment) -> None:
    d = deployment
    for key in (None, "sk-shenron-wrong", d.revoked):
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/embeddings", {"model": "echo", "input": "x"}),
                           ("/v1/responses", {"model": "echo", "input": "x"}), ("/v1/models", None)):
            r = d.send("POST" if body else "GET", path, key, json=body)
            assert r.status_code == 401, (key, path, r.text)
    models = ("echo", "ultra-instinct", "does-not-exist")
    nothing = [d.send("POST", "/v1/chat/completions", d.nothing, json={**CHAT, "model": m}) for m in models]
    assert {r.status_code for r in nothing} == {404}
    said = {r.json()["error"]["message"].replace(m, "M") for r, m in zip(nothing, models, strict=True)}
    assert len(said) == 1  # the same words, but for the name asked: no oracle
    assert d.send("GET", "/v1/models", d.nothing).json()["data"] == []
    ready = d.send("GET", "/ready", None)
    assert "echo" not in ready.text and "walled" not in ready.text
    assert d.send("GET", "/status", d.pro).status_code in (401, 403)
    assert d.send("GET", "/metrics", None).status_code in (401, 403)
    assert d.send("GET", "/status", d.ops).status_code == 200


def test_header_and_body_limits_hold(deployment: Deployment) -> None:
    d = deployment
    big_header = d.send("POST", "/v1/chat/completions", d.pro, json=CHAT, headers={"x-junk": "a" * 40_000})
    assert big_header.status_code == 431
    big_body = d.send("POST", "/v1/chat/completions", d.pro,
                      json={**CHAT, "messages": [{"role": "user", "content": "a" * 2_000_000}]})
    assert big_body.status_code == 413
    deep = d.send("POST", "/v1/chat/completions", d.pro, content=b'{"model": "echo", "x": ' + b"[" * 5000 + b"]" * 5000
                  + b"}", headers={"content-type": "application/json"})
    assert deep.status_code == 400


def test_no_key_reaches_an_answer_a_log_status_metrics_or_a_decision_record(deployment: Deployment) -> None:
    d = deployment
    ok = d.send("POST", "/v1/chat/completions", d.pro, json=CHAT)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"].startswith("echo ")
    fallback = d.send("POST", "/v1/chat/completions", d.pro, json={**CHAT, "model": "ultra-instinct"})
    assert fallback.status_code == 200 and fallback.json()["council"]["winner"] == "echo"
    walled = d.send("POST", "/v1/chat/completions", d.pro, json={**CHAT, "model": "no-fallback"})
    assert walled.status_code == 502 and walled.json()["error"]["code"] == "upstream_auth"
    streamed = d.send("POST", "/v1/chat/completions", d.pro, json={**CHAT, "model": "no-fallback", "stream": True})
    assert streamed.status_code == 502
    for path in ("/v1/responses", "/v1/messages"):
        d.send("POST", path, d.pro, json={"model": "no-fallback", "input": "hi", "max_tokens": 5,
                                          "messages": [{"role": "user", "content": "hi"}]})
    d.send("GET", "/status", d.ops)
    d.send("GET", "/metrics", d.ops)
    d.send("GET", "/ready", d.ops)
    time.sleep(0.5)  # the access log and the decision records are written just after the answers
    places = {"answers": "\n".join(d.seen), "log": d.proc.log(),
              "decision records": d.decisions.read_text() if d.decisions.exists() else ""}
    assert places["decision records"], "the decision log is on: it must hold records to be checked"
    assert "Incorrect API key provided" in places["log"]  # the operator reads the upstream's words, keys redacted
    for where, text in places.items():
        for key in _keys(d):
            assert key not in text, f"a key ({key[:8]}...) reached {where}"
    upstream = events(d.echo_log) + events(d.failing_log)
    sent = [e["headers"] for e in upstream if e.get("event") == "request"]
    assert sent and all(h.get("authorization") == f"Bearer {OPERATOR_KEY}" for h in sent)
    assert not any(d.pro in json.dumps(h) for h in sent)  # the client's key stays with Shenron
