"""One key never sees another's: tiers wherever a request travels, per-key cache, guarded operator pages.

In process (Litestar's TestClient, respx for the backends), as an attacker with a `pro` key would try.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from litestar.testing import TestClient

from proxy.app import create_app
from proxy.store.sqlite import SQLiteStore
from routing import config
from tests.procs import cli
from tests.test_edge import MSGS, answer

CONFIG = """
[server]
metrics-token = "scrape-me-0123456789"

[auth]
enabled = true

[store]
path = "{db}"

[backends.goku]
url = "http://admin:hunter2@goku.test/v1"
model = "qwen"

[backends.vegeta]
url = "http://token:sekrit@vegeta.test/v1"
model = "llama"

[models.ultra-instinct]
strategy = "single"
members = ["goku"]
cache-ttl-s = 60

[models.full-council]
strategy = "council"
members = ["goku", "vegeta"]

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
min-confidence = 0

[models.big]
strategy = "single"
members = ["vegeta"]
max-inflight = 0
degrade-to = "ultra-instinct"

[tiers.pro]
models = ["ultra-instinct", "cascade", "big"]

[tiers.team]
models = ["ultra-instinct"]
shared-cache = true

[tiers.escalation-only]
models = ["full-council", "cascade"]

[tiers.ops]
models = []
admin = true
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db).open_sync()
    keys = {f"{tier}{i}": store.create_key_sync(f"{tier}-user{i}", tier)[1]
            for tier in ("pro", "team", "escalation-only", "ops") for i in (1, 2)}
    with respx.mock(assert_all_called=False) as m:
        for host, model in (("goku", "qwen"), ("vegeta", "llama")):
            m.get(url__regex=rf"http://.*{host}\.test/v1/models.*").respond(json={"data": [{"id": model}]})
        goku = m.post(url__regex=r"http://.*goku\.test/v1/chat/completions").respond(json=answer("42", "qwen"))
        vegeta = m.post(url__regex=r"http://.*vegeta\.test/v1/chat/completions").respond(json=answer("42", "llama"))
        with TestClient(app=create_app(config.parse(CONFIG.format(db=db)))) as client:
            yield {"client": client, "keys": keys, "goku": goku, "vegeta": vegeta}


def post(env: dict[str, Any], key: str, model: str, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    return env["client"].post("/v1/chat/completions", json={"model": model, "messages": MSGS, **extra},
                              headers={"authorization": f"Bearer {env['keys'][key]}", **(headers or {})})


def test_explicit_escalation_cannot_reach_a_council_outside_the_tier(env: dict[str, Any]) -> None:
    r = post(env, "pro1", "cascade", {"x-shenron-validate": "1"})
    assert r.status_code == 200
    council = r.json()["council"]
    assert council["escalated"] is False and council["answered_by"] == "ultra-instinct"
    assert "full-council" in council["escalation_skipped"] and "asked" in council["escalation_skipped"]
    assert env["vegeta"].call_count == 0  # no council member ran on the pro key's behalf


def test_a_cascade_whose_first_model_is_outside_the_tier_goes_straight_to_the_allowed_one(
        env: dict[str, Any]) -> None:
    r = post(env, "escalation-only1", "cascade")
    council = r.json()["council"]
    assert r.status_code == 200 and council["escalated"] is True
    assert council["escalated_because"] == "first-not-allowed" and council["answered_by"] == "full-council"


def test_degradation_never_lands_outside_the_tier(env: dict[str, Any]) -> None:
    r = post(env, "pro1", "big")  # max-inflight 0: it always wants to degrade, and ultra-instinct is allowed
    assert r.json()["council"]["degraded_from"] == "big"
    r = env["client"].post("/v1/chat/completions", json={"model": "big", "messages": MSGS},
                           headers={"authorization": f"Bearer {env['keys']['pro1']}"})
    assert r.status_code == 200


def test_degrade_to_outside_the_tier_is_skipped_and_said(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    store = SQLiteStore(db).open_sync()
    key = store.create_key_sync("u", "big-only")[1]
    text = CONFIG.format(db=db) + '\n[tiers.big-only]\nmodels = ["big"]\n'
    with respx.mock(assert_all_called=False) as m:
        m.get(url__regex=r".*/models.*").respond(json={"data": []})
        goku = m.post(url__regex=r"http://.*goku\.test/v1/chat/completions").respond(json=answer("1"))
        m.post(url__regex=r"http://.*vegeta\.test/v1/chat/completions").respond(json=answer("2"))
        with TestClient(app=create_app(config.parse(text))) as client:
            r = client.post("/v1/chat/completions", json={"model": "big", "messages": MSGS},
                            headers={"authorization": f"Bearer {key}"})
    council = r.json()["council"]
    assert r.status_code == 200 and council.get("degraded_from") is None
    assert "ultra-instinct" in council["degrade_skipped"] and goku.call_count == 0


def test_one_key_never_gets_another_key_s_cached_answer(env: dict[str, Any]) -> None:
    assert "cached" not in post(env, "pro1", "ultra-instinct", temperature=0).json()["council"]
    assert post(env, "pro1", "ultra-instinct", temperature=0).json()["council"]["cached"] is True
    assert "cached" not in post(env, "pro2", "ultra-instinct", temperature=0).json()["council"]  # asked again
    assert env["goku"].call_count == 2


def test_a_tier_may_opt_in_to_sharing_its_cache(env: dict[str, Any]) -> None:
    post(env, "team1", "ultra-instinct", temperature=0)
    assert post(env, "team2", "ultra-instinct", temperature=0).json()["council"]["cached"] is True
    assert "cached" not in post(env, "pro1", "ultra-instinct", temperature=0).json()["council"]


def test_the_404_lists_only_the_models_the_key_may_use(env: dict[str, Any]) -> None:
    r = post(env, "pro1", "no-such-model")
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "ultra-instinct" in message and "full-council" not in message and "goku" not in message


def test_status_and_metrics_need_an_admin_key_or_the_metrics_token(env: dict[str, Any]) -> None:
    c = env["client"]
    for page in ("/status", "/metrics"):
        assert c.get(page).status_code == 401
        r = c.get(page, headers={"authorization": f"Bearer {env['keys']['pro1']}"})
        assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
        assert c.get(page, headers={"authorization": f"Bearer {env['keys']['ops1']}"}).status_code == 200
        assert c.get(page, headers={"authorization": "Bearer scrape-me-0123456789"}).status_code == 200


def test_no_page_shows_a_backend_credential(env: dict[str, Any]) -> None:
    admin = {"authorization": f"Bearer {env['keys']['ops1']}"}
    post(env, "pro1", "ultra-instinct")
    for page in ("/status", "/metrics", "/v1/models"):
        text = env["client"].get(page, headers=admin).text
        assert "hunter2" not in text and "sekrit" not in text
    assert "goku.test/v1" in env["client"].get("/status", headers=admin).text


def test_keys_create_admin_makes_a_key_that_reads_the_operator_pages(tmp_path: Path) -> None:
    cfg = tmp_path / "shenron.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "k.db"}"\n[backends.x]\nurl = "http://u:p@x.test/v1"\nmodel = "m"\n')
    made = cli("keys", "create", "--admin", "--name", "ops", "--config", str(cfg), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    listed = json.loads(cli("keys", "list", "--format", "json", "--config", str(cfg), cwd=tmp_path).stdout)
    assert [k["tier"] for k in listed] == ["admin"]
    checked = cli("check", "--config", str(cfg), cwd=tmp_path)
    assert "u:p@" not in checked.stdout + checked.stderr and "x.test/v1" in checked.stdout
