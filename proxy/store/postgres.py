"""The shared store: keys and ledger in PostgreSQL, so every replica sees the same keys and rows."""

from __future__ import annotations

import time
from typing import Any

from psycopg_pool import AsyncConnectionPool

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
from routing.settings import redacted

LOCK = 7_361_920_451
"""Advisory lock id: replicas starting together migrate one at a time."""


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redacted(url)
        self.pool = AsyncConnectionPool(url, min_size=1, max_size=8, open=False, kwargs={"autocommit": True})
        self._commits = GroupCommit(self._write)

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=10)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS shenron_schema (version INTEGER NOT NULL)")
            cur = await conn.execute("SELECT version FROM shenron_schema")
            row = await cur.fetchone()
            version = row[0] if row else 0
            if row is None:
                await conn.execute("INSERT INTO shenron_schema VALUES (0)")
            for n, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("UPDATE shenron_schema SET version = %s", (n,))

    async def close(self) -> None:
        await self._commits.flush()
        await self.pool.close()

    async def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchall()

    async def create_key(self, name: str, tier: str) -> tuple[KeyRecord, str]:
        key = new_key()
        rec = KeyRecord(id=new_key_id(), name=name, tier=tier, prefix=key[:SHOWN], created=time.time(),
                        hash=hash_key(key))
        async with self.pool.connection() as conn:
            await conn.execute("INSERT INTO keys (id, name, tier, prefix, hash, created) VALUES (%s,%s,%s,%s,%s,%s)",
                               (rec.id, rec.name, rec.tier, rec.prefix, rec.hash, rec.created))
        return rec, key

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._fetch(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys ORDER BY created")
        return [KeyRecord(**dict(zip(KEY_COLUMNS, r, strict=True))) for r in rows]

    async def revoke_key(self, key_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("UPDATE keys SET revoked = %s WHERE id = %s AND revoked IS NULL",
                                     (time.time(), key_id))
            return cur.rowcount > 0

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        rows = await self._fetch(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys WHERE hash = %s", (key_hash,))
        return KeyRecord(**dict(zip(KEY_COLUMNS, rows[0], strict=True))) if rows else None

    async def _write(self, rows: list[LedgerRow]) -> None:
        marks = ", ".join("%s" for _ in LEDGER_COLUMNS)
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({marks})",
                                  [ledger_values(r) for r in rows])

    async def record(self, row: LedgerRow) -> None:
        await self._commits.record(row)

    async def rows(self, since: float) -> list[LedgerRow]:
        rows = await self._fetch(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger WHERE ts >= %s ORDER BY ts", (since,))
        return [ledger_row(r) for r in rows]

    async def totals(self, key_id: str | None, since: float) -> tuple[int, float, float]:
        sql = TOTALS.format(p="%s") if key_id is None else TOTALS_FOR_KEY.format(p="%s")
        args: tuple[Any, ...] = (since,) if key_id is None else (since, key_id)
        (tokens, local, cloud), = await self._fetch(sql, args)
        return int(tokens), float(local), float(cloud)

    async def put_response(self, id: str, key_id: str | None, expires: float, body: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM responses WHERE expires < %s", (time.time(),))
            await conn.execute("INSERT INTO responses (id, key_id, expires, body) VALUES (%s, %s, %s, %s) "
                               "ON CONFLICT (id) DO UPDATE SET key_id = EXCLUDED.key_id, "
                               "expires = EXCLUDED.expires, body = EXCLUDED.body", (id, key_id, expires, body))

    async def get_response(self, id: str, key_id: str | None, now: float) -> str | None:
        rows = await self._fetch("SELECT body FROM responses WHERE id = %s AND key_id IS NOT DISTINCT FROM %s "
                                 "AND expires >= %s", (id, key_id, now))
        return str(rows[0][0]) if rows else None

    async def delete_response(self, id: str, key_id: str | None) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM responses WHERE id = %s AND key_id IS NOT DISTINCT FROM %s",
                                     (id, key_id))
            return cur.rowcount > 0
