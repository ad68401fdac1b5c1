"""Use Shenron through OpenAI's Responses API (what Codex CLI and `client.responses` speak).

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python examples/responses_client.py [MODEL]
"""

import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
                api_key=os.environ.get("OPENAI_API_KEY", "unused"))
model = sys.argv[1] if len(sys.argv) > 1 else "ultra-instinct"

first = client.responses.create(model=model, instructions="Answer briefly.", input="What is six times seven?")
print(first.output_text)
council = (first.model_extra or {})["council"]  # Shenron's extension rides on the response
print(f"  winner: {council['winner']}  members: {len(council['members'])}  usage: {first.usage.input_tokens} in")

# The conversation is kept (per key, `[store] keep-responses-days`): the next turn names the previous one.
follow = client.responses.create(model=model, previous_response_id=first.id, input="And seven times six?")
print(follow.output_text)

print("streamed: ", end="")
with client.responses.stream(model=model, input="What is six times seven?") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
print()
