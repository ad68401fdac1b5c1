#!/usr/bin/env python3
"""A coding agent's turn as a chat request, for benchmarks: a long system prompt, fourteen tools with JSON
schemas, twenty tool calls with their results, about 64 KB (deterministic; no model reads it).

    python3 bench/agent_turn.py > /tmp/agent.json
    .venv/bin/python bench/inprocess.py --mode pass --body /tmp/agent.json

`--dialect messages` writes the same turn as Claude Code sends it to `/v1/messages` (a top-level system,
`tool_use` and `tool_result` blocks), `--dialect responses` as Codex sends it to `/v1/responses`
(instructions, `function_call` and `function_call_output` items):

    python3 bench/agent_turn.py --dialect messages > /tmp/agent-messages.json
    .venv/bin/python bench/inprocess.py --mode pass --body /tmp/agent-messages.json --path /v1/messages
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any


def turn(seed: int = 1) -> dict[str, object]:
    rnd = random.Random(seed)
    words = ("the a file function test error value return import class def self config path module line code "
             "build run check").split()

    def text(chars: int) -> str:
        return " ".join(rnd.choice(words) for _ in range(chars // 5))

    tools = [{"type": "function", "function": {
        "name": f"tool_{i}", "description": text(200),
        "parameters": {"type": "object", "properties": {f"arg{j}": {"type": "string", "description": text(60)}
                                                        for j in range(4)}, "required": ["arg0"]}}}
             for i in range(14)]
    messages: list[dict[str, object]] = [{"role": "system", "content": text(8000)},
                                         {"role": "user", "content": text(600)}]
    for t in range(20):
        call_id = f"call_{t:04d}abcdef"
        messages.append({"role": "assistant", "content": None if t % 2 else text(150), "tool_calls": [
            {"id": call_id, "type": "function", "function": {
                "name": f"tool_{t % 14}", "arguments": json.dumps({"arg0": text(80), "arg1": text(40)})}}]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": text(1500)})
    messages.append({"role": "user", "content": text(300)})
    return {"model": "bench", "messages": messages, "tools": tools, "max_tokens": 32}


def messages(chat: dict[str, Any]) -> dict[str, Any]:
    """The turn in Anthropic's Messages API."""
    out: list[dict[str, Any]] = []
    for m in chat["messages"][1:]:
        if m["role"] == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] if m["content"] else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                        "input": json.loads(c["function"]["arguments"])} for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": blocks})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}]})
        else:
            out.append({"role": "user", "content": m["content"]})
    tools = [{"name": t["function"]["name"], "description": t["function"]["description"],
              "input_schema": t["function"]["parameters"]} for t in chat["tools"]]
    return {"model": chat["model"], "system": chat["messages"][0]["content"], "messages": out, "tools": tools,
            "max_tokens": chat["max_tokens"]}


def responses(chat: dict[str, Any]) -> dict[str, Any]:
    """The turn in OpenAI's Responses API."""
    items: list[dict[str, Any]] = []
    for m in chat["messages"][1:]:
        if m["role"] == "assistant":
            if m["content"]:
                items.append({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": m["content"]}]})
            items += [{"type": "function_call", "call_id": c["id"], "name": c["function"]["name"],
                       "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
        elif m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})
        else:
            items.append({"role": "user", "content": [{"type": "input_text", "text": m["content"]}]})
    tools = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
              "parameters": t["function"]["parameters"]} for t in chat["tools"]]
    return {"model": chat["model"], "instructions": chat["messages"][0]["content"], "input": items, "tools": tools,
            "max_output_tokens": chat["max_tokens"]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--dialect", choices=["chat", "messages", "responses"], default="chat")
    a = ap.parse_args()
    chat = turn()
    print(json.dumps(messages(chat) if a.dialect == "messages" else responses(chat) if a.dialect == "responses"
                     else chat))
