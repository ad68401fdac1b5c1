"""Integration: codegen-escalate through `shenron serve` and the openai SDK, over scripted upstream servers.

The coders and validators are fake OpenAI servers answering from a script (no model weights
can be had here), so the quality is simulated; everything else is real: the proxy process,
the HTTP hops, the compile checks in their sandbox, the SDK parsing the answer and stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.procs import Proc, events, fake_upstream, shenron

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "Write a Python function slug(s) that makes a URL slug."}]


def code(body: str) -> str:
    return f"Here is the function:\n\n```python\n{body}```\n"


def verdict(score: float, *issues: str) -> str:
    return json.dumps({"score": score, "issues": list(issues)})


class Stack:
    def __init__(self, tmp: Path, marker: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.log = tmp / "events.jsonl"
        self.marker = marker
        self.urls: dict[str, str] = {}

    def upstream(self, name: str, answers: list[str]) -> None:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(answers))
        proc, url = fake_upstream(self.tmp, "--models", name, "--answers-file", str(path), "--log", str(self.log))
        self.procs.append(proc)
        self.urls[name] = url

    def asked(self, name: str) -> int:
        port = int(self.urls[name].rsplit(":", 1)[1].split("/")[0])
        return sum(1 for e in events(self.log) if e["port"] == port and e["event"] == "request")

    def config(self, budget: float = 0.5, small_attempts: int = 2, big: bool = True) -> str:
        blocks = [f'[backends.{n}]\nurl = "{u}"\nmodel = "{n}"\n' for n, u in self.urls.items() if n != "opus"]
        blocks.append(f'[backends.opus]\nurl = "{self.urls["opus"]}"\nmodel = "opus"\ncloud = true\n'
                      "price-in = 15.0\nprice-out = 75.0\n")
        big_rung = '{ coder = "big", attempts = 2, thinking = "solo" },' if big else ""
        return "\n".join(blocks) + f"""
[models.ultra-instinct]
strategy = "single"
members = ["small"]

[models.codegen-escalate]
strategy = "escalate"
pass-score = 8.0
max-iterations = 6
cloud-budget-usd = {budget}
rungs = [
  {{ coder = "small", attempts = {small_attempts}, thinking = "solo", validators = ["sec", "style"] }},
  {big_rung}
  {{ coder = "opus", attempts = 1, thinking = "solo" }},
]
[models.codegen-escalate.validator-weights]
sec = 0.6
style = 0.4
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, tmp_path / "generated-code-ran")
    runs = f"open({str(s.marker)!r}, 'w').write('ran')\n"
    broken = code("def slug(s)\n    return s.lower()\n")
    weak = code(runs + "def slug(s):\n    return s.lower().replace(' ', '-')\n")
    strong = code(runs + "import re\n\n\ndef slug(s: str) -> str:\n    return re.sub(r'[^a-z0-9]+', '-', s.lower())"
                  ".strip('-')\n")
    s.upstream("small", [broken, weak])
    s.upstream("big", [strong])
    s.upstream("opus", [strong])
    s.upstream("sec", [verdict(6, "punctuation is kept in the slug"), verdict(9)])
    s.upstream("style", ["Looks fine to me, nice work!", verdict(8, "add a docstring")])
    try:
        yield s
    finally:
        for p in s.procs:
            p.stop()


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


def test_the_ladder_climbs_until_the_weighted_score_passes(stack: Stack) -> None:
    proxy, base = shenron(stack.tmp, stack.config())
    stack.procs.append(proxy)
    resp = client(base).chat.completions.create(model="codegen-escalate", messages=ASK)  # type: ignore[arg-type]
    text = resp.choices[0].message.content or ""
    assert text.startswith("```python\nopen(") and "re.sub" in text and "did not reach" not in text
    council: dict[str, Any] = resp.model_extra["council"]  # type: ignore[index]
    its = council["iterations"]
    assert [(i["coder"], i["compiled"], i["score"]) for i in its] == [
        ("small", False, 0.0), ("small", True, 6.0), ("big", True, 8.6)]
    assert "SyntaxError" in its[0]["check_output"]
    assert "style" in its[1]["invalid"] and its[1]["scores"] == {"sec": 6.0}
    assert its[2]["scores"] == {"sec": 9.0, "style": 8.0}
    assert [r["status"] for r in council["rungs"]] == ["failed", "passed", "not reached"]
    assert council["decided_by"] == "passed" and council["score"] == 8.6 and council["cost_usd"] == 0.0
    assert stack.asked("opus") == 0
    assert not stack.marker.exists(), "the proxy ran generated code"
    assert resp.usage is not None and resp.usage.total_tokens > 0


def test_streaming_shows_each_attempt_as_thinking(stack: Stack) -> None:
    proxy, base = shenron(stack.tmp, stack.config())
    stack.procs.append(proxy)
    stream = client(base).chat.completions.create(model="codegen-escalate", messages=ASK,  # type: ignore[arg-type]
                                                  stream=True, stream_options={"include_usage": True})
    reasoning, content, council = "", "", None
    for chunk in stream:
        extra = chunk.model_extra or {}
        council = extra.get("council", council)
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            content += delta.content or ""
    assert reasoning.splitlines() == [
        "attempt 1 · small · solo · does not compile · score 0",
        "attempt 2 · small · solo · compiles · score 6",
        "attempt 3 · big · solo · compiles · score 8.6",
    ]
    assert content.startswith("```python\n") and "re.sub" in content
    assert council is not None and len(council["iterations"]) == 3
    assert not stack.marker.exists()


def test_a_spent_budget_skips_the_cloud_rung_and_says_so(stack: Stack) -> None:
    proxy, base = shenron(stack.tmp, stack.config(budget=0.001, small_attempts=1, big=False))
    stack.procs.append(proxy)
    resp = client(base).chat.completions.create(model="codegen-escalate", messages=ASK)  # type: ignore[arg-type]
    council: dict[str, Any] = resp.model_extra["council"]  # type: ignore[index]
    assert [i["coder"] for i in council["iterations"]] == ["small"]
    opus = council["rungs"][1]
    assert opus["status"] == "skipped" and "cloud budget" in opus["reason"]
    assert stack.asked("opus") == 0
    assert council["decided_by"] == "best-effort" and council["degraded"] is True
    assert "did not reach the bar" in (resp.choices[0].message.content or "")
