"""An agent's next turn reaches the model as its previous turn plus what is new, so upstream prompt caches hit.

Claude Code sends system-role messages mid-conversation (a note that a file changed). Moved up into the
system prompt, they changed the first message of every later turn: the whole conversation's prefix, twelve
thousand characters of system prompt included, missed the upstream's cache from then on. They are kept in
place as a reminder (no person wrote them: no risk words, no new ask for the evidence rules).
"""

from __future__ import annotations

import json

from proxy.dialects.messages_request import to_chat
from routing import wire
from routing.request import Message

SYSTEM = "You are an agent. " * 50


def turn(n: int) -> dict[str, object]:
    messages: list[dict[str, object]] = [{"role": "user", "content": "Fix the tests."}]
    for i in range(n):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash",
                                                           "input": {"command": "pytest"}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}",
                                                      "content": "1 failed", "is_error": True}]})
        if i == 1:
            messages.append({"role": "system", "content": "Note: calc.py was modified by the user."})
    return {"model": "m", "max_tokens": 10, "system": SYSTEM, "messages": messages}


def test_a_system_note_mid_conversation_leaves_the_prefix_as_it_was() -> None:
    for n in range(1, 5):
        before, after = to_chat(turn(n))["messages"], to_chat(turn(n + 1))["messages"]
        assert json.dumps(after[:len(before)]) == json.dumps(before), n
    chat = to_chat(turn(3))["messages"]
    assert chat[0] == {"role": "system", "content": SYSTEM}
    note = next(m for m in chat if "calc.py was modified" in str(m["content"]))
    assert note["role"] == "user" and note["content"].startswith("<system-reminder>")
    typed = [Message.of(m) for m in chat]
    assert wire.last_human_text(typed) == "Fix the tests."  # not a person's words: no risk words read from it
    assert len(wire.tool_turns(typed)) == 3  # and no new ask: the failing rounds still count as evidence
