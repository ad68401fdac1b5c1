"""Integration: keys, tiers, the ledger, shared limits and the status page, as a user meets them.

Real processes throughout: `shenron serve` and the `shenron` CLI, the project's fake upstreams,
PostgreSQL and Redis on their standard ports, Chromium for the page, the openai SDK as the client.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.procs import Proc, access_lines, cli, events, fake_upstream, shenron
from tests.services import missing
from tests.test_auth_edge import same_minute

pytestmark = pytest.mark.integration
MSGS = [{"role": "user", "content": "secret-prompt-text: what is six times seven?"}]


def backends(procs: list[Proc], tmp: Path, names: dict[str, tuple[str, ...]]) -> str:
    blocks = []
    for name, flags in names.items():
        proc, url = fake_upstream(tmp, "--models", name, *flags)
        procs.append(proc)
        blocks.append(f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n')
    return "\n".join(blocks)


TIERS = """
[auth]
enabled = true

[tiers.pro]
models = ["ultra-instinct", "cascade"]
requests-per-minute = {rpm}

[tiers.enterprise]
models = ["*"]

[models.ultra-instinct]
strategy = "single"
members = ["goku"]

[models.full-council]
strategy = "council"
members = ["goku", "vegeta"]
"""


def test_a_pro_key_from_the_cli_works_at_once_and_is_refused_the_council(tmp_path: Path,
                                                                          procs: list[Proc]) -> None:
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}  # no [store]: the default SQLite file, created on start
    cfg = tmp_path / "conf" / "shenron.toml"
    cfg.parent.mkdir()
    proxy, base = shenron(tmp_path, backends(procs, tmp_path, {"goku": ("--answer", "42"), "vegeta": (
        "--answer", "42")}) + TIERS.format(rpm=100), env=data, cfg_path=cfg)
    procs.append(proxy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = cli("keys", "create", "--tier", "pro", "--name", "acme", "--config", str(cfg), cwd=elsewhere, env=data)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-shenron-") and "shown once" in made.stderr

    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    assert client.chat.completions.create(model="ultra-instinct", messages=MSGS).choices[0].message.content == "42"
    assert [m.id for m in client.models.list()] == ["ultra-instinct"]
    with pytest.raises(openai.NotFoundError, match="Available models: ultra-instinct"):  # not an oracle
        client.chat.completions.create(model="full-council", messages=MSGS)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).models.list()

    listed = cli("keys", "list", "--config", str(cfg), cwd=elsewhere, env=data)
    assert "acme" in listed.stdout and key[:17] in listed.stdout and key not in listed.stdout
    usage = cli("usage", "--by", "key", "--format", "json", "--config", str(cfg), cwd=elsewhere, env=data)
    rows = {r["group"]: r for r in json.loads(usage.stdout)["rows"]}
    acme = next(r for g, r in rows.items() if g.startswith("acme"))
    assert (acme["requests"], acme["errors"]) == (2, 1)
    assert (tmp_path / "data" / "shenron" / "shenron.db").is_file()

    key_id = next(line.split()[0] for line in listed.stdout.splitlines() if "acme" in line)
    assert cli("keys", "revoke", key_id, "--config", str(cfg), cwd=elsewhere, env=data).returncode == 0
    deadline = time.monotonic() + 10
    while True:
        try:
            client.chat.completions.create(model="ultra-instinct", messages=MSGS)
        except openai.AuthenticationError as e:
            assert "revoked" in str(e)
            break
        assert time.monotonic() < deadline, "a revoked key still works after 10s"
        time.sleep(0.2)

    def chat_lines() -> list[dict[str, object]]:
        return [entry for entry in access_lines(proxy) if entry["path"] == "/v1/chat/completions"]

    deadline = time.monotonic() + 5  # a line is written just after its response is sent
    while {c["status"] for c in chat_lines()} < {200, 404, 401} and time.monotonic() < deadline:
        time.sleep(0.05)
    chats = chat_lines()
    assert {c["status"] for c in chats} >= {200, 404, 401}
    assert all(c.get("key") in (None, key_id) for c in chats)
    assert key not in proxy.log() and "secret-prompt-text" not in proxy.log()


def test_no_config_at_all_still_keeps_a_ledger(tmp_path: Path, procs: list[Proc]) -> None:
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}
    proxy, base = shenron(tmp_path, None, env=data)
    procs.append(proxy)
    r = httpx.post(base + "/chat/completions", json={"model": "anything", "messages": MSGS})
    assert r.status_code == 503
    usage = cli("usage", "--format", "json", cwd=tmp_path, env=data)
    total = json.loads(usage.stdout)["rows"][-1]
    assert (total["group"], total["requests"], total["errors"]) == ("TOTAL", 1, 1)


def test_usage_totals_match_what_the_clients_were_told(tmp_path: Path, procs: list[Proc]) -> None:
    config = backends(procs, tmp_path, {"goku": ("--answer", "forty two"), "vegeta": ("--answer", "forty two")})
    config += f'\n[store]\npath = "{tmp_path / "ledger.db"}"\n' + TIERS.replace("enabled = true", "enabled = false")
    cfg = tmp_path / "usage.toml"
    proxy, base = shenron(tmp_path, config.format(rpm=100), cfg_path=cfg)
    procs.append(proxy)
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
    told = {"prompt": 0, "completion": 0}
    for model in ("ultra-instinct", "full-council", "goku") * 2:
        resp = client.chat.completions.create(model=model, messages=MSGS)
        for m in resp.council["members"]:  # type: ignore[attr-defined]
            told["prompt"] += m["usage"]["prompt_tokens"]
            told["completion"] += m["usage"]["completion_tokens"]
    stream = client.chat.completions.create(model="ultra-instinct", messages=MSGS, stream=True,
                                            stream_options={"include_usage": True})
    usage = next(c.usage for c in stream if c.usage)
    told["prompt"] += usage.prompt_tokens
    told["completion"] += usage.completion_tokens
    out = cli("usage", "--by", "model", "--format", "json", "--config", str(cfg), cwd=tmp_path)
    rows = {r["group"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["TOTAL"]["requests"] == 7 and rows["TOTAL"]["errors"] == 0
    assert (rows["ultra-instinct"]["requests"], rows["full-council"]["requests"], rows["goku"]["requests"]) == (3, 2, 2)
    assert (rows["TOTAL"]["prompt_tokens"], rows["TOTAL"]["completion_tokens"]) == (told["prompt"], told["completion"])
    assert told["completion"] > 0


def _load(base: str, acked: list[str], stop: threading.Event, stream: bool) -> None:
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=5)
    while not stop.is_set():
        try:
            if stream:
                chunks = list(client.chat.completions.create(model="ultra-instinct", messages=MSGS, stream=True))
                acked.append(chunks[0].id)
            else:
                acked.append(client.chat.completions.create(model="ultra-instinct", messages=MSGS).id)
        except (openai.APIError, httpx.HTTPError):
            return


def test_sigkill_under_load_loses_no_answered_request(tmp_path: Path, procs: list[Proc]) -> None:
    config = backends(procs, tmp_path, {"goku": ("--answer", "42", "--latency-ms", "5")})
    config += f'\n[store]\npath = "{tmp_path / "ledger.db"}"\n[models.ultra-instinct]\nstrategy = "single"\n' \
              'members = ["goku"]\n'
    proxy, base = shenron(tmp_path, config)
    procs.append(proxy)
    acked: list[str] = []
    stop = threading.Event()
    workers = [threading.Thread(target=_load, args=(base, acked, stop, i % 2 == 1)) for i in range(8)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    proxy.stop(signal.SIGKILL)  # mid-load: requests are in flight
    stop.set()
    for w in workers:
        w.join(10)
    assert len(acked) >= 50, "the load never got going"
    cfg = next(tmp_path.glob("shenron-*.toml"))
    total = json.loads(cli("usage", "--format", "json", "--config", str(cfg), cwd=tmp_path).stdout)["rows"][-1]
    assert total["requests"] >= len(acked)
    # the dead process's spooled rows are in SQLite itself now: opening the store (`usage` above) recovered them
    assert not list(tmp_path.glob("ledger.db.spool.*")), "the killed process's spool file was not recovered"
    db = sqlite3.connect(tmp_path / "ledger.db")
    recorded = {r[0] for r in db.execute("SELECT request_id FROM ledger WHERE status = 200")}
    missing = set(acked) - recorded
    assert not missing, f"{len(missing)} of {len(acked)} answered requests are not in the ledger"
    ids = [r[0] for r in db.execute("SELECT request_id FROM ledger")]
    assert len(ids) == len(set(ids)), "a row was recovered twice"


def test_two_replicas_on_one_postgres_and_redis_enforce_one_limit(tmp_path: Path, procs: list[Proc],
                                                                   postgres_url: str, redis_url: str,
                                                                   redis_prefix: str) -> None:
    config = backends(procs, tmp_path, {"goku": ("--answer", "42"), "vegeta": ("--answer", "42")})
    config += f'\n[store]\ndatabase-url = "{postgres_url}"\nredis-url = "{redis_url}"\n' \
              f'redis-prefix = "{redis_prefix}"\n' + TIERS.format(rpm=4)
    cfg = tmp_path / "shared.toml"
    a, base_a = shenron(tmp_path, config, cfg_path=cfg)
    procs.append(a)
    b, base_b = shenron(tmp_path, config, cfg_path=cfg)
    procs.append(b)
    key = cli("keys", "create", "--tier", "pro", "--name", "shared", "--config", str(cfg), cwd=tmp_path).stdout.strip()
    same_minute(10)
    codes = []
    for i in range(6):
        base = (base_a, base_b)[i % 2]
        r = httpx.post(base + "/chat/completions", json={"model": "ultra-instinct", "messages": MSGS},
                       headers={"authorization": f"Bearer {key}"})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert 1 <= int(r.headers["retry-after"]) <= 60
    assert codes == [200, 200, 200, 200, 429, 429]
    out = cli("usage", "--format", "json", "--config", str(cfg), cwd=tmp_path)
    total = json.loads(out.stdout)["rows"][-1]
    assert (total["requests"], total["errors"]) == (6, 2)


def test_status_page_shows_the_council_in_a_browser(tmp_path: Path, procs: list[Proc]) -> None:
    for tool in ("chromium", "tesseract"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (Debian packages chromium and tesseract-ocr; .ci/run installs both)")
    names = {"kakarot": ("--answer", "42"), "vegeta": ("--answer", "42"), "piccolo": ("--fail", "http500")}
    config = backends(procs, tmp_path, names)
    config += '\n[models.full-council]\nstrategy = "council"\nmembers = ["kakarot", "vegeta", "piccolo"]\n'
    proxy, base = shenron(tmp_path, config)
    procs.append(proxy)
    httpx.post(base + "/chat/completions", json={"model": "full-council", "messages": MSGS})
    page = base.removesuffix("/v1") + "/status"
    shot = tmp_path / "status.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium'}", "--hide-scrollbars", "--window-size=1400,1000",
                    "--force-device-scale-factor=2", f"--screenshot={shot}", page],
                   check=True, capture_output=True, timeout=120)
    text = subprocess.run(["tesseract", str(shot), "-"], check=True, capture_output=True, text=True).stdout.lower()
    for name in names:
        assert name in text, f"{name!r} not readable in the screenshot; OCR saw:\n{text}"
    assert "full-council" in text and "winner" in text


def test_debug_logging_adds_request_bodies_to_the_access_log(tmp_path: Path, procs: list[Proc]) -> None:
    config = backends(procs, tmp_path, {"goku": ("--answer", "42")})
    proxy, base = shenron(tmp_path, '[server]\nlog-level = "debug"\n' + config)
    procs.append(proxy)
    httpx.post(base + "/chat/completions", json={"model": "goku", "messages": MSGS})
    deadline = time.monotonic() + 5  # the line is written once the response is out: a moment after the client
    chat: dict[str, Any] | None = None
    while chat is None and time.monotonic() < deadline:
        chat = next((entry for entry in access_lines(proxy) if entry["path"] == "/v1/chat/completions"), None)
        time.sleep(0.02)
    assert chat is not None
    assert "secret-prompt-text" in chat["body"] and chat["status"] == 200 and chat["strategy"] == "passthrough"


def test_an_access_log_file_gets_one_line_per_request_under_concurrent_load(tmp_path: Path,
                                                                            procs: list[Proc]) -> None:
    """Lines of one loop turn are written together: none may be lost, merged or cut in a burst."""
    config = backends(procs, tmp_path, {"goku": ("--answer", "42")})
    logfile = tmp_path / "access.jsonl"
    proxy, base = shenron(tmp_path, f'[server]\naccess-log = "{logfile}"\n' + config)
    procs.append(proxy)

    def ask(i: int) -> int:
        return httpx.post(base + "/chat/completions", json={"model": "goku", "messages": MSGS},
                          headers={"x-shenron-session": f"s{i}"}, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(ask, range(64))) == {200}
    deadline = time.monotonic() + 5
    chats: list[dict[str, Any]] = []
    while len(chats) < 64 and time.monotonic() < deadline:
        chats = [c for c in events(logfile) if c["path"] == "/v1/chat/completions"]
        time.sleep(0.05)
    assert len(chats) == 64 and {c["status"] for c in chats} == {200}
    assert len({c["request_id"] for c in chats}) == 64
    assert "secret-prompt-text" not in logfile.read_text()  # no prompt above debug
