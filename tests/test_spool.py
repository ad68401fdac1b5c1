"""The ledger's spool: a row is safe in its file when `record` returns, readers see it at once, a dead
process's rows come back exactly once, and nothing is counted twice while batches move into SQLite."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import msgspec
import pytest

from proxy.store import spool
from proxy.store.base import ledger_row, sqlite_values
from proxy.store.schema import LEDGER_COLUMNS, MIGRATIONS
from proxy.store.sqlite import SQLiteStore
from tests.test_store import row


def in_sqlite(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        return [r[0] for r in c.execute("SELECT request_id FROM ledger ORDER BY request_id")]


def spool_files(db: Path) -> list[Path]:
    return sorted(db.parent.glob(db.name + ".spool.*"))


def killed_writer(db: Path, script: str) -> None:
    """Run `script` against a store in another process that then dies by SIGKILL, without closing anything."""
    body = textwrap.indent(textwrap.dedent(script).strip(), "    ")
    code = "\n".join([
        "import asyncio, os, signal, sys",
        f"sys.path[:0] = {sys.path!r}",
        "from pathlib import Path",
        "from proxy.store.sqlite import SQLiteStore",
        "from tests.test_store import row",
        "async def main():",
        f"    store = SQLiteStore(Path({str(db)!r}))",
        "    await store.open()",
        body,
        "    os.kill(os.getpid(), signal.SIGKILL)",
        "asyncio.run(main())",
    ])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).parent.parent)
    assert p.returncode == -signal.SIGKILL, p.stderr


async def test_a_recorded_row_is_in_its_spool_file_and_read_by_another_process_at_once(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db)
    await store.open()
    await store.record(row(1))
    assert in_sqlite(db) == []  # not yet inserted: the batch waits FLUSH_S
    (f,) = spool_files(db)
    assert b'"request_id":"r1"' in f.read_bytes()
    other = SQLiteStore(db).open_sync()  # as `shenron usage` opens it, while the proxy runs
    assert [r.request_id for r in other.rows_sync(0)] == ["r1"]
    assert other.totals_sync("key_a", 0)[0] == 5 and other.totals_sync("key_b", 0)[0] == 0
    assert spool_files(db) == [f], "a live process's file was taken"
    await asyncio.sleep(spool.FLUSH_S * 3)
    assert in_sqlite(db) == ["r1"]
    assert [r.request_id for r in other.rows_sync(0)] == ["r1"], "counted twice after its batch was inserted"
    await store.close()
    assert spool_files(db) == [] and in_sqlite(db) == ["r1"]
    other.db.close()


def test_a_killed_process_s_rows_come_back_once_at_the_next_open(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    killed_writer(db, """
        for i in range(30):
            await store.record(row(i))
        await asyncio.sleep(0.3)  # these thirty are in SQLite, and the mark says so
        for i in range(30, 50):
            await store.record(row(i))
    """)
    assert len(in_sqlite(db)) == 30 and len(spool_files(db)) == 1
    reader = SQLiteStore(db).open_sync()  # recovers the dead process's file
    assert sorted(in_sqlite(db)) == sorted(f"r{i}" for i in range(50))
    assert spool_files(db) == []
    assert len(reader.rows_sync(0)) == 50
    reader.db.close()
    again = SQLiteStore(db).open_sync()
    assert len(again.rows_sync(0)) == 50 and len(in_sqlite(db)) == 50
    again.db.close()


def test_an_unfinished_last_row_is_dropped_with_a_warning_and_the_rest_recovered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "ledger.db"
    killed_writer(db, """
        for i in range(5):
            await store.record(row(i))
    """)
    (f,) = spool_files(db)
    with f.open("ab") as out:
        out.write(b'{"ts":1.0,"request_id":"torn","ke')  # a write the power cut
    reader = SQLiteStore(db).open_sync()
    assert sorted(in_sqlite(db)) == [f"r{i}" for i in range(5)]
    assert "unfinished row" in caplog.text
    reader.db.close()


async def test_a_big_spool_file_is_replaced_once_its_rows_are_in_sqlite(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "ROTATE_BYTES", 2000)
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db)
    await store.open()
    names = set()
    for i in range(60):
        await store.record(row(i))
        names |= {p.name for p in spool_files(db)}
        if i % 10 == 9:
            await asyncio.sleep(spool.FLUSH_S * 2)
    assert len(names) >= 3, names
    assert len(spool_files(db)) <= 1
    assert sorted(r.request_id for r in store.rows_sync(0)) == sorted(f"r{i}" for i in range(60))
    await store.close()
    assert sorted(in_sqlite(db)) == sorted(f"r{i}" for i in range(60)) and spool_files(db) == []


async def test_a_batch_waits_for_another_process_s_write_lock_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db)
    await store.open()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # `shenron keys create` writing, slowly
    for i in range(10):
        await store.record(row(i))
    await asyncio.sleep(spool.FLUSH_S * 3)
    assert in_sqlite(db) == []
    assert len(store.rows_sync(0)) == 10
    other.execute("COMMIT")
    await asyncio.sleep(0.5)
    assert sorted(in_sqlite(db)) == sorted(f"r{i}" for i in range(10))
    await store.close()
    other.close()


async def test_readers_never_count_a_row_twice_while_batches_move(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "ROTATE_BYTES", 4000)
    monkeypatch.setattr(spool, "FLUSH_S", 0.002)
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db)
    await store.open()
    reader = SQLiteStore(db).open_sync()
    seen: list[list[str]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append([r.request_id for r in reader.rows_sync(0)])

    t = threading.Thread(target=read)
    t.start()
    recorded = 0
    for i in range(400):
        await store.record(row(i))
        recorded += 1
        if i % 7 == 0:
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    stop.set()
    t.join()
    assert len(seen) > 10
    for ids in seen:
        assert len(ids) == len(set(ids)), "a row counted twice"
    counts = [len(ids) for ids in seen]
    assert counts == sorted(counts), "a row vanished between two reads"
    assert len(reader.rows_sync(0)) == recorded
    await store.close()
    reader.db.close()


async def test_with_fsync_rows_are_committed_before_record_returns_and_nothing_is_spooled(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = SQLiteStore(db, fsync=True)
    await store.open()
    await store.record(row(1))
    assert in_sqlite(db) == ["r1"] and spool_files(db) == []
    await store.close()


def test_the_spool_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"

    async def one() -> None:
        store = SQLiteStore(db)
        await store.open()
        await store.record(row(1))
        (f,) = spool_files(db)
        assert f.stat().st_mode & 0o077 == 0, oct(f.stat().st_mode)
        await store.close()

    asyncio.run(one())


def test_sqlite_is_handed_no_booleans_and_reads_them_back() -> None:
    """A `bool` parameter sends Python's sqlite3 binder looking for an adapter on every row."""
    r = msgspec.structs.replace(row(1), cached=True, stream=False, escalated=True)
    assert not any(isinstance(v, bool) for v in sqlite_values(r))
    db = sqlite3.connect(":memory:")
    for statements in MIGRATIONS:
        for sql in statements:
            db.execute(sql)
    db.execute(spool.INSERT, sqlite_values(r))
    back = ledger_row(db.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger").fetchone())
    assert (back.cached, back.stream, back.escalated) == (True, False, True) and back == r


def test_a_file_that_cannot_be_recovered_now_is_kept_and_still_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "ledger.db"
    killed_writer(db, """
        for i in range(3):
            await store.record(row(i))
    """)
    with monkeypatch.context() as m:
        m.setattr(spool, "INSERT", "INSERT INTO no_such_table VALUES (?)")  # as a database that refuses writes
        reader = SQLiteStore(db).open_sync()  # opens all the same
    assert "not recovered now" in caplog.text
    assert len(spool_files(db)) == 1 and in_sqlite(db) == []
    assert sorted(r.request_id for r in reader.rows_sync(0)) == ["r0", "r1", "r2"]
    reader.db.close()
    again = SQLiteStore(db).open_sync()
    assert sorted(in_sqlite(db)) == ["r0", "r1", "r2"] and spool_files(db) == []
    again.db.close()
