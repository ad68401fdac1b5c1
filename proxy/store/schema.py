"""The schema, as numbered migrations applied in order at start (SQLite and PostgreSQL spell types alike)."""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS keys (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL, revoked DOUBLE PRECISION)""",
        """CREATE TABLE IF NOT EXISTS ledger (
            ts DOUBLE PRECISION NOT NULL, request_id TEXT NOT NULL, key_id TEXT, model TEXT NOT NULL,
            strategy TEXT NOT NULL, status INTEGER NOT NULL, latency_ms INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            cost_usd DOUBLE PRECISION NOT NULL, cloud_cost_usd DOUBLE PRECISION NOT NULL,
            cached BOOLEAN NOT NULL, stream BOOLEAN NOT NULL, error TEXT, members TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts)",
        "CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_id, ts)",
    ],
    [  # stored Responses API answers, for `previous_response_id`; `body` is JSON text
        """CREATE TABLE IF NOT EXISTS responses (
            id TEXT PRIMARY KEY, key_id TEXT, expires DOUBLE PRECISION NOT NULL, body TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)",
    ],
    [  # the conversation a request belongs to (a hash of the client's session key), for `usage --by session`
        "ALTER TABLE ledger ADD COLUMN session TEXT",
        "CREATE INDEX IF NOT EXISTS ledger_session ON ledger (session, ts)",
    ],
    [  # whether a cascade's turn went to its stronger model (NULL: not a cascade), for `usage --by session`
        "ALTER TABLE ledger ADD COLUMN escalated BOOLEAN",
    ],
    [  # no query reads by session (`usage --by session` groups the rows of a time range, read by `ts`), and
       # the index cost every row a fourth page written to the WAL: about 10 us of a pass-through's commit
        "DROP INDEX IF EXISTS ledger_session",
    ],
]

LEDGER_COLUMNS = ("ts", "request_id", "key_id", "model", "strategy", "status", "latency_ms", "prompt_tokens",
                  "completion_tokens", "cost_usd", "cloud_cost_usd", "cached", "stream", "error", "members", "session",
                  "escalated")
KEY_COLUMNS = ("id", "name", "tier", "prefix", "created", "revoked", "hash")

TOTALS = ("SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_usd - cloud_cost_usd), 0), "
          "COALESCE(SUM(cloud_cost_usd), 0) FROM ledger WHERE ts >= {p}")
"""Tokens, local cost and cloud cost since a time; `{p}` is the driver's placeholder."""
TOTALS_FOR_KEY = TOTALS + " AND key_id = {p}"
