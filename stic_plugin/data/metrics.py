"""Scoring describe-and-respond predictions against reference answers: pure functions of strings."""

import re

# A letter alone, or followed by ) ] . : , -- not "I think ...", where "I" is a word.
_LEADING_LETTER = re.compile(r"^\s*(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])(?:[\.:,\)]|\s*$))")
# Only the word "answer" ignores case: the letter must be a capital, or "the answer is a dog" would say A.
_ANSWER_IS = re.compile(r"(?i:answer)(?:\s+(?i:is))?\s*[:\-]?\s*[\(\[]?([A-Z])\b")
_OPTION = re.compile(r"[\(\[]([A-Za-z])[\)\]]")  # "(b)" in brackets: a letter, whatever its case


def choice_letter(text: str | None) -> str | None:
    """The multiple-choice letter a text gives: "B", "(B) cat", "B. cat", "The answer is B." -> "B"."""
    if not text:
        return None
    for pattern in (_LEADING_LETTER, _ANSWER_IS, _OPTION):
        match = pattern.search(text)
        if match:
            return next(group for group in match.groups() if group).upper()
    return None


def normalize(text: str) -> str:
    return " ".join(text.lower().split()).strip().rstrip(".!?").strip()


def is_correct(prediction: str, reference: str, metric: str) -> bool:
    if metric == "choice":
        expected = choice_letter(reference)
        return expected is not None and choice_letter(prediction) == expected
    if metric == "exact":
        return normalize(prediction) == normalize(reference)
    if metric == "contains":
        return bool(normalize(reference)) and normalize(reference) in normalize(prediction)
    raise ValueError(f"unknown metric {metric!r}: choice, exact or contains")


def scorable(reference: str | None, metric: str) -> bool:
    """A reference the metric can score: present, and for `choice` holding a letter."""
    if not reference:
        return False
    return choice_letter(reference) is not None if metric == "choice" else bool(normalize(reference))


def accuracy(pairs: list[tuple[str, str]], metric: str) -> tuple[int, int]:
    """(correct, counted) over the (prediction, reference) pairs whose reference can be scored."""
    counted = [(p, r) for p, r in pairs if scorable(r, metric)]
    return sum(is_correct(p, r, metric) for p, r in counted), len(counted)
