"""Use Shenron through Anthropic's Messages API (what Claude Code and the `anthropic` SDK speak).

    ANTHROPIC_BASE_URL=http://127.0.0.1:8000 python examples/anthropic_client.py [MODEL]

The SDK adds `/v1` itself, so the base URL is the proxy's root, as for Claude Code.
"""

import os
import sys

from anthropic import Anthropic

client = Anthropic(base_url=os.environ.get("ANTHROPIC_BASE_URL", "http://127.0.0.1:8000"),
                   api_key=os.environ.get("ANTHROPIC_API_KEY", "unused"))
model = sys.argv[1] if len(sys.argv) > 1 else "ultra-instinct"
question = [{"role": "user", "content": "What is six times seven?"}]

reply = client.messages.create(model=model, max_tokens=200, system="Answer briefly.", messages=question)
print(reply.content[0].text)
print(f"  stop: {reply.stop_reason}  council winner: {(reply.model_extra or {})['council']['winner']}")

print("streamed: ", end="")
with client.messages.stream(model=model, max_tokens=200, messages=question) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()

print("prompt tokens (estimated):", client.messages.count_tokens(model=model, messages=question).input_tokens)
