"""Scoring describe-and-respond answers: choice letters, exact and contained answers, what can be scored."""

import pytest

from stic_plugin.data.metrics import accuracy, choice_letter, is_correct, scorable


@pytest.mark.parametrize(
    "text,letter",
    [
        ("B", "B"),
        ("(C) a cat", "C"),
        ("D. dog", "D"),
        ("The answer is A.", "A"),
        ("Answer: (b)", "B"),
        ("I think it is the (D) option", "D"),
        ("a dog", None),
        ("The answer is a dog.", None),
        ("", None),
        (None, None),
    ],
)
def test_choice_letter(text, letter):
    assert choice_letter(text) == letter


def test_exact_contains_and_accuracy():
    assert is_correct("Paris.", " paris", "exact") and not is_correct("Paris, France", "Paris", "exact")
    assert is_correct("It is Paris, France", "paris", "contains") and not is_correct("Lyon", "Paris", "contains")
    pairs = [("B", "B"), ("(A)", "B"), ("The answer is C", "C"), ("x", None), ("D", "")]
    assert accuracy(pairs, "choice") == (2, 3)  # references missing or empty are not counted
    with pytest.raises(ValueError, match="unknown metric"):
        is_correct("a", "a", "bleu")


def test_scorable_references():
    assert scorable("B", "choice") and scorable("(C) cat", "choice")
    assert not scorable("Blue", "choice") and not scorable(None, "exact") and not scorable("", "contains")
    assert scorable("Blue", "exact")
