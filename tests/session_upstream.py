"""A model server that plays a 20-turn coding session, for driving real coding agents through Shenron.

Run as `python -m tests.session_upstream --port N --models a,b`. Each chat request is one turn of the
agent's loop; the turn is read from the conversation (how many assistant turns with tool calls it holds),
so every member of a council plays the same turn and any mix of models can take any turn. The session
fixes a bug in `calc.py` (made by `write_project`): it lists and reads the files (two reads in parallel),
runs the tests (they fail), thinks (a reasoning block), tries a wrong fix, runs them again (they fail),
reads a file that is not there (a tool error), makes the right fix, runs them (they pass), checks a few
things and answers. It asks for the agent's own shell tool: Codex's `exec_command`, Claude Code's `Bash`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import uvicorn

from tests.fake_upstream import Upstream

TEST_RUN = "python3 -m unittest -q test_calc"
STEPS: list[tuple[list[str], str | None]] = [
    (["ls"], None),
    (["cat calc.py", "cat test_calc.py"], None),  # parallel tool calls
    ([TEST_RUN], None),  # fails
    (["grep -n return calc.py"], "The test wants add(2, 3) == 5, but calc.py subtracts."),  # thinking
    (["sed -i 's/a - b/a * b/' calc.py"], None),  # a wrong fix
    ([TEST_RUN], None),  # fails again
    (["cat NOTES.md"], None),  # a tool error: there is no such file
    (["head -3 calc.py"], None),
    (["sed -i 's/a \\* b/a + b/' calc.py"], None),  # the right fix
    ([TEST_RUN + " && echo tests-pass"], None),  # passes
    (["wc -l calc.py"], None),
    (["python3 -c 'import calc; print(calc.add(2, 3))'"], None),
    (["IMAGE"], None),  # an image in a turn: the agent's own image tool (Codex view_image, Claude Code Read)
    (["cat test_calc.py"], None),
    (["tail -1 calc.py"], None),
    (["python3 -m py_compile calc.py"], None),
    (["echo reviewed"], None),
    (["cat calc.py"], None),
    ([TEST_RUN + " && echo still-passing"], None),
]
FINAL = "Done: calc.add adds again and the tests pass."
TURNS = len(STEPS) + 1
IMAGE_STEP = 12
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944"
                    "4154789c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082")
"""A 1x1 PNG: diagram.png in the project, looked at in turn IMAGE_STEP + 1."""
FAILING_TEST_STEPS = (2, 5)
"""Steps whose tool results show failing tests: the turns after them (3 and 6) are what a cascade escalates."""


def write_project(work: Path) -> None:
    (work / "diagram.png").write_bytes(PNG)
    (work / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (work / "test_calc.py").write_text("import unittest\n\nimport calc\n\n\nclass T(unittest.TestCase):\n"
                                       "    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n")


COMPACT_AT = 1000
"""The agent's compaction limit the tests configure (Codex's `model_auto_compact_token_limit`): the usage this
server reports grows by TOKENS_PER_STEP a step and starts again after a compaction, so it compacts about
every ten steps."""
TOKENS_PER_STEP = 100
_MEMO = re.compile(r"STEP=(\d+)")


def _text(m: dict[str, Any]) -> str:
    c = m.get("content")
    return c if isinstance(c, str) else json.dumps(c) if c else ""


def progress(req: dict[str, Any]) -> tuple[int, int]:
    """How many of the session's steps the conversation holds, and how many since its last compaction: a
    compacted conversation keeps this server's handoff memo (`STEP=k`) instead of the steps before it."""
    messages = req.get("messages") or []
    base, start = 0, 0
    for i, m in enumerate(messages):
        if m.get("role") == "user" and (found := _MEMO.findall(_text(m))):
            base, start = int(found[-1]), i
    since = sum(1 for m in messages[start:] if m.get("role") == "assistant" and m.get("tool_calls"))
    return base + since, since


def turn_of(req: dict[str, Any]) -> int:
    """How many of the session's steps the conversation already holds."""
    return progress(req)[0]


def compaction(req: dict[str, Any]) -> bool:
    """The agent asks for a handoff summary of the conversation (Codex: "CONTEXT CHECKPOINT COMPACTION")."""
    last = next((m for m in reversed(req.get("messages") or []) if m.get("role") == "user"), {})
    return "COMPACTION" in _text(last).upper()


def shell_call(req: dict[str, Any], command: str) -> tuple[str, str]:
    offered = {(t.get("function") or {}).get("name") for t in req.get("tools") or ()}
    if command == "IMAGE":
        if "view_image" in offered:
            return "view_image", json.dumps({"path": "diagram.png"})
        if "Read" in offered:  # Claude Code's Read wants an absolute path: its system prompt names the directory
            said = json.dumps(req.get("messages") or [])
            m = re.search(r"[Ww]orking directory: ([^\s\\]+)", said)
            return "Read", json.dumps({"file_path": f"{m.group(1) if m else '.'}/diagram.png"})
        command = "file diagram.png"
    if "exec_command" in offered:
        return "exec_command", json.dumps({"cmd": command})
    if "Bash" in offered:
        return "Bash", json.dumps({"command": command, "description": f"Run {command.split()[0]}"})
    return "shell", json.dumps({"command": ["bash", "-lc", command]})


class Session(Upstream):
    async def serve(self, req: dict[str, Any], kind: str, send: Any, receive: Any) -> None:
        if kind != "/chat/completions":
            return await super().serve(req, kind, send, receive)
        step, since = progress(req)
        if compaction(req):  # the handoff summary: where the session is, for the steps after it
            self.log(event="compaction", turn=step, body=req)
            calls, thought = [], None
        elif not req.get("tools"):  # the agent's own side request (Claude Code asks for a title): not a turn
            self.log(event="side", body=req)
            calls, thought = [], None
        else:
            self.log(event="request", turn=step, body=req)
            calls, thought = STEPS[step] if step < len(STEPS) else ([], None)
        tool_calls = [{"id": f"call_{step}_{i}", "type": "function",
                       "function": dict(zip(("name", "arguments"), shell_call(req, c), strict=True))}
                      for i, c in enumerate(calls)]
        text = None if tool_calls else FINAL if req.get("tools") and not compaction(req) else \
            f"Handoff: calc.py is being fixed, STEP={step} of the session is done." if compaction(req) else \
            "Fixing calc.py"
        finish = "tool_calls" if tool_calls else "stop"
        tokens = 200 + TOKENS_PER_STEP * since  # grows with the conversation, and shrinks when it is compacted
        cached = 200 + TOKENS_PER_STEP * (since - 1) if since else 0  # what the previous turn left in the prefix cache
        usage = {"prompt_tokens": tokens, "completion_tokens": 20, "total_tokens": tokens + 20,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        base = {"id": f"sess-{step}", "created": int(time.time()), "model": req["model"]}
        if not req.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            if thought:
                msg["reasoning_content"] = thought
            return await self.json(send, 200, {**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}]})
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if thought:
            deltas.append({"reasoning_content": thought})
        deltas += [{"tool_calls": [{"index": i, **c}]} for i, c in enumerate(tool_calls)]
        if text:
            deltas += [{"content": w} for w in (text[:10], text[10:])]
        chunks = [{**base, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {}, "finish_reason": finish}]})
        if (req.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--models", default="coder")
    p.add_argument("--log", default=None)
    a = p.parse_args()
    defaults = {"any_model": False, "answer": "", "answers_file": None, "latency_ms": 0, "token_ms": 0, "fail": None,
                "fail_first": 0, "no_role": False, "no_usage": False, "tool_call": None, "max_model_len": 0,
                "n_ctx": 0, "loading": False, "logprob": None, "echo": False}
    uvicorn.run(Session(argparse.Namespace(**defaults, **vars(a))), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
