"""The PostgreSQL and Redis that the machines run on their standard ports, one fresh database per test; and a
Redis of a test's own, to stop and start again."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import free_port

PG_ADMIN = os.environ.get("SHENRON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("SHENRON_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRED = os.environ.get("SHENRON_REQUIRE_SERVICES") == "1"
"""Set by .ci/run, which starts the services: there a missing service fails the run instead of skipping."""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def missing(message: str) -> None:
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


def need(port: int, what: str) -> None:
    if not _listening(port):
        missing(f"{what} is not listening on 127.0.0.1:{port} (.ci/run starts it; see README, Tests)")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    need(5432, "PostgreSQL")
    import psycopg

    name = "shenron_test_" + secrets.token_hex(4)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


@pytest.fixture
def redis_url() -> str:
    need(6379, "Redis")
    return REDIS


@pytest.fixture
def redis_prefix() -> str:
    return f"shenron-test-{secrets.token_hex(4)}:"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A Redis of the test's own, which it may stop and start again."""
    need(6379, "Redis")  # the machine's Redis stands for redis-server being installed
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path)]
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL)]
    wait_port(port)
    try:
        yield f"redis://127.0.0.1:{port}/0", procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def wait_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")
