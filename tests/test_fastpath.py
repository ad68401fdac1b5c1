"""The fast route answers every request exactly as Litestar's handlers do: one proxy with `fast-path = false`
and one with it on, over the same upstreams, asked the same requests in every dialect and shape (plain and
streamed, tools, a council, a cascade, a cached answer, bad bodies, unknown models, wrong keys, a body too
large, a dead backend): status, headers and bodies must match byte for byte once ids and timings are
masked. Then the ledger rows of both must match too."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import access_lines, fake_upstream, running, shenron

pytestmark = pytest.mark.integration

MASKS = [
    (re.compile(rb'"(id|response_id|previous_response_id|item_id|call_id|request_id)":"[^"]*"'), rb'"\1":"<id>"'),
    (re.compile(rb'"(created|created_at|completed_at)":\d+'), rb'"\1":0'),
    (re.compile(rb'"(latency_ms|queue_ms|ms)":\d+,?'), b""),  # absent when 0 (omitted defaults): drop it
    (re.compile(rb'"(chatcmpl|resp|msg|fc|rs)_[A-Za-z0-9_-]+'), rb'"\1_<id>'),
    (re.compile(rb"\d+(\.\d+)? ?ms\b"), rb"<ms>"),
]
PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
KEPT_HEADERS = ("content-type", "content-length", "cache-control", "x-accel-buffering", "retry-after", "connection")

CHAT = [{"role": "user", "content": "What is 6 x 7?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
REQUESTS: list[tuple[str, dict[str, Any] | bytes, dict[str, str]]] = [
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "stream": True}, {}),
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "stream": True,
                              "stream_options": {"include_usage": True}}, {}),
    ("/v1/chat/completions", {"model": "ultra-instinct", "messages": CHAT, "max_tokens": 9}, {}),
    ("/v1/chat/completions", {"model": "ultra-instinct", "messages": CHAT, "tools": TOOLS}, {}),
    ("/v1/chat/completions", {"model": "full-council", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "full-council", "messages": CHAT, "stream": True}, {}),
    ("/v1/chat/completions", {"model": "cascade", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "cached", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "cached", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "down", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "down", "messages": CHAT, "stream": True}, {}),
    ("/v1/chat/completions", {"model": "nope", "messages": CHAT}, {}),
    ("/v1/chat/completions", {"model": "fake"}, {}),
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "temperature": 7}, {}),
    ("/v1/chat/completions", b"{not json", {}),
    ("/v1/chat/completions", b"[1, 2]", {}),
    ("/v1/chat/completions", b"", {}),
    ("/v1/chat/completions", {"model": "fake", "messages": [{"role": "user", "content": "x" * 300_000}]}, {}),
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT}, {"x-shenron-session": "s1", "user-agent": "t"}),
    ("/v1/responses", {"model": "fake", "input": "What is 6 x 7?"}, {}),
    ("/v1/responses", {"model": "ultra-instinct", "input": "What is 6 x 7?", "stream": True}, {}),
    ("/v1/responses", {"model": "fake", "input": 5}, {}),
    ("/v1/messages", {"model": "fake", "max_tokens": 20, "messages": CHAT}, {}),
    ("/v1/messages", {"model": "ultra-instinct", "max_tokens": 20, "messages": CHAT, "stream": True}, {}),
    ("/v1/messages", {"model": "fake", "messages": CHAT}, {}),
    ("/v1/messages", {"model": "nope", "max_tokens": 5, "messages": CHAT}, {}),
]


def _masked(raw: bytes) -> bytes:
    for pattern, repl in MASKS:
        raw = pattern.sub(repl, raw)
    return raw


def _seen(client: httpx.Client, base: str, path: str, body: dict[str, Any] | bytes,
          headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(base.removesuffix("/v1") + path, content=content,
                    headers={"content-type": "application/json", **headers})
    kept = sorted((k, v) for k, v in r.headers.items() if k in KEPT_HEADERS and k != "content-length")
    return r.status_code, kept, _masked(r.content)


def test_the_fast_route_answers_byte_for_byte_as_litestar_does(tmp_path: Path) -> None:
    with running() as started:
        up_proc, up = fake_upstream(tmp_path, "--tool-call", 'get_weather:{"city": "Paris"}', "--logprob", "-0.01")
        started.append(up_proc)
        config = f"""
[server]
max-body-mb = 0.25

[backends.fake]
url = "{up}"
model = "fake"

[backends.dead]
url = "http://127.0.0.1:9/v1"
model = "dead-model"

[models.ultra-instinct]
strategy = "single"
members = ["fake"]

[models.down]
strategy = "single"
members = ["dead"]

[models.cached]
strategy = "single"
members = ["fake"]
cache-ttl-s = 60

[models.full-council]
strategy = "council"
members = ["fake", "fake", "fake"]
early-decision = false

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
"""
        answers: dict[bool, list[tuple[int, list[tuple[str, str]], bytes]]] = {}
        logged: dict[bool, list[list[tuple[str, Any]]]] = {}
        for fast in (True, False):
            db = tmp_path / f"ledger-{fast}.db"
            proc, base = shenron(tmp_path, config.replace("[server]\n", f"[server]\nfast-path = {str(fast).lower()}\n")
                                 + f'\n[store]\npath = "{db}"\n')
            started.append(proc)
            with httpx.Client(timeout=30) as client:
                answers[fast] = [_seen(client, base, path, body, headers) for path, body, headers in REQUESTS]
            proc.stop()
            logged[fast] = [[(k, "<masked>" if k in ("ts", "ms", "request_id") else v) for k, v in line.items()]
                            for line in access_lines(proc) if line["path"] in PATHS]
        for (path, body, _), fast, full in zip(REQUESTS, answers[True], answers[False], strict=True):
            shown = body if isinstance(body, bytes) else json.dumps(body)[:120]
            at = next((i for i, (a, b) in enumerate(zip(fast[2], full[2], strict=False)) if a != b), None)
            lo, hi = max(0, (at or 0) - 80), (at or 0) + 80
            where = (f"bodies differ at {at}: fast {fast[2][lo:hi]!r} full {full[2][lo:hi]!r}" if at is not None
                     else f"fast {fast} full {full}")
            assert fast == full, f"{path} {shown!r}: {where}"
        # the access log says the same of every request on both ways in, in the same order of fields, and
        # leaves out what it does not know: no key (none was sent), an error only where the status is one
        assert logged[True] == logged[False] and len(logged[True]) == len(REQUESTS)
        for line, (status, _, _) in zip(logged[True], answers[True], strict=True):
            fields = dict(line)
            assert [k for k, _ in line[:6]] == ["ts", "method", "path", "status", "ms", "client"], line
            assert fields["status"] == status and None not in fields.values() and "key" not in fields, line
            assert ("error" in fields) == (status >= 400), line
        statuses = [a[0] for a in answers[True]]
        assert statuses.count(200) >= 14 and {400, 404, 413, 502} <= set(statuses), statuses

    rows = {}
    for fast in (True, False):
        with sqlite3.connect(tmp_path / f"ledger-{fast}.db") as conn:
            rows[fast] = conn.execute("SELECT model, strategy, status, prompt_tokens, completion_tokens, cost_usd, "
                                      "cached, stream, error FROM ledger ORDER BY ts").fetchall()
    assert rows[True] == rows[False] and len(rows[True]) >= 20
