"""Validation against OpenAI's published schemas (../shared/spec), where that folder exists."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from tests.procs import ROOT

SPEC = ROOT.parent / "shared" / "spec" / "openai-schemas.json"
MISSING = f"OpenAI's schemas not found at {SPEC} (the ../shared folder beside the checkout)"


@cache
def _validator(name: str) -> Any:
    import jsonschema

    bundled = json.loads(SPEC.read_text())
    return jsonschema.Draft202012Validator({**bundled, "$ref": f"#/$defs/{name}"})


def check(name: str, instance: Any) -> None:
    """Validate `instance` as the named schema; skip the calling test visibly if the spec is absent."""
    if not SPEC.is_file():
        pytest.skip(MISSING)
    _validator(name).validate(instance)


def check_stream(text: str) -> list[Any]:
    """Validate every chunk of an SSE body; returns the decoded events ('[DONE]' last)."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        if not block.startswith("data: "):
            continue
        data = block[6:]
        if data == "[DONE]":
            out.append(data)
            continue
        event = json.loads(data)
        check("ErrorResponse" if "error" in event else "CreateChatCompletionStreamResponse", event)
        out.append(event)
    return out
