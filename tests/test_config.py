from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from routing import config
from routing.config import ConfigError
from routing.models import CouncilModel, SingleModel
from routing.upstream import discovery

GOOD = """
[server]
host = "127.0.0.1"
port = 8000

[backends.goku]
url = "http://127.0.0.1:11434/v1"
model = "qwen2.5-coder:14b"
api-key-env = "OPENAI_API_KEY"
weight = 1.0
timeout-s = 120

[backends.vegeta]
url = "http://127.0.0.1:11434/v1"
model = "llama3.2:3b"

[backends.cloud]
url = "https://api.openai.com/v1"
model = "gpt-4o-mini"

[models.ultra-instinct]
strategy = "single"
members = ["goku"]
fallbacks = ["vegeta", "cloud"]
"""


def test_the_documented_surface_parses_as_written() -> None:
    cfg = config.parse(GOOD, "shenron.toml")
    assert cfg.backends["goku"].api_key_env == "OPENAI_API_KEY"
    assert cfg.backends["goku"].timeout_s == 120
    vm = cfg.models["ultra-instinct"]
    assert isinstance(vm, SingleModel) and vm.fallbacks == ["vegeta", "cloud"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("weight = 1.0", "wieght = 1.0"), "key `backends.goku`: unknown key `wieght`"),
        (("timeout-s = 120", 'timeout-s = "soon"'), "key `backends.goku.timeout-s`: expected a number"),
        (('strategy = "single"', 'strategy = "solo-ish"'), "key `models.ultra-instinct.strategy`"),
        (('"vegeta", "cloud"]', '"vegeta", "clod"]'), "unknown backend 'clod'"),
        (('url = "https://api.openai.com/v1"', 'url = "api.openai.com"'), "key `backends.cloud.url`"),
        (("[server]", "[sever]"), "key `sever`: unknown key"),
        (('members = ["goku"]', ""), "missing required key `members`"),
        (("port = 8000", "port = 8000\nport = 9"), "not valid TOML"),
    ],
)
def test_a_bad_config_names_the_file_and_the_key(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.parse(GOOD.replace(*change), "/etc/shenron.toml")
    assert str(e.value).startswith("/etc/shenron.toml: ")
    assert expected in str(e.value)


def test_lookup_order_is_flag_then_env_then_cwd(tmp_path: Path) -> None:
    (tmp_path / "shenron.toml").write_text(GOOD)
    assert config.find("a.toml", {"SHENRON_CONFIG": "b.toml"}, tmp_path) == Path("a.toml")
    assert config.find(None, {"SHENRON_CONFIG": "b.toml"}, tmp_path) == Path("b.toml")
    assert config.find(None, {}, tmp_path) == tmp_path / "shenron.toml"
    assert config.find(None, {}, tmp_path / "elsewhere") is None


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config"):
        config.load(tmp_path / "nope.toml")


@respx.mock
async def test_discovery_builds_virtual_models_over_what_answers() -> None:
    respx.get("http://127.0.0.1:11434/v1/models").respond(
        json={"data": [{"id": "llama3.2:3b"}, {"id": "qwen2.5:7b"}, {"id": "phi4"}]})
    respx.get("http://127.0.0.1:8080/v1/models").respond(json={"data": [{"id": "tiny"}]})
    respx.get(url__regex=r"http://127\.0\.0\.1:(1234|8000)/.*").mock(side_effect=httpx.ConnectError("refused"))
    cfg = await discovery.discover(config.ServerConfig(port=9999))
    assert list(cfg.backends) == ["ollama/llama3.2:3b", "ollama/qwen2.5:7b", "ollama/phi4", "llamacpp/tiny"]
    assert cfg.backends["llamacpp/tiny"].url == "http://127.0.0.1:8080/v1"
    ui = cfg.models["ultra-instinct"]
    assert isinstance(ui, SingleModel) and ui.members == ["ollama/llama3.2:3b"]
    full = cfg.models["full-council"]
    assert isinstance(full, CouncilModel) and len(full.members) == 6  # four models, two of them twice
    assert full.members[:4] == list(cfg.backends) and full.sample_temperature == 0.7 and full.greedy_first
    assert "6 votes from 4 models" in cfg.defined["full-council"]


@respx.mock
async def test_one_local_model_gets_every_virtual_model_as_self_consistency() -> None:
    """A new user with one llama.cpp model used to get only ultra-instinct; the councils were 404."""
    respx.get("http://127.0.0.1:8080/v1/models").respond(json={"data": [{"id": "smol"}]})
    respx.get(url__regex=r"http://127\.0\.0\.1:(1234|8000|11434)/.*").mock(side_effect=httpx.ConnectError("no"))
    cfg = await discovery.discover(config.ServerConfig(port=9999))
    assert set(cfg.models) == {"ultra-instinct", "agent-lite", "full-council", "cascade"}
    lite, full = cfg.models["agent-lite"], cfg.models["full-council"]
    assert isinstance(lite, CouncilModel) and lite.members == ["llamacpp/smol"] * 3
    assert isinstance(full, CouncilModel) and full.members == ["llamacpp/smol"] * 6
    assert "6 samples of llamacpp/smol vote (self-consistency" in cfg.defined["full-council"]
    assert full.greedy_first and lite.greedy_first  # measured: samples alone lost to the greedy answer
    config._check_refs(cfg)  # what discovery defines passes the config's own checks


@respx.mock
async def test_discovery_with_nothing_running_gives_an_empty_config() -> None:
    respx.get(url__regex=r".*").mock(side_effect=httpx.ConnectError("refused"))
    cfg = await discovery.discover(config.ServerConfig())
    assert cfg.backends == {} and cfg.models == {}
    assert "discovered 0" in (cfg.source or "")
