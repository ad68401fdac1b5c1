"""The access log's writer and its numbers, alone (the lines a served request gets: tests/test_fastpath.py,
tests/test_ops.py)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from proxy import accesslog


class _Partial:
    """A destination that takes at most a few bytes a write, as a pipe or a nearly full disk may."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "ab", buffering=0)

    def write(self, data: Any) -> int:
        return self.f.write(bytes(data[:7]))


def test_lines_a_destination_takes_in_pieces_arrive_whole(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    lines = accesslog._Lines(path=str(path))
    lines.file = _Partial(path)  # type: ignore[assignment]
    sent = [{"ts": 1.5, "path": f"/v1/x{i}", "status": 200, "model": "m" * i} for i in range(5)]
    for fields in sent:
        lines.lines.append(json.dumps(fields, separators=(",", ":")).encode() + b"\n")
    lines.flush()
    assert [json.loads(line) for line in path.read_text().splitlines()] == sent


def test_a_destination_that_takes_nothing_is_a_warning_not_a_loop(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    class Full:
        def write(self, data: Any) -> int:
            return 0

    lines = accesslog._Lines(path=str(tmp_path / "access.jsonl"))
    lines.file = Full()  # type: ignore[assignment]
    lines.lines.append(b'{"ts":1}\n')
    with caplog.at_level(logging.WARNING, logger="shenron"):
        lines.flush()
    assert "access log not written" in caplog.text and lines.lines == []


def test_times_are_rounded_as_round_rounds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ts` to the millisecond and `ms` to a tenth without a decimal string: the same numbers `round` gives,
    but for values within a rounding error of a tie."""
    rng = random.Random(7)
    for _ in range(20_000):
        t = rng.uniform(1.7e9, 1.8e9)
        if abs((t * 1000) % 1 - 0.5) > 1e-3:
            monkeypatch.setattr(accesslog.time, "time", lambda t=t: t)
            assert accesslog.now() == round(t, 3), t
        s = rng.uniform(0, 120)
        if abs((s * 10000) % 1 - 0.5) > 1e-6:
            assert accesslog._ms(s) == round(s * 1000, 1), s
