"""The embedded store: one SQLite file in WAL mode, created on first use.

Every statement runs on one worker thread with one connection, so the event loop never blocks on
disk; only ledger rows are written on the loop: appended to this process's spool file, and inserted
in batches on a connection of their own, where a WAL commit without fsync is a write to the page cache
(see `spool`). With `fsync`, rows are committed one batch at a time on the thread instead
(`GroupCommit`). `shenron keys` and `shenron usage` open the same file from another process; WAL lets
them read and write while the proxy runs, and they read the spooled rows too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from proxy.store import spool
from proxy.store.base import (
    SHOWN,
    GroupCommit,
    KeyRecord,
    LedgerRow,
    hash_key,
    ledger_row,
    new_key,
    new_key_id,
)
from proxy.store.schema import KEY_COLUMNS, LEDGER_COLUMNS, MIGRATIONS, TOTALS, TOTALS_FOR_KEY

log = logging.getLogger("shenron.store")
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
        self._commits = GroupCommit(self._write)
        self._spool = None if fsync else spool.Spool(path)
        self._batch: list[LedgerRow] = []
        """Spooled rows not yet in SQLite, oldest first."""
        self._due: asyncio.Handle | None = None
        self._flushing: asyncio.Task[None] | None = None
        """A batch waiting on the thread for another process's write lock."""

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
        db.execute(spool.SCHEMA)
        spool.recover(db, self.path)
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
        await self._flush_all()
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
    def _write_sync(self, rows: list[LedgerRow]) -> None:
        with spool.transaction(self.db):
            spool.insert(self.db, rows)

    async def _write(self, rows: list[LedgerRow]) -> None:
        await self._run(self._write_sync, rows)

    def _schedule(self) -> None:
        """A batch due: in FLUSH_S, or on the next turn once it holds FLUSH_ROWS. Most rows find one already
        due and ask the loop nothing (on Python 3.11 `get_running_loop` is a `getpid` system call)."""
        if self._flushing is not None:
            return  # it schedules the next batch when it is done
        if len(self._batch) >= spool.FLUSH_ROWS:
            if self._due is not None:
                self._due.cancel()
            self._due = asyncio.get_running_loop().call_soon(self._flush_now)
        elif self._due is None:
            self._due = asyncio.get_running_loop().call_later(spool.FLUSH_S, self._flush_now)

    def _flush_now(self) -> None:
        """The batch into SQLite on the loop; on the thread, which waits, if another process is writing."""
        self._due = None
        sp = self._spool
        if not self._batch or self._flushing is not None or sp is None or self._now is None:
            return
        rows, self._batch = self._batch, []
        name, offset = sp.name, sp.offset
        try:
            spool.commit(self._now, rows, name, offset)
        except sqlite3.Error as e:
            self._batch[:0] = rows
            if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
                self._flushing = asyncio.get_running_loop().create_task(self._flush_waiting())
            else:  # the rows are safe in the spool file; the next batch tries again
                log.warning("ledger: %d rows wait in the spool file: %s", len(rows), e)
                self._due = asyncio.get_running_loop().call_later(spool.FLUSH_S * 20, self._flush_now)
            return
        self._committed(len(rows))
        if offset >= spool.ROTATE_BYTES:
            try:
                sp.retire(self._now)
            except (OSError, sqlite3.Error) as e:  # kept, and retired after a later batch
                log.warning("ledger: could not retire the spool file %s: %s", name, e)

    async def _flush_waiting(self) -> None:
        sp = self._spool
        assert sp is not None
        rows, self._batch = self._batch, []
        try:
            await self._run(spool.commit, self.db, rows, sp.name, sp.offset)
        except sqlite3.Error as e:
            self._batch[:0] = rows
            log.warning("ledger: %d rows wait in the spool file: %s", len(rows), e)
        else:
            self._committed(len(rows))
        finally:
            self._flushing = None
        if self._batch:
            self._schedule()

    def _committed(self, rows: int) -> None:
        """Every CHECKPOINT_ROWS rows the WAL is copied back into the database on the thread, where its
        fsync blocks nothing."""
        self._unchecked += rows
        if self._unchecked >= CHECKPOINT_ROWS:
            self._unchecked = 0
            self._pool.submit(self._checkpoint)

    async def _flush_all(self) -> None:
        """At close: every spooled row into SQLite and the file removed, or the file left to `recover`."""
        sp = self._spool
        if sp is None:
            return
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        if sp.fd is None:
            return

        def last() -> None:
            if self._batch:
                spool.commit(self.db, self._batch, sp.name, sp.offset)
                self._batch = []
            sp.retire(self.db)

        try:
            await self._run(last)
        except (OSError, sqlite3.Error) as e:
            log.warning("ledger: spooled rows left in %s for the next start: %s", sp.name, e)
            sp.abandon()

    def _checkpoint(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:  # the next one will try again; the rows are safe in the WAL meanwhile
            log.warning("ledger checkpoint failed: %s", e)

    async def record(self, row: LedgerRow) -> None:
        """Spooled (or, with fsync, committed) when this returns: an answer is never sent for a row a crash loses."""
        if self._spool is None:
            await self._commits.record(row)
            return
        self._spool.append(row)
        self._batch.append(row)
        self._schedule()

    def _with_spooled(self, query: str, args: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], list[LedgerRow]]:
        return spool.unflushed(self.db, self.path, query, args)

    def rows_sync(self, since: float) -> list[LedgerRow]:
        found, spooled = self._with_spooled(
            f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger WHERE ts >= ? ORDER BY ts", (since,))
        rows = [ledger_row(r) for r in found]
        if spooled:
            rows = sorted(rows + [r for r in spooled if r.ts >= since], key=lambda r: r.ts)
        return rows

    async def rows(self, since: float) -> list[LedgerRow]:
        return await self._run(self.rows_sync, since)  # type: ignore[no-any-return]

    def totals_sync(self, key_id: str | None, since: float) -> tuple[int, float, float]:
        sql = TOTALS.format(p="?") if key_id is None else TOTALS_FOR_KEY.format(p="?")
        args: tuple[Any, ...] = (since,) if key_id is None else (since, key_id)
        found, spooled = self._with_spooled(sql, args)
        tokens, local, cloud = found[0]
        for r in spooled:
            if r.ts >= since and (key_id is None or r.key_id == key_id):
                tokens += r.prompt_tokens + r.completion_tokens
                local += r.cost_usd - r.cloud_cost_usd
                cloud += r.cloud_cost_usd
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
