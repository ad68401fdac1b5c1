"""Use Shenron from the official openai SDK: point base_url at it, pick a virtual model.

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python examples/client.py [MODEL]
"""

import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
                api_key=os.environ.get("OPENAI_API_KEY", "unused"))
model = sys.argv[1] if len(sys.argv) > 1 else "ultra-instinct"
question = [{"role": "user", "content": "What is six times seven?"}]

reply = client.chat.completions.create(model=model, messages=question)
print(reply.choices[0].message.content)

council = (reply.model_extra or {})["council"]  # Shenron's extension: who answered, how they voted
for member in council["members"]:
    print(f"  {member['name']:10} {member['status']:9} {member['latency_ms']:>6} ms")
print(f"  winner: {council['winner']}  degraded: {council['degraded']}")

print("streamed: ", end="")
for chunk in client.chat.completions.create(model=model, messages=question, stream=True):
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
