"""Integration: a client that goes away cancels every upstream request it caused, and leaks nothing.

IDE assistants cancel requests all the time. Each case below closes the client's socket while the
members are still working (streamed mid-deliberation, streamed before the first byte, non-streamed)
and then checks what an operator would see: every upstream request was closed, the proxy holds no
connection to any upstream and no more file descriptors than before, the ledger says
`client_disconnected`, and the next request is answered at once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import Proc, access_lines, events, fake_upstream, running, shenron

pytestmark = pytest.mark.integration
ROUNDS = 10
SLOW = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("disconnect")
    log = tmp / "upstream-events.jsonl"
    ports: list[int] = []
    with running() as started:
        blocks = []
        for name in (*SLOW, "quick"):
            latency = "0" if name == "quick" else "4000"
            proc, url = fake_upstream(tmp, "--models", name, "--latency-ms", latency, "--log", str(log))
            started.append(proc)
            ports.append(int(url.split(":")[2].split("/")[0]))
            blocks.append(f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n')
        config = f'[store]\npath = "{tmp / "ledger.db"}"\n' + "\n".join(blocks) + """
[models.ultra-instinct]
strategy = "single"
members = ["alpha"]

[models.full-council]
strategy = "council"
members = ["alpha", "beta", "gamma"]
timeout-s = 30
heartbeat-s = 0.2

[models.fast]
strategy = "single"
members = ["quick"]

[models.mixed-council]
strategy = "council"
members = ["quick", "alpha", "beta"]
early-decision = false
timeout-s = 30

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
heartbeat-s = 0.2

[models.debate]
strategy = "duo-debate"
members = ["alpha", "beta"]
heartbeat-s = 0.2

[models.ladder]
strategy = "escalate"
rungs = [{ coder = "alpha", attempts = 1, thinking = "solo", validators = ["beta"] }]
heartbeat-s = 0.2
"""
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        yield {"base": base, "log": log, "proxy": proxy, "ports": ports, "ledger": tmp / "ledger.db"}


def upstream_connections(pid: int, ports: list[int]) -> int:
    """Open TCP connections of process `pid` to any of `ports` (its sockets, matched by inode), less
    one idle keep-alive connection per port that the health probes may hold."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    wanted = {f"{p:04X}" for p in ports}
    per_port: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[2].rsplit(":", 1)[1] in wanted and cols[9] in inodes and cols[3] != "0A":
                    port = cols[2].rsplit(":", 1)[1]
                    per_port[port] = per_port.get(port, 0) + 1
    return sum(max(0, n - 1) for n in per_port.values())


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def post(base: str, body: dict[str, object]) -> socket.socket:
    host, port = base.split("//")[1].split("/")[0].split(":")
    raw = json.dumps(body).encode()
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + f"content-length: {len(raw)}\r\n\r\n".encode() + raw)
    return s


def leave(base: str, log: Path, model: str, stream: bool, after_first_event: bool, members: int) -> None:
    """Send a request and close the socket once every member is working on it: after the first SSE
    event, or while nothing has been sent yet."""
    asked = count(log, "request") + members
    s = post(base, {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    try:
        deadline = time.monotonic() + 5
        while count(log, "request") < asked:
            assert time.monotonic() < deadline, "the members were never asked"
            time.sleep(0.01)
        if after_first_event:
            s.settimeout(10)
            seen = b""
            while b"data:" not in seen:
                piece = s.recv(65536)
                assert piece, "the proxy closed the stream before its first event"
                seen += piece
        else:
            s.settimeout(0.1)
            with pytest.raises(TimeoutError):
                s.recv(65536)  # nothing yet: the members are still working
    finally:
        s.close()


def count(log: Path, event: str) -> int:
    return sum(1 for e in events(log) if e["event"] == event)


def test_a_log_line_still_being_written_is_not_read_yet(tmp_path: Path) -> None:
    """The fake upstreams log while a test reads: CI once parsed half a line and failed."""
    log = tmp_path / "events.jsonl"
    log.write_text('{"event": "done"}\n{"t": 1796576905.7, "port": 52267, "even')
    assert count(log, "done") == 1
    with log.open("a") as f:
        f.write('t": "done"}\n')
    assert count(log, "done") == 2


def disconnects(log: Path) -> int:
    return count(log, "disconnect")


@pytest.mark.parametrize(("model", "stream", "after_first_event", "members"), [
    ("full-council", True, True, 3),     # streamed, mid-deliberation (heartbeats already flowing)
    ("full-council", False, False, 3),   # non-streamed
    ("ultra-instinct", True, False, 1),  # streamed, before the first byte
    ("ultra-instinct", False, False, 1),  # non-streamed
    ("cascade", True, True, 1),          # its first model, behind heartbeats
    ("cascade", False, False, 1),
    ("debate", True, True, 1),           # a thinking strategy's proposer, narrated
    ("ladder", False, False, 1),         # the code ladder's coder
])
def test_a_client_that_leaves_cancels_every_upstream_request_and_leaks_nothing(
        stack: dict[str, object], model: str, stream: bool, after_first_event: bool, members: int) -> None:
    base, log, proxy = str(stack["base"]), Path(str(stack["log"])), stack["proxy"]
    assert isinstance(proxy, Proc)
    pid, ports = proxy.p.pid, list(stack["ports"])  # type: ignore[call-overload]
    httpx.post(f"{base}/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "x"}]},
               timeout=10).raise_for_status()  # warm: the baseline includes the ledger's and pool's files
    baseline = fds(pid)
    before = disconnects(log)
    for _ in range(ROUNDS):
        leave(base, log, model, stream, after_first_event, members)
    deadline = time.monotonic() + 5  # cancellation is delivered within a second; the upstream logs it
    while time.monotonic() < deadline and (disconnects(log) < before + ROUNDS * members
                                           or upstream_connections(pid, ports[:3])):
        time.sleep(0.05)
    assert disconnects(log) - before == ROUNDS * members  # every member's request was closed upstream
    assert upstream_connections(pid, ports[:3]) == 0  # nothing left ACTIVE in a pool (one probe's idle one)
    assert fds(pid) <= baseline + 3  # give or take the health probes' connections; a leak adds ROUNDS
    start = time.monotonic()
    r = httpx.post(f"{base}/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "x"}]},
                   timeout=10)
    assert r.status_code == 200 and time.monotonic() - start < 2
    gone = [e for e in access_lines(proxy) if e.get("error") == "client_disconnected" and e.get("model") == model
            and e.get("stream") == stream]
    assert len(gone) >= ROUNDS and all(e["outcome"] == 499 for e in gone)


def ledger_rows(path: Path, model: str) -> list[tuple[int, str | None, list[dict[str, object]]]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT status, error, members FROM ledger WHERE model = ? ORDER BY ts", (model,)).fetchall()
    return [(status, error, json.loads(members)) for status, error, members in rows]


def test_the_ledger_keeps_what_was_spent_and_marks_the_rest_cancelled(stack: dict[str, object]) -> None:
    base, log, ledger = str(stack["base"]), Path(str(stack["log"])), Path(str(stack["ledger"]))
    done_before = count(log, "done")
    s = post(base, {"model": "mixed-council", "messages": [{"role": "user", "content": "hi"}]})
    deadline = time.monotonic() + 5
    while count(log, "done") <= done_before:  # the quick member has answered; the slow two still work
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    s.close()
    deadline = time.monotonic() + 5
    while not [r for r in ledger_rows(ledger, "mixed-council") if r[1] == "client_disconnected"]:
        assert time.monotonic() < deadline, "no ledger row for the request the client left"
        time.sleep(0.05)
    status, _, members = ledger_rows(ledger, "mixed-council")[-1]
    by_name = {m["name"]: m for m in members}
    assert status == 499
    assert by_name["quick"]["status"] == "ok" and int(str(by_name["quick"]["completion_tokens"])) > 0
    assert by_name["alpha"]["status"] == by_name["beta"]["status"] == "cancelled"


def test_every_abandoned_request_has_a_ledger_row_with_its_members_cancelled(stack: dict[str, object]) -> None:
    ledger = Path(str(stack["ledger"]))
    rows = [r for r in ledger_rows(ledger, "full-council") if r[1] == "client_disconnected"]
    assert len(rows) >= 2 * ROUNDS  # the streamed and the non-streamed cases above
    assert all(r[0] == 499 and sorted(str(m["status"]) for m in r[2]) == ["cancelled"] * 3 for r in rows)
