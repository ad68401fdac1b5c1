"""Where keys and the usage ledger live: SQLite by default, PostgreSQL when replicas share one."""

from __future__ import annotations

from pathlib import Path

from proxy.store.base import KeyRecord, LedgerRow, MemberUse, Store, hash_key, new_key
from routing.config import Config, store_path
from routing.settings import redacted

__all__ = ["KeyRecord", "LedgerRow", "MemberUse", "Store", "StoreError", "hash_key", "new_key", "open_store"]


class StoreError(Exception):
    """The store cannot be opened; the message is meant for a person."""


async def open_store(cfg: Config) -> Store:
    """Open (and create or migrate) the store the config names."""
    store: Store
    try:
        if cfg.store.database_url:
            from proxy.store.postgres import PostgresStore

            store = PostgresStore(cfg.store.database_url)
            await store.open()
        else:
            from proxy.store.sqlite import SQLiteStore

            store = SQLiteStore(Path(store_path(cfg)), fsync=cfg.store.fsync)
            await store.open()
    except Exception as e:
        raise StoreError(f"cannot open the store {describe(cfg)}: {e}") from e
    return store


def describe(cfg: Config) -> str:
    if cfg.store.database_url:
        return redacted(cfg.store.database_url)
    return f"sqlite:{store_path(cfg)}"
