"""Ledger rows spooled to an append-only file, then inserted into SQLite in batches.

A row committed to SQLite on its own costs a B-tree insert into the table and each index and a WAL
frame for every page it touched: about 80 us of a pass-through's time at one connection, where the
request's other work leaves SQLite's code and pages cold between two commits (BENCHMARKS.md). A row appended to
a file is one `write` of a few hundred bytes, and the page cache keeps it through a kill -9 as it
keeps a WAL commit without fsync (what `[store] fsync = false` already promised). So an answered
request's row is written here before the answer is sent, and the rows of the last `FLUSH_S` go into
SQLite in one transaction, which also records how far into the file it got (`spool_marks`).

Nothing is lost or counted twice, whoever reads:
- a reader (`shenron usage`, the budgets' totals) takes the rows SQLite holds and, from each spool
  file, the rows past the mark its snapshot saw (`unflushed`);
- a process that died leaves its file unlocked (each owner holds an `flock` on its own); the next
  process to open the store inserts what is past the mark and removes the file (`recover`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from proxy.store.base import LedgerRow, sqlite_values
from proxy.store.schema import LEDGER_COLUMNS

log = logging.getLogger("shenron.store")
FLUSH_S = 0.01
"""How long a row waits in the file alone: a batch of about fifteen rows at one connection. The batch is
inserted on the event loop, so a larger one would hold up the requests behind it (about 70k instructions
a row); a smaller one would pay the commit for fewer rows. 10 and 50 ms cost the same CPU per request."""
FLUSH_ROWS = 128
"""A batch this large is inserted on the next loop turn instead."""
ROTATE_BYTES = 1 << 20
"""A file this large, once all its rows are in SQLite, is removed; the next row starts a new one."""
KEEP_MARKS_S = 3600.0
"""How long a removed file's mark is kept: a reader that listed the file before it went still needs it."""
SCHEMA = "CREATE TABLE IF NOT EXISTS spool_marks (file TEXT PRIMARY KEY, offset INTEGER NOT NULL, " \
         "done BOOLEAN NOT NULL, updated DOUBLE PRECISION NOT NULL)"
INSERT = f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' for _ in LEDGER_COLUMNS)})"
MARK = "INSERT OR REPLACE INTO spool_marks (file, offset, done, updated) VALUES (?, ?, ?, ?)"
PRUNE = "DELETE FROM spool_marks WHERE done AND updated < ?"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(LedgerRow).decode


def _prefix(store: Path) -> str:
    """What the store's spool files are called: `shenron.db.spool.PID.XXXX` beside `shenron.db`."""
    return store.name + ".spool."


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` (the write lock, waited for as long as the connection waits) ... `COMMIT`, or
    `ROLLBACK` on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def insert(db: sqlite3.Connection, rows: list[LedgerRow]) -> None:
    db.executemany(INSERT, [sqlite_values(r) for r in rows])


sqlite3.register_adapter(type(None), lambda _: None)
"""Python's sqlite3 binder looks up an adapter for every parameter that is not an int, float, str or
bytes: for None, absent one, two failed attribute lookups (`__adapt__`, `__conform__`), each a formatted
AttributeError, about 4,000 instructions; a ledger row has three or four. Found in the adapters' table,
None binds as NULL as before, for a call of this lambda."""


class Spool:
    """This process's spool file: created on its first row, locked while the process lives."""

    def __init__(self, store: Path) -> None:
        self.dir, self.prefix = store.parent, _prefix(store)
        self.fd: int | None = None
        self.name = ""
        self.offset = 0
        """Bytes written to the current file."""
        self.torn = False
        """The last write stopped part-way: the next row starts a new line, and readers skip the torn one."""

    def append(self, row: LedgerRow) -> None:
        """The row is on its way to disk when this returns (in the page cache: a kill -9 keeps it)."""
        if self.fd is None:
            self._create()
            assert self.fd is not None
        line = _encode(row) + b"\n"
        if self.torn:
            line = b"\n" + line
        n = os.write(self.fd, line)
        self.offset += n
        self.torn = n != len(line)
        if self.torn:  # a full disk: this row is not safe, and the caller's request must not say it is
            raise OSError(f"ledger spool {self.name}: wrote {n} of {len(line)} bytes")

    def _create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.prefix}{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new name: nobody else can hold it
        self.fd, self.name, self.offset, self.torn = fd, name, 0, False

    def abandon(self) -> None:
        """Stop writing to the current file and leave it to `recover` (its rows past the mark included)."""
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.name, self.offset, self.torn = None, "", 0, False

    def retire(self, db: sqlite3.Connection) -> None:
        """Remove the current file, every row of which is in SQLite up to `offset` (the caller's commit)."""
        assert self.fd is not None
        path, fd = self.dir / self.name, self.fd
        now = time.time()
        db.execute("UPDATE spool_marks SET done = 1, updated = ? WHERE file = ?", (now, self.name))
        db.execute(PRUNE, (now - KEEP_MARKS_S,))
        path.unlink(missing_ok=True)
        self.fd, self.name, self.offset, self.torn = None, "", 0, False
        os.close(fd)  # the lock goes last: a recoverer that opened the file first finds it gone


def commit(db: sqlite3.Connection, rows: list[LedgerRow], name: str, offset: int) -> None:
    """The rows and how far into the file `name` they reach, in one transaction."""
    with transaction(db):
        insert(db, rows)
        db.execute(MARK, (name, offset, 0, time.time()))


def _files(dir: Path, prefix: str) -> list[Path]:
    try:
        return sorted(p for p in dir.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _rows(data: bytes, name: str) -> tuple[list[LedgerRow], int]:
    """The whole lines of `data` as rows, and how many bytes they take; an unreadable line is skipped."""
    rows: list[LedgerRow] = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if not line:  # after a torn write
            continue
        try:
            rows.append(_decode(line))
        except msgspec.DecodeError as e:
            log.warning("ledger spool %s: skipped an unreadable row (%s)", name, e)
    return rows, end


@contextlib.contextmanager
def _opened(paths: list[Path]) -> Iterator[list[tuple[str, int]]]:
    fds: list[tuple[str, int]] = []
    try:
        for p in paths:
            try:
                fds.append((p.name, os.open(p, os.O_RDONLY | os.O_CLOEXEC)))
            except FileNotFoundError:
                continue  # its rows went into SQLite and the file away
            except OSError as e:  # another user's file: this reader cannot count its rows, and says so
                log.warning("ledger spool %s: its rows are not counted here: %s", p.name, e)
        yield fds
    finally:
        for _, fd in fds:
            os.close(fd)


def _read(fd: int, offset: int) -> bytes:
    chunks = []
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def unflushed(db: sqlite3.Connection, store: Path, query: str, args: tuple[object, ...]
              ) -> tuple[list[tuple[object, ...]], list[LedgerRow]]:
    """`query`'s result and the spooled rows it cannot see yet, from one snapshot.

    The files are opened before the snapshot, so a file removed meanwhile is still read; the rows past
    the mark the snapshot holds for a file are exactly those the snapshot lacks (a file with no mark
    has none in SQLite yet)."""
    with _opened(_files(store.parent, _prefix(store))) as fds:
        db.execute("BEGIN")
        try:
            marks: dict[str, int] = dict(db.execute("SELECT file, offset FROM spool_marks").fetchall())
            result = db.execute(query, args).fetchall()
        finally:
            db.execute("COMMIT")
        spooled: list[LedgerRow] = []
        for name, fd in fds:
            spooled += _rows(_read(fd, marks.get(name, 0)), name)[0]
    return result, spooled


def recover(db: sqlite3.Connection, store: Path) -> int:
    """Insert the rows of dead processes' files that SQLite lacks and remove the files; rows recovered.
    A file that cannot be recovered now (a read-only database, a full disk) stays, and its rows are
    still read by `unflushed`; the next open tries again."""
    recovered = 0
    for path in _files(store.parent, _prefix(store)):
        try:
            recovered += _recover(db, path)
        except (OSError, sqlite3.Error) as e:
            log.warning("ledger spool %s: not recovered now, its rows are still counted: %s", path.name, e)
    try:
        db.execute(PRUNE, (time.time() - KEEP_MARKS_S,))
    except sqlite3.Error as e:
        log.warning("ledger: old spool marks not pruned: %s", e)
    if recovered:
        log.warning("ledger: %d rows of a process that stopped without closing the store were recovered", recovered)
    return recovered


def _recover(db: sqlite3.Connection, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its process lives
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return 0
        except FileNotFoundError:
            return 0  # another process recovered it first
        with transaction(db):
            mark = db.execute("SELECT offset FROM spool_marks WHERE file = ?", (path.name,)).fetchone()
            data = _read(fd, mark[0] if mark else 0)
            rows, used = _rows(data, path.name)
            if used < len(data):
                log.warning("ledger spool %s: dropped %d bytes of an unfinished row", path.name, len(data) - used)
            insert(db, rows)
            db.execute(MARK, (path.name, (mark[0] if mark else 0) + len(data), 1, time.time()))
        path.unlink()
        return len(rows)
    finally:
        os.close(fd)
