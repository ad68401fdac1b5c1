"""`shenron plan`: the seed's quantization table as a command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routing import config
from routing.decide import plan
from tests.procs import ROOT, cli


def test_model_memory_at_each_quantization() -> None:
    # 14B: weights 14 x 4.85 / 8 = 8.49 GB, KV 0.98 GB, overhead 0.5 GB
    assert plan.model_gb(14, "q4_k_m") == pytest.approx(9.97, abs=0.01)
    assert plan.model_gb(14, "fp16") == pytest.approx(28 + 0.98 + 0.5, abs=0.01)
    assert plan.model_gb(7, "q8_0", context_tokens=8192) == pytest.approx(7 * 8.5 / 8 + 0.98 + 0.5, abs=0.01)


def test_the_seed_council_fits_its_two_gpus(tmp_path: Path) -> None:
    done = cli("plan", "--config", str(ROOT / "examples" / "shenron.toml"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for model in ("qwen2.5-coder:14b", "llama3.2:3b", "phi4:14b", "gemma3:12b", "mistral:7b",
                  "deepseek-r1-distill-qwen-7b"):
        assert model in out
    assert "gpu0: 24 GB" in out and "total 19.9 GB of 24 GB: fits" in out
    assert "gpu1: 24 GB" in out and "total 23.0 GB of 24 GB: fits" in out
    assert "cloud" not in out.split("Estimates")[0], "cloud backends use no local memory"


def test_the_seed_council_on_one_gpu_does_not_fit_and_says_what_would(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "shenron.toml").read_text().replace('gpu = "gpu1"', 'gpu = "gpu0"')
    cfg = tmp_path / "one-gpu.toml"
    cfg.write_text(re.sub(r"(\[gpus\.gpu0\][^\n]*\nvram-gb = )24", r"\g<1>48", text))
    done = cli("plan", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0 and "total 42.9 GB of 48 GB: fits" in done.stdout
    cfg.write_text(re.sub(r"(\[gpus\.gpu0\][^\n]*\nvram-gb = )24", r"\g<1>36", text))
    done = cli("plan", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert "total 42.9 GB of 36 GB: does NOT fit (over by 6.9 GB)" in done.stdout
    assert "fits if every model is q3_k_m" in done.stdout


def test_backends_without_a_gpu_are_planned_against_ram() -> None:
    cfg = config.parse('[backends.a]\nurl = "http://127.0.0.1:8080/v1"\nmodel = "tiny"\nparams-b = 1\n'
                       '[backends.b]\nurl = "http://127.0.0.1:8081/v1"\nmodel = "x"\n'
                       '[models.ultra-instinct]\nstrategy = "single"\nmembers = ["a"]\n')
    devices = plan.plan(cfg, ram_gb=16)
    assert [d.name for d in devices] == ["cpu (RAM)"] and devices[0].fits
    text = plan.render(devices)
    assert "cpu (RAM): 16 GB" in text and "not estimated (set params-b): b" in text
