"""The upstream pools: one per backend, sized by config, on the transport `shenron serve` runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from routing.config import BackendConfig
from routing.settings import ServerConfig
from routing.upstream import clients
from tests.procs import Proc, fake_upstream
from tests.test_disconnect import upstream_connections


def test_a_backend_s_own_pool_settings_win_over_the_server_default() -> None:
    server = ServerConfig(upstream_max_connections=100, upstream_keepalive_s=9)
    own = clients.limits(BackendConfig(url="http://x/v1", model="m", max_connections=3, keepalive_s=1), server)
    default = clients.limits(BackendConfig(url="http://x/v1", model="m"), server)
    assert (own.max_connections, own.keepalive_expiry) == (3, 1)
    assert (default.max_connections, default.keepalive_expiry) == (100, 9)


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["shenron", "httpx"])
async def test_a_pool_of_two_holds_at_most_two_connections_and_reuses_them(tmp_path: Path, procs: list[Proc],
                                                                          transport: clients.Transport) -> None:
    proc, url = fake_upstream(tmp_path, "--models", "m", "--latency-ms", "300")
    procs.append(proc)
    port = int(url.split(":")[2].split("/")[0])
    cfg = BackendConfig(url=url, model="m", max_connections=2)
    async with clients.client_for(cfg, ServerConfig(upstream_transport=transport)) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        requests = [asyncio.create_task(client.post(url + "/chat/completions", json=body)) for _ in range(6)]
        await asyncio.sleep(0.15)
        in_flight = upstream_connections(os.getpid(), [port]) + 1  # the helper leaves one out per port
        answers = await asyncio.gather(*requests)
        assert in_flight == 2 and all(r.status_code == 200 for r in answers)
        assert upstream_connections(os.getpid(), [port]) + 1 == 2  # kept alive for the next request
