"""Integration: a stream that Claude Code's and Codex's dialects rebuild, through `shenron serve`, read by the
official SDKs from an upstream that sends its tokens at once (a read holds many, read as one delta) or one
at a time, and reports no usage (as llama.cpp's server without `include_usage`): the text is the upstream's,
whole, and the output tokens are its chunks counted, however they were read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.procs import fake_upstream, running, shenron

pytestmark = pytest.mark.integration

ANSWER = "Paris is the capital of France, and it sits on the Seine in the north of the country, far from the sea."
WORDS = len(ANSWER.split(" "))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("rebuilt")
    with running() as started:
        config = ""
        for name, pace in (("at-once", "0"), ("paced", "3")):
            proc, url = fake_upstream(tmp, "--models", name, "--answer", ANSWER, "--no-usage", "--token-ms", pace)
            started.append(proc)
            config += f'[backends.{name}]\nurl = "{url}"\nmodel = "{name}"\n'
        proxy, base = shenron(tmp, config)
        started.append(proxy)
        yield {"base": base}


@pytest.mark.parametrize("model", ["at-once", "paced"])
def test_a_messages_stream_says_the_whole_answer_and_counts_its_chunks(stack: dict[str, Any], model: str) -> None:
    claude = anthropic.Anthropic(base_url=stack["base"].removesuffix("/v1"), api_key="unused", max_retries=0,
                                 timeout=30)
    with claude.messages.stream(model=model, max_tokens=200,
                                messages=[{"role": "user", "content": "Where is Paris?"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == ANSWER
    assert final.usage.output_tokens == WORDS, "estimated a token a chunk: the server reported none"


@pytest.mark.parametrize("model", ["at-once", "paced"])
def test_a_responses_stream_says_the_whole_answer_and_counts_its_chunks(stack: dict[str, Any], model: str) -> None:
    oai = openai.OpenAI(base_url=stack["base"], api_key="unused", max_retries=0, timeout=30)
    with oai.responses.stream(model=model, input="Where is Paris?", store=False) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == ANSWER == final.output_text
    assert final.usage is not None and final.usage.output_tokens == WORDS


@pytest.mark.parametrize("model", ["at-once", "paced"])
def test_a_relayed_chat_stream_says_the_same(stack: dict[str, Any], model: str) -> None:
    oai = openai.OpenAI(base_url=stack["base"], api_key="unused", max_retries=0, timeout=30)
    chunks = list(oai.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": "Where is Paris?"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    usage = next(c.usage for c in chunks if c.usage)
    assert usage.completion_tokens == WORDS
