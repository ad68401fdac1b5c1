"""End to end: Codex CLI and Claude Code hold a 20-turn coding session through `shenron serve`, over
`ultra-instinct`, a `full-council` of three and a `cascade` that escalates on the agent's own evidence.

The model servers play the session of `tests/session_upstream.py` (read, run failing tests, think, a wrong
fix, a tool error, the right fix, passing tests, checks, an answer), streamed as the agents stream. The
task is done when the agent's working copy passes its tests. The ledger must hold one answered row per
turn under the session's key; on `cascade` the turns after a failing test run go to the council, the
turns far from any failure do not, and the session costs less than a council on every turn. Each agent
skips, saying why, where it is not installed (`.ci/run` installs both from npm).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import session_upstream as script
from tests.procs import ROOT, Proc, cli, events, free_port, running, shenron

pytestmark = pytest.mark.integration
COUNCIL = ["goku", "vegeta", "piccolo"]
MODELS = ["ultra-instinct", "full-council", "cascade"]


class Stack:
    def __init__(self, tmp: Path, started: list[Proc]) -> None:
        self.tmp = tmp
        self.upstream_log = tmp / "upstream.jsonl"
        blocks = []
        for name in ["solo", *COUNCIL]:
            port = free_port()
            proc = Proc([sys.executable, "-m", "tests.session_upstream",
                         "--port", str(port), "--models", name, "--log", str(self.upstream_log)],
                        tmp / f"{name}.log", cwd=ROOT)
            proc.wait_http(f"http://127.0.0.1:{port}/health")
            started.append(proc)
            blocks.append(f'[backends.{name}]\nurl = "http://127.0.0.1:{port}/v1"\nmodel = "{name}"\n'
                          'price-in = 1.0\nprice-out = 2.0\nprice-cached-in = 0.1\ncloud = true\n')
        self.cfg = tmp / "shenron.toml"
        self.data = {"XDG_DATA_HOME": str(tmp / "data")}
        config = "\n".join(blocks) + f"""
[store]
path = "{tmp / 'ledger.db'}"

[models.ultra-instinct]
strategy = "single"
members = ["solo"]

[models.full-council]
strategy = "council"
members = {json.dumps(COUNCIL)}
timeout-s = 30

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
"""
        proxy, self.base = shenron(tmp, config, cfg_path=self.cfg, env=self.data)
        started.append(proxy)
        self.proxy = proxy

    def sessions(self) -> dict[str, dict[str, Any]]:
        used = cli("usage", "--by", "session", "--format", "json", "--config", str(self.cfg), cwd=self.tmp,
                   env=self.data)
        assert used.returncode == 0, used.stderr
        return {r["group"]: r for r in json.loads(used.stdout)["rows"] if r["group"] not in ("TOTAL",)}

    def logged(self, since: int, event: str) -> list[dict[str, Any]]:
        """What the model servers logged since line `since` (every member's): `request` for a turn, `side`
        for a request of the agent's own (a title) that is no turn of the session."""
        return [e for e in events(self.upstream_log)[since:] if e["event"] == event]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running() as started:
        yield Stack(tmp_path_factory.mktemp("sessions"), started)


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (npm install -g {package})")
    return path


def _codex(stack: Stack, model: str, work: Path) -> subprocess.CompletedProcess[str]:
    codex = _need("codex", "@openai/codex")
    home = Path.home() / f".shenron-test-codex-{os.getpid()}-{model}"
    home.mkdir(exist_ok=True)  # not under /tmp: Codex refuses to set up its helpers there
    (home / "config.toml").write_text(f'model = "{model}"\nmodel_provider = "shenron"\n'
                                      f'model_auto_compact_token_limit = {script.COMPACT_AT}\n\n'  # it compacts twice
                                      '[model_providers.shenron]\nname = "Shenron"\n'
                                      f'base_url = "{stack.base}"\nwire_api = "responses"\n')
    try:
        return subprocess.run([codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                               "Fix calc.py so that its tests pass"], cwd=work, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL, env={**os.environ, "CODEX_HOME": str(home)})
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _claude(stack: Stack, model: str, work: Path) -> subprocess.CompletedProcess[str]:
    claude = _need("claude", "@anthropic-ai/claude-code")
    home = work.parent / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "ANTHROPIC_BASE_URL": stack.base.removesuffix("/v1"), "ANTHROPIC_API_KEY": "sk-unused",
           "IS_SANDBOX": "1", "HOME": str(home), "DISABLE_AUTOUPDATER": "1"}
    return subprocess.run([claude, "-p", "Fix calc.py so that its tests pass", "--model", model,
                           "--dangerously-skip-permissions", "--max-turns", "40"], cwd=work, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL, env=env)


def _paired(messages: list[dict[str, Any]]) -> None:
    """Every tool call answered by its result before the next assistant turn, none left over."""
    open_calls: set[str] = set()
    for m in messages:
        if m["role"] == "assistant":
            assert not open_calls, f"tool calls without results: {open_calls}"
            open_calls = {c["id"] for c in m.get("tool_calls") or ()}
        elif m["role"] == "tool":
            assert m["tool_call_id"] in open_calls, m
            open_calls.discard(m["tool_call_id"])


@pytest.mark.parametrize("agent", ["codex", "claude"])
@pytest.mark.parametrize("model", MODELS)
def test_a_20_turn_coding_session_ends_with_the_task_done(stack: Stack, agent: str, model: str,
                                                          tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script.write_project(work)
    before = set(stack.sessions())
    seen = len(events(stack.upstream_log))
    done = (_codex if agent == "codex" else _claude)(stack, model, work)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert script.FINAL in done.stdout
    tests = subprocess.run(["python3", "-m", "unittest", "-q", "test_calc"], cwd=work, capture_output=True, text=True)
    assert tests.returncode == 0, "the agent's working copy must pass its tests: " + tests.stderr

    sessions = {k: v for k, v in stack.sessions().items() if k not in before and k != "(no session)"}
    assert len(sessions) == 1, sessions  # every turn carried the agent's one session key
    (session,) = sessions.values()
    side = {json.dumps(e["body"]["messages"]) for e in stack.logged(seen, "side")}  # a council asks each member
    compacted = {json.dumps(e["body"]["messages"]) for e in stack.logged(seen, "compaction")}
    if agent == "codex":  # Codex asked for a handoff summary when the usage passed its limit, and went on after it
        assert len(compacted) >= 1
    extra = len(side) + len(compacted)
    assert session["errors"] == 0 and session["requests"] == script.TURNS + extra, session  # a row per request
    assert session["cloud_cost_usd"] > 0 and session["cached_tokens"] > session["prompt_tokens"] / 2
    full_price = (session["prompt_tokens"] * 1.0 + session["completion_tokens"] * 2.0) / 1e6
    cached_price = full_price - session["cached_tokens"] * (1.0 - 0.1) / 1e6  # price-cached-in for what was cached
    assert session["cloud_cost_usd"] == pytest.approx(cached_price, rel=1e-3)
    asked = stack.logged(seen, "request")
    by_turn: dict[int, set[str]] = {}
    for r in asked:
        by_turn.setdefault(r["turn"], set()).add(r["body"]["model"])
    assert sorted(by_turn) == list(range(script.TURNS))  # each turn reached the model servers, in order
    last = max(asked, key=lambda e: e["turn"])["body"]["messages"]  # the whole session, as the agent sent it
    _paired(last)
    # each turn's conversation reaches a model as the previous turn's plus what was new, byte for byte (as JSON),
    # with the same tools: what upstream prefix caches need to hit
    for member in {e["body"]["model"] for e in asked}:
        mine = sorted((e for e in asked if e["body"]["model"] == member), key=lambda e: e["turn"])
        for a, b in itertools.pairwise(mine):
            before, after = a["body"]["messages"], b["body"]["messages"]
            if re.findall(r"STEP=\d+", json.dumps(before)) != re.findall(r"STEP=\d+", json.dumps(after)):
                continue  # compacted in between: the agent rebuilt its history, as it should
            assert json.dumps(after[:len(before)]) == json.dumps(before), (member, a["turn"], b["turn"])
            assert json.dumps(a["body"].get("tools")) == json.dumps(b["body"].get("tools"))
    # the picture the agent's image tool returned (Codex view_image, Claude Code Read) reached the model, whole
    after_image = [e for e in [*asked, *stack.logged(seen, "compaction")] if e["turn"] == script.IMAGE_STEP + 1]
    pictures = {p["image_url"]["url"] for e in after_image for m in e["body"]["messages"]
                if m["role"] == "user" and isinstance(m["content"], list)
                for p in m["content"] if p.get("type") == "image_url"}  # the turn after it, or its compaction
    assert len(pictures) == 1 and base64.b64decode(pictures.pop().split(",", 1)[1]) == script.PNG
    if agent == "claude":  # Claude Code sends its thinking blocks back; they arrive where they were
        thinking = [m for m in last if m["role"] == "assistant" and m.get("reasoning_content")]
        assert [m["reasoning_content"] for m in thinking] == [script.STEPS[3][1]]
    council = set(COUNCIL)
    if model == "ultra-instinct":
        assert all(m == {"solo"} for m in by_turn.values())
        assert session["escalations"] == 0
    elif model == "full-council":
        assert all(m == council for m in by_turn.values())
    else:
        escalated = {t for t, m in by_turn.items() if m & council}
        after_failures = {s + 1 for s in script.FAILING_TEST_STEPS}
        assert after_failures <= escalated, (escalated, after_failures)
        calm = {t for t in range(script.TURNS) if not any(0 < t - s <= 3 for s in (*script.FAILING_TEST_STEPS, 6))}
        assert not (calm & escalated), (calm & escalated)  # far from any failure: the first model alone
        handoffs = {e["body"]["model"] for e in stack.logged(seen, "compaction")}
        assert not handoffs & council  # Codex's compaction prompt says "key", but no person wrote it: no risk word
        assert session["escalations"] == len(escalated)
        # it costs what the escalated turns cost: the council asked on those alone, the first model on the others
        calls = [e["body"]["model"] for e in asked]
        assert calls.count("solo") == script.TURNS - len(escalated)
        assert sum(calls.count(m) for m in COUNCIL) == len(COUNCIL) * len(escalated)
