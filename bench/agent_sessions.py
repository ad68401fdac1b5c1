"""Per-session cost and escalation of a 20-turn coding session, Codex CLI and Claude Code, per virtual model.

    .venv/bin/python bench/agent_sessions.py

The stack of tests/test_agent_sessions.py: four model servers playing tests/session_upstream.py's session
(priced as a cloud model: $1 / $2 per million tokens in / out, $0.10 for prompt tokens the server reports
read from its prefix cache), `shenron serve` with `ultra-instinct` (one
of them), `full-council` (the other three) and `cascade` (the first, escalating to the council on the
agent's evidence). Each agent runs the session once per model; the table is `shenron usage --by session`
for each run, and which turns the cascade escalated (from what the model servers were asked).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import session_upstream as script  # noqa: E402
from tests.procs import running  # noqa: E402
from tests.test_agent_sessions import COUNCIL, MODELS, Stack, _claude, _codex  # noqa: E402


def main() -> None:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as d, running() as started:
        stack = Stack(Path(d), started)
        for agent, run in (("codex", _codex), ("claude", _claude)):
            for model in MODELS:
                work = Path(d) / f"{agent}-{model}"
                work.mkdir()
                script.write_project(work)
                before = set(stack.sessions())
                seen = len(stack.upstream_log.read_text().splitlines()) if stack.upstream_log.exists() else 0
                done = run(stack, model, work)
                new = [v for k, v in stack.sessions().items() if k not in before and k != "(no session)"]
                turns: dict[int, set[str]] = {}
                for e in stack.logged(seen, "request"):
                    turns.setdefault(e["turn"], set()).add(e["body"]["model"])
                escalated = sorted(t for t, m in turns.items() if model == "cascade" and m & set(COUNCIL))
                s = new[0] if new else {}
                rows.append((agent, model, done.returncode == 0, s.get("requests"), s.get("escalations"), escalated,
                             s.get("cloud_cost_usd"), s.get("prompt_tokens"), s.get("cached_tokens"), s.get("p50_ms")))
    print("| agent | model | task done | requests | escalated | which turns | cost USD | tokens in | cached in "
          "| p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for agent, model, ok, n, esc, which, cost, tokens, cached, p50 in rows:
        print(f"| {agent} | {model} | {'yes' if ok else 'NO'} | {n} | {esc} | {json.dumps(which)} | {cost:.4f} | "
              f"{tokens} | {cached} | {p50} |")


if __name__ == "__main__":
    main()
