"""The store's contract, on the embedded SQLite file and on a real PostgreSQL: keys, ledger, totals, migration."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.store import LedgerRow, MemberUse, Store, StoreError, hash_key, open_store
from routing import config


def cfg_for(kind: str, tmp: Path, pg: str | None) -> config.Config:
    store = f'database-url = "{pg}"' if kind == "postgres" else f'path = "{tmp / "x" / "ledger.db"}"'
    return config.parse(f"[store]\n{store}\n")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    pg = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    s = await open_store(cfg_for(request.param, tmp_path, pg))
    yield s
    await s.close()


def row(i: int, key: str | None = "key_a", cloud: float = 0.0) -> LedgerRow:
    return LedgerRow(ts=time.time(), request_id=f"r{i}", key_id=key, model="m", strategy="single", status=200,
                     latency_ms=10, prompt_tokens=3, completion_tokens=2, cost_usd=cloud + 0.001,
                     cloud_cost_usd=cloud, members=[MemberUse("goku", "ok", 10, 3, 2, 0.001)])


async def test_keys_are_stored_hashed_found_and_revoked(store: Store) -> None:
    rec, key = await store.create_key("acme", "pro")
    assert key.startswith(rec.prefix) and rec.hash == hash_key(key) and key not in rec.hash
    found = await store.find_key(hash_key(key))
    assert found is not None and (found.id, found.name, found.tier, found.revoked) == (rec.id, "acme", "pro", None)
    assert await store.find_key(hash_key(key + "x")) is None
    assert await store.revoke_key(rec.id) and not await store.revoke_key(rec.id)
    revoked = await store.find_key(hash_key(key))
    assert revoked is not None and revoked.revoked is not None
    assert [k.id for k in await store.list_keys()] == [rec.id]


async def test_concurrent_rows_are_all_committed_with_their_members(store: Store) -> None:
    await asyncio.gather(*(store.record(row(i, cloud=0.01 if i % 2 else 0.0)) for i in range(100)))
    rows = await store.rows(0)
    assert sorted(r.request_id for r in rows) == sorted(f"r{i}" for i in range(100))
    assert rows[0].members == [MemberUse("goku", "ok", 10, 3, 2, 0.001)]
    tokens, local, cloud = await store.totals("key_a", 0)
    assert tokens == 500 and local == pytest.approx(0.1) and cloud == pytest.approx(0.5)
    assert (await store.totals("key_b", 0))[0] == 0


async def test_a_cascade_s_escalation_is_kept_with_its_row(store: Store) -> None:
    import msgspec

    await store.record(msgspec.structs.replace(row(1), escalated=True, session="s_x"))
    await store.record(msgspec.structs.replace(row(2), escalated=False))
    await store.record(row(3))
    kept = {r.request_id: r.escalated for r in await store.rows(0)}
    assert kept == {"r1": True, "r2": False, "r3": None}


async def test_opening_twice_migrates_once(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for kind in ("sqlite", "postgres"):
        pg = request.getfixturevalue("postgres_url") if kind == "postgres" else None
        cfg = cfg_for(kind, tmp_path, pg)
        first = await open_store(cfg)
        await first.create_key("a", "pro")
        await first.close()
        second = await open_store(cfg)  # the schema exists: nothing is recreated or lost
        assert len(await second.list_keys()) == 1
        await second.close()


async def test_an_unreachable_database_is_a_clear_error() -> None:
    cfg = config.parse('[store]\ndatabase-url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"\n')
    with pytest.raises(StoreError, match=re.escape("cannot open the store postgresql://127.0.0.1:1/none")):
        await open_store(cfg)


async def test_stored_responses_belong_to_their_key_and_expire(store: Store) -> None:
    now = time.time()
    await store.put_response("resp_a", "key_1", now + 60, '{"x": 1}')
    await store.put_response("resp_old", "key_1", now - 1, '{"x": 2}')
    await store.put_response("resp_anon", None, now + 60, '{"x": 3}')
    assert await store.get_response("resp_a", "key_1", now) == '{"x": 1}'
    assert await store.get_response("resp_a", "key_2", now) is None  # another tenant's conversation
    assert await store.get_response("resp_a", None, now) is None
    assert await store.get_response("resp_old", "key_1", now) is None  # expired
    assert await store.get_response("resp_anon", None, now) == '{"x": 3}'
    assert not await store.delete_response("resp_a", "key_2")
    assert await store.delete_response("resp_a", "key_1")
    assert await store.get_response("resp_a", "key_1", now) is None


async def test_with_fsync_a_row_waits_out_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    """With `fsync = true` a row is committed before `record` returns; while `shenron keys` (another process)
    holds SQLite's write lock, it waits on the thread, and is committed all the same. (Without fsync the row
    is safe in the spool file at once: tests/test_spool.py.)"""
    import sqlite3

    s = await open_store(config.parse(f'[store]\npath = "{tmp_path / "x" / "ledger.db"}"\nfsync = true\n'))
    try:
        await s.record(row(0))
        other = sqlite3.connect(tmp_path / "x" / "ledger.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.ensure_future(s.record(row(1)))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # neither lost nor reported safe while it cannot be written
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(waiting, 10)
        await s.record(row(2))
        assert sorted(r.request_id for r in await s.rows(0)) == ["r0", "r1", "r2"]
    finally:
        await s.close()


async def test_rows_committed_on_the_loop_are_checkpointed_into_the_database(tmp_path: Path) -> None:
    """The loop's connection never checkpoints (that fsyncs); the thread does, so the WAL does not grow forever."""
    from proxy.store import spool
    from proxy.store import sqlite as embedded

    s = await open_store(cfg_for("sqlite", tmp_path, None))
    db = tmp_path / "x" / "ledger.db"
    empty = db.stat().st_size
    try:
        for i in range(embedded.CHECKPOINT_ROWS + 10):
            await s.record(row(i))
        await asyncio.sleep(spool.FLUSH_S * 3)  # the spooled rows' batch is inserted
        await s.rows(0)  # the thread has run the checkpoint by the time it answers this
        assert db.stat().st_size > empty + 100 * embedded.CHECKPOINT_ROWS  # the rows are in the file itself
    finally:
        await s.close()
    assert len(await _rows_after_reopen(tmp_path)) == embedded.CHECKPOINT_ROWS + 10


async def _rows_after_reopen(tmp: Path) -> list[LedgerRow]:
    s = await open_store(cfg_for("sqlite", tmp, None))
    try:
        return await s.rows(0)
    finally:
        await s.close()


async def test_every_index_a_ledger_row_writes_is_one_a_query_reads(tmp_path: Path) -> None:
    """Each index costs every request a page written at commit: the ledger keeps only those its queries use
    (a session index no query read cost a pass-through about 10 us)."""
    import sqlite3

    from proxy.store.schema import TOTALS, TOTALS_FOR_KEY
    from proxy.store.sqlite import SQLiteStore

    s = await open_store(cfg_for("sqlite", tmp_path, None))
    await s.close()
    assert isinstance(s, SQLiteStore)
    db = sqlite3.connect(s.path)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger'")}
    queries = [TOTALS.format(p="?"), TOTALS_FOR_KEY.format(p="?"), "SELECT * FROM ledger WHERE ts >= ? ORDER BY ts"]
    params = [(0,), (0, "key_a"), (0,)]
    used = {name for q, p in zip(queries, params, strict=True) for *_, plan in db.execute(f"EXPLAIN QUERY PLAN {q}", p)
            for name in indexes if f"INDEX {name} " in plan + " "}
    assert indexes == used == {"ledger_ts", "ledger_key_ts"}
