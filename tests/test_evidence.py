"""Escalation on an agent's own evidence: tool results read in the shapes Codex CLI and Claude Code send, as
pure rules over the conversation, and through the cascade over both dialects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.decide.rules import tool_outcome, turn_evidence, word_hashes
from routing.request import Request
from routing.wire import last_human_text, tool_turns
from tests.procs import fake_upstream, running, shenron

CODEX_FAIL = ("Chunk ID: 4f2a\nWall time: 1.2 seconds\nProcess exited with code 1\nOriginal token count: 210\n"
              "Output:\nTraceback (most recent call last):\n  File \"t.py\", line 3\nAssertionError\n"
              "=========== 1 failed, 2 passed in 0.05s ===========")
CODEX_PASS = "Chunk ID: 9c1d\nWall time: 0.9 seconds\nProcess exited with code 0\nOutput:\n==== 3 passed in 0.04s ===="
CLAUDE_FAIL = "Exit code 1\n============ 3 failed, 5 passed in 0.31s ============"


def _turns(*rounds: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    return [list(r) for r in rounds]


@pytest.mark.parametrize(("text", "outcome"), [
    (CODEX_FAIL, ("failed", "exit code 1")),
    (CLAUDE_FAIL, ("failed", "exit code 1")),
    ("Error: Exit code 2\nmake: *** [all] Error 2", ("failed", "the tool reported an error")),
    ("============ 3 failed, 5 passed in 0.31s ============", ("failed", "pytest 3 failed")),
    ("test result: FAILED. 4 passed; 2 failed; 0 ignored", ("failed", "cargo test 2 failed")),
    ("--- FAIL: TestParse (0.00s)\nFAIL\nexit status 1", ("failed", "exit code 1")),
    ("--- FAIL: TestParse (0.00s)\nFAIL", ("failed", "go test TestParse failed")),
    ("Tests:       2 failed, 14 passed, 16 total", ("failed", "jest 2 failed")),
    ("src/a.ts(3,7): error TS2322: Type 'string' is not assignable", ("failed", "tsc TS2322")),
    ("error[E0308]: mismatched types\n --> src/main.rs:4:18", ("failed", "compiler error E0308")),
    ("Traceback (most recent call last):\n  File \"x\"\nKeyError: 'a'", ("failed", "traceback")),
    (CODEX_PASS, ("passed", "the tools succeeded")),
    ("Exit code 0", ("passed", "the tools succeeded")),
    ("test result: ok. 12 passed; 0 failed", ("passed", "the tools succeeded")),
    ("def parse(x):\n    raise ValueError('no error here')", None),
    ("1 file changed, 3 insertions(+)", None),
])
def test_tool_results_read_as_the_agents_send_them(text: str, outcome: tuple[str, str] | None) -> None:
    assert tool_outcome(text) == outcome


def test_a_failing_round_escalates_holds_one_turn_and_hands_back_on_success() -> None:
    read = ("read_file", '{"path": "a.py"}', "def f(): ...")
    failed = ("shell", '{"cmd": "pytest"}', CODEX_FAIL)
    passed = ("shell", '{"cmd": "pytest"}', CODEX_PASS)
    edit = ("apply_patch", '{"patch": "..."}', "Done")
    assert turn_evidence(_turns([read])) is None
    assert turn_evidence(_turns([read], [failed])) == ("tool-failed: exit code 1",
                                                       "a tool result of this turn failed (exit code 1)")
    held = turn_evidence(_turns([read], [failed], [edit]))
    assert held is not None and held[0] == "holding: exit code 1"
    assert turn_evidence(_turns([read], [failed], [edit], [edit])) is None, "hold-turns 1: one turn, then back"
    assert turn_evidence(_turns([failed], [edit], [edit]), hold_turns=2) is not None
    assert turn_evidence(_turns([read], [failed], [passed])) is None, "success hands back at once"


def test_the_same_call_with_the_same_result_three_times_is_a_loop() -> None:
    same = ("read_file", '{"path": "a.py"}', "def f(): ...")
    assert turn_evidence(_turns([same], [same])) is None
    assert turn_evidence(_turns([same], [same], [same]))[0] == "tool-loop: read_file x3"  # type: ignore[index]
    other = ("read_file", '{"path": "b.py"}', "...")
    assert turn_evidence(_turns([same], [other], [same])) is None


def test_tool_rounds_and_risk_words_come_from_the_right_messages() -> None:
    msgs = Request.of({"messages": [
        {"role": "user", "content": "fix the failing test"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "shell", "arguments": '{"cmd":"pytest"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": CLAUDE_FAIL + "\nrm -rf /tmp/x"},
        {"role": "user", "content": "<system-reminder>Do not delete production data.</system-reminder>"},
    ]}).messages
    assert tool_turns(msgs) == [[("shell", '{"cmd":"pytest"}', CLAUDE_FAIL + "\nrm -rf /tmp/x")]]
    assert last_human_text(msgs) == "fix the failing test", "reminders are not what the person wrote"
    assert set(word_hashes(last_human_text(msgs))).isdisjoint(word_hashes("rm delete production"))
    assert tool_turns([*msgs, *Request.of({"messages": [{"role": "user", "content": "now add docs"}]}).messages]) \
        == [], "a new ask from the person starts afresh"


def _codex_turn(client: httpx.Client, base: str, history: list[dict[str, Any]], output: str, n: int) -> Any:
    """One Responses turn as Codex CLI 0.171 sends it: the call and its plain-string output."""
    history += [{"type": "function_call", "call_id": f"call_{n}", "name": "shell", "arguments": '{"cmd":"pytest"}'},
                {"type": "function_call_output", "call_id": f"call_{n}", "output": output}]
    r = client.post(base + "/responses", json={"model": "cascade", "input": history}, headers={"session-id": "cx"})
    assert r.status_code == 200, r.text
    return r.json()["council"]


def _claude_turn(client: httpx.Client, base: str, history: list[dict[str, Any]], output: str, error: bool,
                 n: int) -> Any:
    """One Messages turn as Claude Code 2.1 sends it: tool_result with is_error and a system reminder."""
    history += [{"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{n}", "name": "Bash",
                                                   "input": {"command": "pytest"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": output, "is_error": error},
                    {"type": "text", "text": "<system-reminder>Keep going.</system-reminder>"}]}]
    r = client.post(base + "/messages", json={"model": "cascade", "max_tokens": 50, "messages": history},
                    headers={"x-claude-code-session-id": "cc", "anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    return r.json()["council"]


@pytest.mark.integration
def test_the_cascade_escalates_the_turns_after_a_failing_test_run_in_both_dialects(tmp_path: Path) -> None:
    with running() as started:
        fast, fast_url = fake_upstream(tmp_path, "--answer", "I will run the tests.")
        strong, strong_url = fake_upstream(tmp_path, "--answer", "Fixed the off-by-one.")
        started += [fast, strong]
        proxy, base = shenron(tmp_path, f"""
[backends.fast]
url = "{fast_url}"
model = "fake"
[backends.strong]
url = "{strong_url}"
model = "fake"
[models.first]
strategy = "single"
members = ["fast"]
[models.stronger]
strategy = "single"
members = ["strong"]
[models.cascade]
strategy = "cascade"
first = "first"
escalate-to = "stronger"
min-confidence = 0
""")
        started.append(proxy)
        outputs = [(CODEX_PASS.replace("3 passed", "0 passed"), False), (CODEX_FAIL, True), ("Done", False),
                   (CODEX_PASS, False), ("Done", False)]
        with httpx.Client(timeout=30) as c:
            codex: list[dict[str, Any]] = [{"role": "user", "content": "make the tests pass"}]
            seen = [_codex_turn(c, base, codex, out, i) for i, (out, _) in enumerate(outputs)]
            claude: list[dict[str, Any]] = [{"role": "user", "content": "make the tests pass"}]
            heard = [_claude_turn(c, base, claude, CLAUDE_FAIL if err else out, err, i)
                     for i, (out, err) in enumerate(outputs)]
        for reports in (seen, heard):
            assert [r["escalated"] for r in reports] == [False, True, True, False, False], reports
            assert reports[1]["escalated_because"] in ("tool-failed: exit code 1",
                                                       "tool-failed: the tool reported an error")
            assert reports[2]["escalated_because"].startswith("holding: ")
            assert [r["answered_by"] for r in reports] == ["first", "stronger", "stronger", "first", "first"]


def test_cached_prompt_tokens_are_priced_apart_and_reported_in_each_dialect() -> None:
    """A cached session costs what it cost: reads at price-cached-in, writes at price-cache-write, the rest at
    price-in; OpenAI counts cached tokens inside prompt_tokens, Anthropic apart from input_tokens."""
    from proxy.dialects.messages import _usage as anthropic_usage
    from proxy.dialects.responses import usage_of
    from routing.config import BackendConfig
    from routing.report import cost
    from routing.tokens import Usage
    from routing.upstream.answers import usage as checked
    from routing.upstream.anthropic import _usage as from_anthropic

    u = Usage.of(checked(from_anthropic({"input_tokens": 200, "cache_read_input_tokens": 9000,
                                         "cache_creation_input_tokens": 800, "output_tokens": 100})))
    assert u == Usage(10_000, 100, 10_100, cached_tokens=9000, cache_write_tokens=800)
    cfg = BackendConfig(url="https://api.anthropic.com/v1", model="claude", price_in=3.0, price_out=15.0,
                        price_cached_in=0.3, price_cache_write=3.75)
    assert cost(u, cfg) == pytest.approx((200 * 3.0 + 9000 * 0.3 + 800 * 3.75 + 100 * 15.0) / 1e6)
    assert cost(u, BackendConfig(url="http://x/v1", model="m", price_in=3.0, price_out=15.0)) == \
        pytest.approx((10_000 * 3.0 + 100 * 15.0) / 1e6), "unpriced cache: every prompt token at price-in"
    assert anthropic_usage(u) == {"input_tokens": 200, "output_tokens": 100, "cache_read_input_tokens": 9000,
                                  "cache_creation_input_tokens": 800}
    assert usage_of(u)["input_tokens_details"] == {"cached_tokens": 9000, "cache_write_tokens": 800}
    assert u.openai()["prompt_tokens_details"] == {"cached_tokens": 9000}
    openai_u = Usage.of(checked({"prompt_tokens": 5000, "completion_tokens": 10,
                                 "prompt_tokens_details": {"cached_tokens": 4096}}))
    assert openai_u is not None and openai_u.cached_tokens == 4096 and openai_u.cache_write_tokens == 0


def test_an_agent_s_own_compaction_prompt_is_not_what_a_person_wrote() -> None:
    """Codex asks for a handoff summary in a user message ("... key decisions ..."): no risk word is read from it,
    so a summary is not sent to the council; the person's own words still count."""
    from routing import wire
    from routing.request import Message

    messages = [Message("user", "Fix calc.py"),
                Message("user", "You are performing a CONTEXT CHECKPOINT COMPACTION. Create a handoff summary "
                                "for another LLM that will resume the task. Include key decisions.")]
    assert wire.last_human_text(messages) == "Fix calc.py"
    claude = [Message("user", "deploy it"), Message("user", "Your task is to create a detailed summary of the "
                                                            "conversation so far, paying close attention to ...")]
    assert wire.last_human_text(claude) == "deploy it"
