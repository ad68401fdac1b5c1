"""The embedded store: one SQLite file in WAL mode, created on first use.

Every statement runs on one worker thread with one connection, so the event loop never
blocks on disk; only ledger rows are committed on the loop, on a connection of their own, where a
WAL commit without fsync is a write to the page cache (see `GroupCommit`). `shenron keys` and
`shenron usage` open the same file from another process; WAL lets them read and write while the proxy runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from proxy.store.base import (
    SHOWN,
    GroupCommit,
    KeyRecord,
    LedgerRow,
    hash_key,
    ledger_row,
    ledger_values,
    new_key,
    new_key_id,
)
from proxy.store.schema import KEY_COLUMNS, LEDGER_COLUMNS, MIGRATIONS, TOTALS, TOTALS_FOR_KEY

log = logging.getLogger("shenron.store")
INSERT = f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' for _ in LEDGER_COLUMNS)})"
CHECKPOINT_ROWS = 1000
"""Rows committed on the loop between two checkpoints (SQLite's own default is 1,000 pages)."""


class SQLiteStore:
    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = path
        self.where = f"sqlite:{path}"
        self.fsync = fsync
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shenron-sqlite")
        self._now: sqlite3.Connection | None = None
        """The event loop's own connection for ledger rows (not with fsync: that commit would block the loop)."""
        self._unchecked = 0
        self._commits = GroupCommit(self._write, None if fsync else self._write_now)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for n, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            for sql in statements:
                db.execute(sql)
            db.execute(f"PRAGMA user_version={n}")
            db.execute("COMMIT")
        self._db = db
        if not self.fsync:
            now = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
            now.execute("PRAGMA synchronous=NORMAL")
            now.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints (they fsync) run on the thread instead
            self._now = now

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "open() first"
        return self._db

    async def open(self) -> None:
        await self._run(self._connect)

    def open_sync(self) -> SQLiteStore:
        self._connect()
        return self

    async def close(self) -> None:
        await self._commits.flush()
        if self._now is not None:
            self._now.close()
            self._now = None
        if self._db is not None:
            await self._run(self._db.close)
        self._pool.shutdown(wait=True)

    # keys
    def create_key_sync(self, name: str, tier: str) -> tuple[KeyRecord, str]:
        key = new_key()
        rec = KeyRecord(id=new_key_id(), name=name, tier=tier, prefix=key[:SHOWN], created=time.time(),
                        hash=hash_key(key))
        self.db.execute("INSERT INTO keys (id, name, tier, prefix, hash, created) VALUES (?, ?, ?, ?, ?, ?)",
                        (rec.id, rec.name, rec.tier, rec.prefix, rec.hash, rec.created))
        return rec, key

    def list_keys_sync(self) -> list[KeyRecord]:
        cur = self.db.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys ORDER BY created")
        return [KeyRecord(**dict(zip(KEY_COLUMNS, r, strict=True))) for r in cur]

    def revoke_key_sync(self, key_id: str) -> bool:
        cur = self.db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))
        return cur.rowcount > 0

    def find_key_sync(self, key_hash: str) -> KeyRecord | None:
        r = self.db.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys WHERE hash = ?", (key_hash,)).fetchone()
        return KeyRecord(**dict(zip(KEY_COLUMNS, r, strict=True))) if r else None

    async def create_key(self, name: str, tier: str) -> tuple[KeyRecord, str]:
        return await self._run(self.create_key_sync, name, tier)  # type: ignore[no-any-return]

    async def list_keys(self) -> list[KeyRecord]:
        return await self._run(self.list_keys_sync)  # type: ignore[no-any-return]

    async def revoke_key(self, key_id: str) -> bool:
        return await self._run(self.revoke_key_sync, key_id)  # type: ignore[no-any-return]

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        return await self._run(self.find_key_sync, key_hash)  # type: ignore[no-any-return]

    # ledger
    def _write_sync(self, rows: list[LedgerRow], db: sqlite3.Connection | None = None) -> None:
        db = db or self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(INSERT, [ledger_values(r) for r in rows])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def _write(self, rows: list[LedgerRow]) -> None:
        await self._run(self._write_sync, rows)

    def _write_now(self, rows: list[LedgerRow]) -> bool:
        """Commit on the event loop, or False at once when another process holds the write lock (the
        thread's connection waits for it instead). Every CHECKPOINT_ROWS rows the WAL is copied back
        into the database on the thread, where its fsync blocks nothing."""
        if self._now is None:
            return False
        try:
            if len(rows) == 1:  # its own transaction: one call into SQLite instead of three. Busy here (a write
                self._now.execute(INSERT, ledger_values(rows[0]))  # by another process) goes to the thread
            else:
                self._write_sync(rows, self._now)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                return False
            raise
        self._unchecked += len(rows)
        if self._unchecked >= CHECKPOINT_ROWS:
            self._unchecked = 0
            self._pool.submit(self._checkpoint)
        return True

    def _checkpoint(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:  # the next one will try again; the rows are safe in the WAL meanwhile
            log.warning("ledger checkpoint failed: %s", e)

    async def record(self, row: LedgerRow) -> None:
        await self._commits.record(row)

    def rows_sync(self, since: float) -> list[LedgerRow]:
        cur = self.db.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger WHERE ts >= ? ORDER BY ts", (since,))
        return [ledger_row(r) for r in cur]

    async def rows(self, since: float) -> list[LedgerRow]:
        return await self._run(self.rows_sync, since)  # type: ignore[no-any-return]

    def totals_sync(self, key_id: str | None, since: float) -> tuple[int, float, float]:
        sql = TOTALS.format(p="?") if key_id is None else TOTALS_FOR_KEY.format(p="?")
        args: tuple[Any, ...] = (since,) if key_id is None else (since, key_id)
        tokens, local, cloud = self.db.execute(sql, args).fetchone()
        return int(tokens), float(local), float(cloud)

    async def totals(self, key_id: str | None, since: float) -> tuple[int, float, float]:
        """Tokens, local cost and cloud cost since a time, for one key or everyone."""
        return await self._run(self.totals_sync, key_id, since)  # type: ignore[no-any-return]

    # stored responses (`previous_response_id`); expired ones are swept when a new one is stored
    def put_response_sync(self, id: str, key_id: str | None, expires: float, body: str) -> None:
        self.db.execute("DELETE FROM responses WHERE expires < ?", (time.time(),))
        self.db.execute("INSERT OR REPLACE INTO responses (id, key_id, expires, body) VALUES (?, ?, ?, ?)",
                        (id, key_id, expires, body))

    def get_response_sync(self, id: str, key_id: str | None, now: float) -> str | None:
        r = self.db.execute("SELECT body FROM responses WHERE id = ? AND key_id IS ? AND expires >= ?",
                            (id, key_id, now)).fetchone()
        return str(r[0]) if r else None

    def delete_response_sync(self, id: str, key_id: str | None) -> bool:
        return self.db.execute("DELETE FROM responses WHERE id = ? AND key_id IS ?", (id, key_id)).rowcount > 0

    async def put_response(self, id: str, key_id: str | None, expires: float, body: str) -> None:
        await self._run(self.put_response_sync, id, key_id, expires, body)

    async def get_response(self, id: str, key_id: str | None, now: float) -> str | None:
        return await self._run(self.get_response_sync, id, key_id, now)  # type: ignore[no-any-return]

    async def delete_response(self, id: str, key_id: str | None) -> bool:
        return await self._run(self.delete_response_sync, id, key_id)  # type: ignore[no-any-return]
