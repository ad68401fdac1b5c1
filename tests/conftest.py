from __future__ import annotations

import os
import tempfile

# The default store lives under $XDG_DATA_HOME; tests (and the processes they start) never touch the user's.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="shenron-test-data-")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, running


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test started; all are stopped when it ends, whatever happened."""
    with running() as started:
        yield started


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shenron")


from tests.services import postgres_url, redis_prefix, redis_url  # noqa: E402, F401  (fixtures)


@pytest.fixture(scope="session", autouse=True)
def respx_can_see_upstream_requests() -> Iterator[None]:
    """respx intercepts httpx's own transport; in-process apps use it (processes run the default)."""
    import routing.upstream.clients

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(routing.upstream.clients, "DEFAULT", "httpx")
        yield
