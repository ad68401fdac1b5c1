"""Keys, tiers, limits, the ledger, the cache and /metrics at the edge, in process (respx for the backends)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy import auth
from proxy.app import create_app
from proxy.store.sqlite import SQLiteStore
from routing import config
from tests.test_edge import MSGS, answer

CONFIG = """
[auth]
enabled = true

[store]
path = "{db}"

[backends.goku]
url = "http://goku.test/v1"
model = "qwen"

[backends.gpt]
url = "https://api.openai.test/v1"
model = "gpt-x"
price-in = 2.5
price-out = 10.0

[models.ultra-instinct]
strategy = "single"
members = ["goku"]
cache-ttl-s = 60

[models.full-council]
strategy = "council"
members = ["goku", "gpt"]
min-answers = 1

[tiers.basic]
models = []

[tiers.pro]
models = ["ultra-instinct", "cascade"]
requests-per-minute = 3

[tiers.enterprise]
models = ["*"]
cloud-budget-usd-per-month = 0.00001
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db).open_sync()
    keys = {tier: store.create_key_sync(f"{tier}-user", tier)[1] for tier in ("basic", "pro", "enterprise", "admin")}
    cfg = config.parse(CONFIG.format(db=db))
    with respx.mock(assert_all_called=False) as m:
        m.get("http://goku.test/v1/models").respond(json={"data": [{"id": "qwen"}]})
        m.get("https://api.openai.test/v1/models").respond(json={"data": [{"id": "gpt-x"}]})
        goku = m.post("http://goku.test/v1/chat/completions").respond(json=answer("42", "qwen"))
        m.post("https://api.openai.test/v1/chat/completions").respond(json=answer("42", "gpt-x"))
        with TestClient(app=create_app(cfg)) as client:
            yield {"client": client, "keys": keys, "db": db, "goku": goku, "store": store}


def post(env: dict[str, Any], key: str | None, model: str = "ultra-instinct", **extra: Any) -> Any:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return env["client"].post("/v1/chat/completions", json={"model": model, "messages": MSGS, **extra},
                              headers=headers)


def test_no_key_and_a_wrong_key_get_401(env: dict[str, Any]) -> None:
    r = post(env, None)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in r.json()["error"]["message"]
    wrong = "sk-shenron-" + "x" * 43
    r = post(env, wrong)
    assert r.status_code == 401 and wrong not in r.text  # the key is never echoed whole


def test_a_model_outside_the_tier_and_one_that_does_not_exist_look_the_same(env: dict[str, Any]) -> None:
    """No oracle: a key learns what it may use, and nothing of what else the operator runs."""
    assert post(env, env["keys"]["pro"]).status_code == 200
    outside = post(env, env["keys"]["pro"], "full-council")
    missing = post(env, env["keys"]["pro"], "no-such-council")
    assert outside.status_code == missing.status_code == 404
    err = outside.json()["error"]
    assert err == {**missing.json()["error"], "message": missing.json()["error"]["message"].replace(
        "no-such-council", "full-council")}
    assert err["param"] == "model" and err["message"].endswith("Available models: ultra-instinct")
    r = post(env, env["keys"]["basic"])
    assert r.status_code == 404 and "Available models: none for this key" in r.json()["error"]["message"]


def test_models_lists_only_what_the_key_may_use(env: dict[str, Any]) -> None:
    def ids(key: str) -> set[str]:
        r = env["client"].get("/v1/models", headers={"authorization": f"Bearer {key}"})
        return {m["id"] for m in r.json()["data"]}

    assert ids(env["keys"]["pro"]) == {"ultra-instinct"}
    assert ids(env["keys"]["basic"]) == set()
    assert {"ultra-instinct", "full-council", "qwen", "gpt-x"} <= ids(env["keys"]["enterprise"])
    assert env["client"].get("/v1/models").status_code == 401


def same_minute(needed_s: float) -> None:
    """Limits count per calendar minute: wait for the next one rather than straddle two."""
    if time.time() % 60 > 60 - needed_s:
        time.sleep(60.5 - time.time() % 60)


def test_over_the_rate_limit_gets_429_with_retry_after(env: dict[str, Any]) -> None:
    same_minute(5)
    codes = [post(env, env["keys"]["pro"]).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = post(env, env["keys"]["pro"])
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_revoked_key_is_refused(env: dict[str, Any]) -> None:
    rec = next(k for k in env["store"].list_keys_sync() if k.tier == "basic")
    env["store"].revoke_key_sync(rec.id)
    r = post(env, env["keys"]["basic"])
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_a_key_revoked_while_in_use_stops_working_within_the_trust_window(env: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A key found in the store is trusted for KEY_CACHE_S without a lookup: revoked while a client uses it, it
    still works inside that window and is refused once it has passed (the README's "within 2 seconds")."""
    monkeypatch.setattr(auth, "KEY_CACHE_S", 0.3)
    key = env["keys"]["pro"]
    assert post(env, key).status_code == 200  # looked up, then trusted
    rec = next(k for k in env["store"].list_keys_sync() if k.tier == "pro")
    env["store"].revoke_key_sync(rec.id)
    assert post(env, key).status_code == 200  # inside the window: not looked up again
    time.sleep(0.35)
    r = post(env, key)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_a_full_key_cache_forgets_and_keeps_answering(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Past KEY_CACHE_MAX keys the cache forgets (the expired ones, else all): every key still gets its answer."""
    monkeypatch.setattr(auth, "KEY_CACHE_MAX", 2)
    rounds = [[post(env, env["keys"][tier]).status_code for tier in ("enterprise", "basic", "admin", "enterprise")]
              for _ in range(2)]
    assert rounds[0] == rounds[1] and rounds[0][0] == 200 and 401 not in rounds[0]


def test_cloud_budget_skips_cloud_members_then_refuses(env: dict[str, Any]) -> None:
    key = env["keys"]["enterprise"]
    first = post(env, key, "full-council")  # budget left: the cloud member answers and spends
    assert first.status_code == 200
    council = first.json()["council"]
    gpt = next(m for m in council["members"] if m["name"] == "gpt")
    assert gpt["status"] == "ok" and gpt["cloud"] is True
    assert gpt["cost_usd"] == pytest.approx((3 * 2.5 + 2 * 10.0) / 1e6)
    assert council["cost_usd"] == pytest.approx(gpt["cost_usd"])
    r = post(env, key, "full-council")  # the month's budget is spent
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    assert int(r.headers["retry-after"]) > 0


def test_every_request_is_a_ledger_row(env: dict[str, Any]) -> None:
    ok = post(env, env["keys"]["pro"])
    post(env, env["keys"]["pro"], "full-council")
    rows = [(r.request_id, r.model, r.status, r.prompt_tokens, r.completion_tokens, r.key_id)
            for r in env["store"].rows_sync(0)]  # as `shenron usage` reads it: rows still spooled included
    assert [(r[1], r[2]) for r in rows] == [("ultra-instinct", 200), ("full-council", 404)]
    assert rows[0][0] == ok.json()["id"] and rows[0][3:5] == (3, 2) and rows[0][5].startswith("key_")


def test_identical_deterministic_requests_are_answered_from_the_cache(env: dict[str, Any]) -> None:
    key = env["keys"]["enterprise"]
    first = post(env, key, temperature=0)
    second = post(env, key, temperature=0)
    assert first.json()["choices"] == second.json()["choices"]
    assert env["goku"].call_count == 1
    assert second.json()["council"]["cached"] is True and "cached" not in first.json()["council"]
    streamed = env["client"].post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                  json={"model": "ultra-instinct", "messages": MSGS, "temperature": 0, "stream": True})
    assert '"content":"42"' in streamed.text and '"cached":true' in streamed.text and env["goku"].call_count == 1
    post(env, key, temperature=0.7)  # not deterministic: always asked
    post(env, key, temperature=0, max_tokens=5)  # a different request
    assert env["goku"].call_count == 3


def test_metrics_parse_as_prometheus_text(env: dict[str, Any]) -> None:
    post(env, env["keys"]["pro"])
    post(env, env["keys"]["pro"], "full-council")
    text = env["client"].get("/metrics", headers={"authorization": f"Bearer {env['keys']['admin']}"}).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("shenron_requests_total", (("model", "ultra-instinct"), ("status", "200")))] == 1
    assert samples[("shenron_requests_total", (("model", "(unrouted)"), ("status", "404")))] == 1
    assert samples[("shenron_member_calls_total", (("member", "goku"), ("status", "ok")))] == 1
    assert samples[("shenron_backend_up", (("backend", "goku"),))] == 1
    assert ("shenron_request_duration_seconds_count", (("model", "ultra-instinct"), ("status", "200"))) in samples
    post(env, env["keys"]["pro"], "no-such-model-1234")  # a client's made-up name never becomes a label
    text = env["client"].get("/metrics", headers={"authorization": f"Bearer {env['keys']['admin']}"}).text
    assert "no-such-model-1234" not in text and 'model="(unrouted)",status="404"} 2.0' in text


def test_anthropic_clients_send_their_key_as_x_api_key_and_read_anthropics_envelope(env: dict[str, Any]) -> None:
    body = {"model": "ultra-instinct", "max_tokens": 10, "messages": MSGS}
    r = env["client"].post("/v1/messages", json=body, headers={"x-api-key": env["keys"]["pro"],
                                                               "anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "42"
    r = env["client"].post("/v1/messages", json=body, headers={"x-api-key": "sk-shenron-" + "x" * 43})
    assert r.status_code == 401 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "authentication_error"
    r = env["client"].post("/v1/messages", json={**body, "model": "full-council"},
                           headers={"x-api-key": env["keys"]["pro"]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = env["client"].post("/v1/messages/count_tokens", json={**body, "model": "full-council"},
                           headers={"x-api-key": env["keys"]["pro"]})
    assert r.status_code == 404


def test_stored_responses_are_visible_only_to_the_key_that_made_them(env: dict[str, Any]) -> None:
    pro, ent = ({"authorization": f"Bearer {env['keys'][t]}"} for t in ("pro", "enterprise"))
    r = env["client"].post("/v1/responses", json={"model": "ultra-instinct", "input": "hi"}, headers=pro)
    assert r.status_code == 200
    rid = r.json()["id"]
    assert env["client"].get(f"/v1/responses/{rid}", headers=pro).status_code == 200
    assert env["client"].get(f"/v1/responses/{rid}", headers=ent).status_code == 404
    r = env["client"].post("/v1/responses", json={"model": "ultra-instinct", "input": "more",
                                                  "previous_response_id": rid}, headers=ent)
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"


def test_ready_tells_outsiders_only_whether_to_send_traffic(env: dict[str, Any]) -> None:
    client = env["client"]
    for who in ({}, {"authorization": f"Bearer {env['keys']['pro']}"}, {"authorization": "Bearer sk-shenron-nope"}):
        r = client.get("/ready", headers=who)
        assert r.status_code == 200 and r.json() == {"status": "ready"}, who
    r = client.get("/ready", headers={"authorization": f"Bearer {env['keys']['admin']}"})
    assert r.json()["status"] == "ready" and "goku" in r.json()["reachable"]


def test_embeddings_with_a_model_outside_the_tier_learn_nothing(env: dict[str, Any]) -> None:
    """Every endpoint authorizes before it looks a model up: a virtual model's name and a backend's are
    the same 404 as a name that does not exist."""
    auth = {"authorization": f"Bearer {env['keys']['pro']}"}
    answers = [env["client"].post("/v1/embeddings", headers=auth, json={"model": m, "input": "x"})
               for m in ("full-council", "no-such-model")]
    assert [r.status_code for r in answers] == [404, 404]
    assert "virtual model" not in answers[0].text
