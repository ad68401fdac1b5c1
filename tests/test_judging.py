"""Reading code out of answers and scores out of validators, the way real models write them."""

from __future__ import annotations

import pytest

from routing.vote.judging import extract_code, parse_verdict, weighted_score

SEED_WEIGHTS = {"phi4": 0.20, "gemma3": 0.25, "qwen-coder": 0.20, "deepseek-sec": 0.20, "llama": 0.15}


def test_the_fenced_block_in_the_wanted_language_wins() -> None:
    answer = ("Here is a usage example:\n```bash\npip install thing\n```\nAnd the code:\n"
              "```python\ndef add(a, b):\n    return a + b\n```\nDone.")
    code = extract_code(answer, "python")
    assert code is not None and code.text == "def add(a, b):\n    return a + b\n"
    assert code.language == "python" and code.fenced


def test_the_longest_block_when_none_matches_and_the_fence_names_the_language() -> None:
    answer = "```js\nx\n```\n\n```js\nfunction f() { return 1; }\n```"
    code = extract_code(answer, None)
    assert code is not None and code.text.startswith("function f") and code.language == "js"


def test_an_unclosed_fence_and_a_bare_answer() -> None:
    code = extract_code("Sure:\n```python\nprint(1)\n", "python")
    assert code is not None and code.text == "print(1)\n"
    bare = extract_code("def f():\n    return 1", "python")
    assert bare is not None and not bare.fenced and bare.language == "python"
    assert extract_code("   ", "python") is None


def test_think_blocks_are_ignored() -> None:
    answer = "<think>maybe ```python\nwrong()\n``` no</think>\n```python\nright()\n```"
    code = extract_code(answer, "python")
    assert code is not None and code.text == "right()\n"


@pytest.mark.parametrize("text, score, issues", [
    ('{"score": 8.5, "issues": ["no docstring"]}', 8.5, ["no docstring"]),
    ('```json\n{"score": 7, "issues": []}\n```', 7.0, []),
    ('Here is my review.\n{"score": "6", "issues": "off by one"}\nThanks!', 6.0, ["off by one"]),
    ('<think>{"score": 1}</think>{"score": 9, "issues": [{"line": 3, "description": "unused import"}]}', 9.0,
     ["line 3: unused import"]),
    ('{"Score": "8/10", "Issues": ["x"]}', 8.0, ["x"]),
    ("Score: 7/10\n- missing type hints\n- no tests", 7.0, ["missing type hints", "no tests"]),
    ("**Score**: 45/100", 4.5, []),
])
def test_verdicts_in_the_shapes_models_write(text: str, score: float, issues: list[str]) -> None:
    verdict = parse_verdict(text)
    assert verdict is not None and verdict.score == score and verdict.issues == issues


@pytest.mark.parametrize("text", [
    "Looks great to me!",
    '{"score": 15, "issues": []}',
    '{"score": -1}',
    '{"rating": "excellent"}',
    "",
    '{"issues": ["no score at all"]}',
])
def test_nonsense_gives_no_verdict(text: str) -> None:
    assert parse_verdict(text) is None


def test_weighted_score_uses_the_seed_weights_and_leaves_out_the_silent() -> None:
    scores = {"phi4": 9.0, "gemma3": 8.0, "qwen-coder": 7.0, "deepseek-sec": 6.0, "llama": 10.0}
    expected = (0.2 * 9 + 0.25 * 8 + 0.2 * 7 + 0.2 * 6 + 0.15 * 10) / 1.0
    assert weighted_score(scores, SEED_WEIGHTS) == round(expected, 2)
    del scores["llama"]
    assert weighted_score(scores, SEED_WEIGHTS) == round((0.2 * 9 + 0.25 * 8 + 0.2 * 7 + 0.2 * 6) / 0.85, 2)
    assert weighted_score({}, SEED_WEIGHTS) is None


@pytest.mark.parametrize("said, count, pick", [
    ("The most consistent response is Response 2", 3, 1),
    ("The most consistent response is response #3, with 1 and 3 agreeing.", 3, 2),
    ("Response 1 is best.", 3, 0),
    ("The most consistent response is Response 7", 3, None),
    ("They all agree.", 3, None),
])
def test_the_judges_pick_is_read_or_none(said: str, count: int, pick: int | None) -> None:
    from routing.vote.synthesis import judge_pick

    assert judge_pick(said, count) == pick
