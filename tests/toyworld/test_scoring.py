"""The toy world's scorer, exact on hand-written descriptions and answers."""

from collections import Counter

import pytest

from stic_plugin.toyworld.scoring import (
    Mention,
    answer_is_right,
    description_counts,
    description_metrics,
    parse_mentions,
    score_predictions,
)
from stic_plugin.toyworld.world import Scene, SceneObject

SCENE = Scene(
    "test-00001",
    (
        SceneObject("circle", "red", "small", "top left"),
        SceneObject("square", "blue", "large", "center"),
        SceneObject("circle", "red", "large", "bottom right"),
    ),
    (128, 128, 128),
    0,
)


def test_mentions_are_read_with_their_place_and_size():
    text = "there are three objects. at the top left, a small red circle. in the center, a large blue square."
    assert parse_mentions(text) == [
        Mention("red", "circle", "top left", "small"),
        Mention("blue", "square", "center", "large"),
    ]
    assert parse_mentions("on the right, a green triangle; a yellow square.") == [
        Mention("green", "triangle", "right"),
        Mention("yellow", "square", None),
    ]
    assert parse_mentions("nothing to see, a circle.") == []  # no colour: not an object mention


def test_a_right_description_has_no_hallucination_and_full_recall():
    text = (
        "there are three objects. at the top left, a small red circle. in the center, a large blue square. "
        "at the bottom right, a large red circle."
    )
    counts = description_counts(text, SCENE)
    assert counts == Counter(
        descriptions=1,
        mentions=3,
        hallucinated=0,
        descriptions_with_hallucination=0,
        objects=3,
        recalled=3,
        colour_checked=3,
        colour_right=3,
    )
    assert description_metrics(counts) == {
        "chair_i": 0.0,
        "chair_s": 0.0,
        "recall": 1.0,
        "colour_accuracy": 1.0,
        "mentions_per_description": 3.0,
    }


def test_wrong_colours_absent_objects_and_repeats_are_counted_exactly():
    # Five mentions: the green square (the square is blue) and the yellow triangle are absent objects; the red
    # circle is named three times, the scene has two, so recall counts two, and none of the three is a
    # hallucination (CHAIR counts objects the scene does not hold).
    text = (
        "at the top left, a red circle. in the center, a green square. at the top, a yellow triangle. "
        "at the bottom right, a red circle. on the left, a red circle."
    )
    counts = description_counts(text, SCENE)
    assert counts["mentions"] == 5 and counts["hallucinated"] == 2 and counts["descriptions_with_hallucination"] == 1
    assert counts["recalled"] == 2  # two red circles of two; the blue square was never named
    # colour checked where the shape is named at an object's place: top left (right), center (wrong), bottom right
    assert (counts["colour_checked"], counts["colour_right"]) == (3, 2)
    metrics = description_metrics(counts)
    assert metrics["chair_i"] == pytest.approx(2 / 5) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["colour_accuracy"] == pytest.approx(2 / 3)


def test_metrics_sum_counts_over_descriptions_before_dividing():
    empty = description_counts("", SCENE)
    wrong = description_counts("at the top, a green triangle.", SCENE)
    metrics = description_metrics(empty + wrong)
    assert metrics["chair_i"] == 1.0 and metrics["chair_s"] == 0.5 and metrics["recall"] == 0.0
    assert metrics["colour_accuracy"] is None  # no shape named at an object's place


def test_answers_compare_after_normalisation():
    assert answer_is_right("Two.", "two") and answer_is_right("  top   left ", "top left")
    assert not answer_is_right("top", "top left") and not answer_is_right("", "no")


def test_a_run_is_scored_by_record_kind():
    truth = {SCENE.key: SCENE}
    records = [
        {"source_id": f"describe:{SCENE.key}", "prediction": "at the top left, a red circle.", "description": ""},
        {
            "source_id": f"question:count:0:{SCENE.key}",
            "prediction": "two",
            "reference": "two",
            "description": "in the center, a blue square.",
        },
        {
            "source_id": f"question:colour:1:{SCENE.key}",
            "prediction": "red",
            "reference": "blue",
            "description": "in the center, a blue square.",
        },
    ]
    scored = score_predictions(records, truth, dar=True)
    assert scored["questions"] == 0.5 and scored["questions_by_kind"] == {"colour": 0.0, "count": 1.0}
    assert scored["descriptions"]["recall"] == pytest.approx(1 / 3)
    assert scored["dar_descriptions"]["recall"] == pytest.approx(1 / 3)  # one first pass per scene
    assert scored["counts"]["questions_asked"] == 2
