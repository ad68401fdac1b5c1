#!/usr/bin/env python3
"""A coding agent's turn as a chat request, for benchmarks: a long system prompt, fourteen tools with JSON
schemas, twenty tool calls with their results, about 64 KB (deterministic; no model reads it).

    python3 bench/agent_turn.py > /tmp/agent.json
    .venv/bin/python bench/inprocess.py --mode pass --body /tmp/agent.json
"""

from __future__ import annotations

import json
import random


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


if __name__ == "__main__":
    print(json.dumps(turn()))
