"""The toy world's scorer, exact on hand-scored descriptions and answers."""

import pytest

from stic_plugin.tools.toyworld.scoring import (
    Mention,
    answer_is_right,
    description_counts,
    description_metrics,
    parse_mentions,
    score_predictions,
)
from stic_plugin.tools.toyworld.world import Scene, SceneObject

SCENE = Scene(
    "test-00001",
    (
        SceneObject("circle", "red", "small", "top left"),
        SceneObject("square", "blue", "large", "center"),
        SceneObject("circle", "red", "large", "bottom right", faint=True),
    ),
    (128, 128, 128),
    0,
)
RIGHT = (
    "there are three objects. at the top left, a small red circle. in the center, a large blue square. "
    "at the bottom right, a large red circle."
)


def test_mentions_are_read_with_their_place_and_size():
    text = "there are three objects. at the top left, a small red circle. in the center, a large blue square."
    assert parse_mentions(text) == [
        Mention("red", "circle", "top left", "small"),
        Mention("blue", "square", "center", "large"),
    ]
    assert parse_mentions("on the right, a green triangle; a purple square.") == [
        Mention("green", "triangle", "right"),
        Mention("purple", "square", None),
    ]
    assert parse_mentions("nothing to see, a circle.") == []  # no colour: not an object mention


def test_a_right_description_scores_one_everywhere():
    counts = description_counts(RIGHT, SCENE)
    assert dict(counts) == {
        "descriptions": 1,
        "mentions": 3,
        "right": 3,
        "objects": 3,
        "hallucinated": 0,
        "descriptions_with_hallucination": 0,
        "sized": 3,
        "size_right": 3,
    }
    assert description_metrics(counts) == {
        "f1": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "chair_i": 0.0,
        "chair_s": 0.0,
        "mentions_per_description": 3.0,
        "size_accuracy": 1.0,
    }


def test_naming_fewer_objects_lowers_recall_and_f1_and_not_precision():
    """Hand-scored: two of three objects named, both right: precision 1, recall 2/3, F1 = 2*2/(2+3) = 0.8."""
    text = "there are two objects. at the top left, a small red circle. in the center, a large blue square."
    metrics = description_metrics(description_counts(text, SCENE))
    assert metrics["precision"] == 1.0 and metrics["chair_i"] == 0.0  # a hallucination measure sees nothing wrong
    assert metrics["recall"] == pytest.approx(2 / 3) and metrics["f1"] == pytest.approx(0.8)
    assert metrics["f1"] < description_metrics(description_counts(RIGHT, SCENE))["f1"]


def test_a_right_object_at_a_wrong_place_is_wrong_twice_but_no_hallucination():
    """Hand-scored: the blue square named on the left (it is in the center): one wrong mention and one object
    missed; CHAIR-i does not see it (a blue square is in the picture)."""
    text = (
        "at the top left, a small red circle. on the left, a large blue square. "
        "at the bottom right, a large red circle."
    )
    counts = description_counts(text, SCENE)
    assert (counts["mentions"], counts["right"], counts["objects"], counts["hallucinated"]) == (3, 2, 3, 0)
    metrics = description_metrics(counts)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3) and metrics["chair_i"] == 0.0


def test_a_wrong_size_a_wrong_colour_an_absent_object_and_a_repeat():
    """Hand-scored, six mentions:
    top left "large red circle": the object is small: wrong (size checked: wrong);
    center "blue square" (no size): right; center again: a repeat, not right;
    bottom right "large orange circle": wrong colour, and a hallucination (no orange circle anywhere);
    top "small purple triangle": absent: a hallucination;
    bottom right "red circle": right (no size named).
    right 2 of 6 mentions, 2 of 3 objects; hallucinated: the orange circle and the purple triangle."""
    text = (
        "at the top left, a large red circle. in the center, a blue square. in the center, a blue square. "
        "at the bottom right, a large orange circle. at the top, a small purple triangle. "
        "at the bottom right, a red circle."
    )
    counts = description_counts(text, SCENE)
    assert (counts["mentions"], counts["right"], counts["objects"]) == (6, 2, 3)
    assert (counts["hallucinated"], counts["descriptions_with_hallucination"]) == (2, 1)
    assert (counts["sized"], counts["size_right"]) == (1, 0)  # only the top-left circle names a size and matches
    metrics = description_metrics(counts)
    assert metrics["precision"] == pytest.approx(2 / 6) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 * 2 / (6 + 3)) and metrics["size_accuracy"] == 0.0
    assert metrics["chair_i"] == pytest.approx(2 / 6)


def test_metrics_sum_counts_over_descriptions_before_dividing():
    empty = description_counts("", SCENE)
    wrong = description_counts("at the top, a green triangle.", SCENE)
    metrics = description_metrics(empty + wrong)
    assert metrics["chair_i"] == 1.0 and metrics["chair_s"] == 0.5 and metrics["recall"] == 0.0
    assert metrics["precision"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["size_accuracy"] is None  # no size named of an object named right otherwise
    assert description_metrics(empty)["precision"] is None and description_metrics(empty)["f1"] is None


def test_answers_compare_after_normalisation():
    assert answer_is_right("Two.", "two") and answer_is_right("  top   left ", "top left")
    assert not answer_is_right("top", "top left") and not answer_is_right("", "no")


def test_a_run_is_scored_by_record_kind_with_counts_per_picture():
    other = Scene("test-00002", (SceneObject("triangle", "green", "small", "top"),), (100, 100, 100), 1)
    truth = {SCENE.key: SCENE, other.key: other}
    records = [
        {"source_id": f"describe:{SCENE.key}", "prediction": "at the top left, a red circle.", "description": ""},
        {"source_id": f"describe:{other.key}", "prediction": "at the top, a small green triangle.", "description": ""},
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
    assert scored["descriptions"]["recall"] == pytest.approx(2 / 4) and scored["descriptions"]["precision"] == 1.0
    assert scored["dar_descriptions"]["recall"] == pytest.approx(1 / 3)  # one first pass, of the first picture
    assert scored["counts"]["questions"] == {"asked:colour": 1, "right:colour": 0, "asked:count": 1, "right:count": 1}
    first = scored["per_picture"][SCENE.key]
    assert first["description:right"] == 1 and first["description:objects"] == 3
    assert first["asked:count"] == 1 and first["right:colour"] == 0 and first["dar_description:mentions"] == 1
    assert scored["per_picture"][other.key]["description:right"] == 1
