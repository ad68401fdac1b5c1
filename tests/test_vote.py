from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from routing.core import ToolCall
from routing.vote.vote import (
    _BOLD,
    _BOXED,
    _FINAL,
    _LONE,
    Ballot,
    Tally,
    _clean_value,
    agreement,
    canonical,
    canonical_tool_calls,
    cluster,
    decided,
    final_answer,
    ranked,
    similarity,
)


@pytest.mark.parametrize(
    "texts",
    [
        ["The answer is 42.", "**42**", "\\boxed{42}", "42", "Let me think. 6*7... so the result is 42",
         "Final answer: 42.0", "answer: 42"],
        ["Answer: B", "B", "(B)", "b)", "The answer is B."],
        ['{"a": 1, "b": [1, 2]}', '```json\n{"b": [1,2], "a": 1}\n```', '{ "b" : [1, 2], "a" : 1 }'],
        ['[1, 2, 3]', ' \n[1,2,3]\n'],
        ["[1] Paris is the capital of France.", "[1] paris is the capital of **France**"],  # begins like JSON
        ["```python\ndef f(x):\n    # double it\n    return x*2\n```",
         "Here you go:\n```py\ndef f(x):  return (x * 2)   # twice\n```"],
        ["```js\nconst a = 1; // one\n```", "```js\nconst a=1;\n/* comment */\n```"],
        ["Paris is the capital of France.", "paris is the capital of **France**"],
    ],
)
def test_equivalent_answers_share_a_canonical_form(texts: list[str]) -> None:
    assert len({canonical(t) for t in texts}) == 1, {t: canonical(t) for t in texts}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The answer is 42.", "The answer is 43."),
        ("Answer: B", "Answer: C"),
        ('{"a": 1}', '{"a": 2}'),
        ("[1, 2]", "[1, 3]"),
        ("```python\ndef f(x):\n    return x*2\n```", "```python\ndef f(x):\n    return x*3\n```"),
    ],
)
def test_different_claims_stay_apart(a: str, b: str) -> None:
    assert canonical(a) != canonical(b)
    assert len(cluster([Ballot("a", 1, 0, a), Ballot("b", 1, 1, b)])) == 2


def test_tool_calls_compare_name_and_arguments_as_data() -> None:
    one = [ToolCall("x", "f", '{"a": 1, "b": 2}')]
    two = [ToolCall("y", "f", '{"b":2,"a":1}')]
    other = [ToolCall("z", "g", '{"a": 1, "b": 2}')]
    assert canonical_tool_calls(one) == canonical_tool_calls(two) != canonical_tool_calls(other)


def test_similarity_is_dice_over_words() -> None:
    assert similarity("a b c d", "a b c d") == 1.0
    assert similarity("a b c d", "a b c e") == 0.75
    assert similarity("x", "y") == 0.0


def test_similar_free_text_joins_a_cluster_below_threshold_does_not() -> None:
    base = "Rome was not built in a single day, it took centuries of work"
    near = "Rome was not built in a day, it took centuries of work"
    far = "Cats sleep most of the day"
    groups = cluster([Ballot("a", 1, 0, base), Ballot("b", 1, 1, near), Ballot("c", 1, 2, far)], threshold=0.8)
    assert [[b.member for b in c.ballots] for c in groups] == [["a", "b"], ["c"]]


@pytest.mark.parametrize(
    ("ballots", "winner", "agree"),
    [
        # plain majority
        ([("a", 1, "42"), ("b", 1, "The answer is 42."), ("c", 1, "41")], ["a", "b"], 2 / 3),
        # a weighted minority beats a numerous majority
        ([("goku", 3.0, "42"), ("b", 1, "41"), ("c", 1, "41")], ["goku"], 0.6),
        # tie on weight: more members win
        ([("a", 2.0, "1"), ("b", 1.0, "2"), ("c", 1.0, "2")], ["b", "c"], 0.5),
        # tie on weight and members: the earliest answer wins
        ([("a", 1, "1"), ("b", 1, "2")], ["a"], 0.5),
    ],
)
def test_the_heaviest_cluster_wins(ballots: list[tuple[str, float, str]], winner: list[str], agree: float) -> None:
    groups = cluster([Ballot(m, w, i, t) for i, (m, w, t) in enumerate(ballots)])
    assert [b.member for b in ranked(groups)[0].ballots] == winner
    assert agreement(groups) == pytest.approx(agree, abs=1e-3)


def test_the_representative_is_the_heaviest_members_answer_verbatim() -> None:
    groups = cluster([Ballot("a", 1, 0, "42"), Ballot("b", 2, 1, "**The answer is 42.**")])
    assert ranked(groups)[0].representative.text == "**The answer is 42.**"


@pytest.mark.parametrize(
    ("answered", "outstanding", "expected"),
    [
        ([("a", 1, "42"), ("b", 1, "42")], 1.0, True),  # 2 > 0 + 1
        ([("a", 1, "42"), ("b", 1, "42")], 2.0, False),  # the two outstanding could tie
        ([("a", 1, "42"), ("b", 1, "41")], 0.5, False),
        ([("a", 3, "42"), ("b", 1, "41")], 1.0, True),  # 3 > 1 + 1
        ([("a", 1, "42")], 0.0, True),  # nobody left
        ([], 3.0, False),
    ],
)
def test_early_decision_only_when_the_vote_can_no_longer_change(
    answered: list[tuple[str, float, str]], outstanding: float, expected: bool
) -> None:
    groups = cluster([Ballot(m, w, i, t) for i, (m, w, t) in enumerate(answered)])
    assert decided(groups, outstanding) is expected


_ANSWERS = [
    "Paris.", "The capital of France is Paris.", "It's Paris!", "Lyon.", "Yes.", "No, it is not.", "Yes, it is.",
    "42", "The answer is 42.", "**41**", "B", "Answer: B", '{"a": 1}', '{ "a" : 1 }',
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat by the door in the sun "
    "and the bird sings a song of the morning to everyone who listens in the quiet little town.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat by the door in the sun "
    "and the bird sings a song of the evening to everyone who listens in the quiet little town.",
    "Something else entirely, said at length, with many words that share nothing at all with the others, "
    "since a long free text joins a cluster only by the similarity of its words to that cluster's first.",
]


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.lists(st.tuples(st.sampled_from(_ANSWERS) | st.text(max_size=12),
                                     st.sampled_from([0.5, 1.0, 1.5, 2.0]), st.booleans()), max_size=8),
                  st.sampled_from(["", "What is the capital of France?", "Is Paris in France?"]))
def test_a_tally_of_arrivals_is_the_vote_taken_again_after_each(answers: list[tuple[str, float, bool]],
                                                                question: str) -> None:
    """A council with early decision keeps one `Tally` as answers arrive instead of clustering every answer
    again after each: after every arrival its clusters must be exactly those `cluster` makes of the answers
    so far, each with its members' weight (which the early decision and the ranking read)."""
    tally = Tally(0.8, question)
    ballots: list[Ballot] = []
    for i, (text, weight, tool) in enumerate(answers):
        calls = (ToolCall("id", "get", f'{{"q": "{len(text)}"}}'),) if tool else ()
        b = Ballot(f"m{i}", weight, i, text, calls)
        ballots.append(b)
        tally.add(b)
        fresh = cluster(list(ballots), 0.8, question)
        assert [(c.key, [x.member for x in c.ballots]) for c in tally.clusters] == \
            [(c.key, [x.member for x in c.ballots]) for c in fresh]
        assert [c.weight for c in tally.clusters] == [sum(x.weight for x in c.ballots) for c in fresh]
        assert tally.ballots == ballots


_WORDS = ["so", "So", "SO", "ſo", "also", "answer", "Final Answer", "the result", "thus", "therefore", "is", ":",
          "=", "would be", "42", "Paris", "\n", " ", ".", "**", "alpha", "KELVIN", "Ǆ"]


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(st.lists(st.sampled_from(_WORDS) | st.text(max_size=6), max_size=14))
def test_the_final_answer_prefilter_never_changes_what_is_read(parts: list[str]) -> None:
    """`final_answer` skips its slow search when none of its words is in the text: it must read what the
    search alone reads, case-folding traps (the long s of `ſo`, which re.I takes for `so`) included."""
    text = " ".join(parts)
    t = text.strip()
    expected = None
    if not (_BOXED.search(t) or _LONE.match(t) or _BOLD.match(t)):
        for candidate in ((t.splitlines() or [""])[-1], t):
            m = _FINAL.search(candidate)
            if m and len(m.group(1)) <= 80:
                expected = _clean_value(m.group(1))
                break
        assert final_answer(text) == expected
