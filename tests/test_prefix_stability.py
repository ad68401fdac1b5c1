"""An agent's next turn reaches the model as its previous turn plus what is new, so upstream prompt caches hit.

Claude Code sends system-role messages mid-conversation (a note that a file changed). Moved up into the
system prompt, they changed the first message of every later turn: the whole conversation's prefix, twelve
thousand characters of system prompt included, missed the upstream's cache from then on. They are kept in
place as a reminder (no person wrote them: no risk words, no new ask for the evidence rules).
"""

from __future__ import annotations

import json

from proxy.dialects.messages import count_tokens, estimate
from proxy.dialects.messages_request import to_chat
from proxy.requests import read_translated
from routing import wire
from routing.request import Message
from routing.tokens import estimate_tokens

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


def test_a_stream_s_message_start_estimates_the_prompt_as_count_tokens_does() -> None:
    """A Messages stream's `message_start` says the prompt's tokens estimated from the request already read, not
    from the body translated again: for agents' turns (tool calls, tool results, images, a system note, tools)
    it is the number `count_tokens` gives the body."""
    tools = [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {
        "command": {"type": "string"}}}}]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    bodies = [turn(n) for n in range(4)] + [
        {**turn(2), "tools": tools},
        {"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "Be brief."}], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
            {"role": "assistant", "content": [{"type": "text", "text": "I will read it."},
                                              {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": "é"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [image]},
                                         {"type": "text", "text": "what do you see?"}]}]},
    ]
    for body in bodies:
        read = read_translated(to_chat({**body, "stream": True}))
        chat = to_chat({**body, "stream": False})  # the count as it was made from the translated body's dicts
        text = "\n".join(Message.of(m).text for m in chat["messages"]) + json.dumps(
            chat.get("tools") or "", separators=(",", ":"), ensure_ascii=False).strip('"')
        text += "".join(c["function"]["name"] + c["function"]["arguments"]
                        for m in chat["messages"] for c in m.get("tool_calls") or ())
        assert estimate(read.request) == count_tokens(body) == estimate_tokens(text) > 0
