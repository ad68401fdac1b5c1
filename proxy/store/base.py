"""The store's records and contract, shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from proxy.store import schema

KEY_PREFIX = "sk-shenron-"
SHOWN = len(KEY_PREFIX) + 6
"""Characters of a key that `keys list` and the logs may show."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Keys are 256 random bits, so one SHA-256 is enough: there is nothing to guess from the hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


class KeyRecord(msgspec.Struct):
    id: str
    name: str
    tier: str
    prefix: str
    created: float
    revoked: float | None = None
    hash: str = ""


class MemberUse(msgspec.Struct, omit_defaults=True):
    name: str
    status: str
    latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cloud: bool = False
    model: str = ""
    cached_tokens: int = 0
    """Of prompt_tokens, read from the server's prompt cache (priced at price-cached-in)."""
    endpoint: str = ""
    """The server of a pool that answered."""


class LedgerRow(msgspec.Struct):
    ts: float
    request_id: str
    key_id: str | None
    model: str
    strategy: str
    status: int
    latency_ms: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cloud_cost_usd: float = 0.0
    cached: bool = False
    stream: bool = False
    error: str | None = None
    members: list[MemberUse] = []
    session: str | None = None
    """The conversation it belongs to: a hash of the client's session key (routing/session.py), never the key."""
    escalated: bool | None = None
    """A cascade's turn: whether it went to `escalate-to` (None for every other strategy)."""


encode_members = msgspec.json.Encoder().encode
decode_members = msgspec.json.Decoder(list[MemberUse]).decode


def ledger_values(row: LedgerRow, flag: Callable[[bool], Any] = bool) -> tuple[Any, ...]:
    """The row as LEDGER_COLUMNS' parameters; `flag` spells a boolean (SQLite: `int`, see `sqlite_values`)."""
    return (row.ts, row.request_id, row.key_id, row.model, row.strategy, row.status, row.latency_ms,
            row.prompt_tokens, row.completion_tokens, row.cost_usd, row.cloud_cost_usd, flag(row.cached),
            flag(row.stream), row.error, encode_members(row.members).decode(), row.session,
            None if row.escalated is None else flag(row.escalated))


def sqlite_values(row: LedgerRow) -> tuple[Any, ...]:
    """SQLite stores booleans as 0 and 1 anyway; handed a `bool`, Python's sqlite3 module looks for an adapter
    first (two failed attribute lookups, about 3,000 instructions a parameter and 20,000 a row)."""
    return ledger_values(row, int)


def ledger_row(values: tuple[Any, ...]) -> LedgerRow:
    d = dict(zip(schema.LEDGER_COLUMNS, values, strict=True))
    d["members"] = decode_members(d["members"])
    d["cached"], d["stream"] = bool(d["cached"]), bool(d["stream"])
    d["escalated"] = None if d["escalated"] is None else bool(d["escalated"])
    return LedgerRow(**d)


class Store(Protocol):
    where: str

    async def create_key(self, name: str, tier: str) -> tuple[KeyRecord, str]: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def find_key(self, key_hash: str) -> KeyRecord | None: ...
    async def record(self, row: LedgerRow) -> None: ...
    async def rows(self, since: float) -> list[LedgerRow]: ...
    async def totals(self, key_id: str | None, since: float) -> tuple[int, float, float]: ...
    async def put_response(self, id: str, key_id: str | None, expires: float, body: str) -> None: ...
    async def get_response(self, id: str, key_id: str | None, now: float) -> str | None:
        """A stored response's JSON, if it exists for this key and has not expired."""
        ...
    async def delete_response(self, id: str, key_id: str | None) -> bool: ...
    async def close(self) -> None: ...


class GroupCommit:
    """Rows are written in batches: whoever arrives during a write joins the next one.

    `record` returns only when its row is committed, so a response is never sent for a
    row that a crash could lose, and a busy proxy pays one commit per batch, not per row.
    (SQLite without fsync spools rows instead: `proxy.store.spool`.)
    """

    def __init__(self, write: Callable[[list[LedgerRow]], Awaitable[None]]) -> None:
        self._write = write
        self._pending: list[tuple[LedgerRow, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, row: LedgerRow) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, fut))
        if self._task is None or self._task.done():  # else the write under way takes it next
            self._task = asyncio.create_task(self._drain())
        await fut  # a cancelled request still gets its row written: the batch holds the row, not the future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write([r for r, _ in batch])
            except Exception as e:  # every waiter learns of the failure; none is told its row is safe
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            for _, f in batch:
                if not f.done():
                    f.set_result(None)

    async def flush(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
