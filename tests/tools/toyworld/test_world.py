"""The toy world: deterministic scenes and pictures, texts that agree with the ground truth, careless annotators
whose errors are the ones the corruptions make, corruptions that matter."""

import hashlib
import random
from collections import Counter

import numpy as np

from stic_plugin.method.corruption import apply_corruption
from stic_plugin.tools.toyworld import world
from stic_plugin.tools.toyworld.scoring import description_counts, description_metrics, parse_mentions


def picture_digest(scene) -> str:
    return hashlib.sha256(world.render(scene).tobytes()).hexdigest()


def test_scenes_and_pictures_are_a_function_of_seed_split_and_index():
    first = [world.sample_scene(0, "test", index) for index in range(20)]
    again = [world.sample_scene(0, "test", index) for index in range(20)]
    assert first == again
    assert [picture_digest(s) for s in first[:5]] == [picture_digest(s) for s in again[:5]]
    assert first != [world.sample_scene(0, "validation", index) for index in range(20)]
    assert first != [world.sample_scene(1, "test", index) for index in range(20)]
    for scene in first:
        assert 1 <= len(scene.objects) <= world.MAX_OBJECTS
        assert len({obj.position for obj in scene.objects}) == len(scene.objects)  # one object per cell
        assert world.Scene.from_json(scene.to_json()) == world.Scene(
            scene.key, tuple(scene.in_reading_order()), scene.background, scene.texture_seed
        )
    assert world.render(first[0]).size == (world.IMAGE_SIZE, world.IMAGE_SIZE)


def test_companions_go_together_more_often_than_by_chance():
    scenes = [world.sample_scene(0, "pretrain", index) for index in range(3000)]
    with_anchor = [s for s in scenes if ("red", "circle") in {(o.colour, o.shape) for o in s.objects}]
    together = sum(("blue", "square") in {(o.colour, o.shape) for o in s.objects} for s in with_anchor)
    without = [s for s in scenes if s not in with_anchor]
    alone = sum(("blue", "square") in {(o.colour, o.shape) for o in s.objects} for s in without)
    assert together / len(with_anchor) > 0.4 and together / len(with_anchor) > 3 * alone / len(without)


def test_the_description_names_exactly_the_scene():
    for index in range(50):
        scene = world.sample_scene(3, "test", index)
        text = world.describe(scene.objects)
        metrics = description_metrics(description_counts(text, scene))
        assert (metrics["f1"], metrics["chair_i"], metrics["size_accuracy"]) == (1.0, 0.0, 1.0)
        assert [(m.colour, m.shape, m.position, m.size) for m in parse_mentions(text)] == [
            (o.colour, o.shape, o.position, o.size) for o in scene.in_reading_order()
        ]
        assert text.startswith(world.count_phrase(len(scene.objects)))


def test_careless_annotators_err_on_faint_objects_and_add_companions_as_corruptions_and_bad_prompts_do():
    """Their errors, each more often than not: a faint small object left out (what Resize(20) does to it), another
    faint one named as the absent companion of an object in the picture, else with the similar hue (what a hue
    shift does), the absent companion of an object written in after it (what a hallucination prompt adds); every
    other object as it is."""
    kinds = Counter()
    for index in range(3000):
        scene = world.sample_scene(0, "pretrain", index)
        present = {(o.colour, o.shape) for o in scene.objects}
        seen = world.careless_objects(scene, random.Random(index))
        at = {o.position: o for o in scene.objects}
        for obj in seen:
            truth = at.get(obj.position)
            if truth is None:  # written in: the companion of an object before it, in the next free cell
                anchors = [
                    o for o in scene.objects if world.COMPANION.get((o.colour, o.shape)) == (obj.colour, obj.shape)
                ]
                assert (obj.colour, obj.shape) not in present and anchors
                kinds["companion added"] += 1
            elif truth == obj:
                kinds["faint, right" if truth.faint else "right"] += 1
            else:  # a faint object named as an absent companion, else with the similar hue
                assert truth.faint and (obj.size, obj.position) == (truth.size, truth.position)
                expected = {world.COMPANION[n] for n in present if n in world.COMPANION} - present
                if (obj.colour, obj.shape) in expected:
                    kinds["faint, companion"] += 1
                else:
                    assert (obj.shape, obj.colour) == (truth.shape, world.SIMILAR_HUE[truth.colour])
                    kinds["faint, similar hue"] += 1
        missed = [o for o in scene.objects if o.position not in {s.position for s in seen}]
        assert all(o.faint and o.size == "small" for o in missed)
        kinds["faint small, missed"] += len(missed)
    wrong = kinds["faint, similar hue"] + kinds["faint, companion"]
    assert wrong > kinds["faint, right"]  # more often than not: a model learns the habit
    assert kinds["right"] > 2 * (wrong + kinds["faint small, missed"])
    assert kinds["companion added"] > 200 and kinds["faint, companion"] > 100


def test_imagined_objects_are_absent_in_free_cells_and_companions_first():
    for index in range(100):
        scene = world.sample_scene(0, "unlabeled", index)
        extra = world.imagined_objects(scene, random.Random(index), 2)
        taken = {obj.position for obj in scene.objects}
        present = {(o.colour, o.shape) for o in scene.objects}
        assert len(extra) == min(2, 9 - len(taken)) and not taken & {obj.position for obj in extra}
        assert not present & {(o.colour, o.shape) for o in extra}
        partners = {world.COMPANION[n] for n in present if n in world.COMPANION} - present
        if partners and extra:
            assert (extra[0].colour, extra[0].shape) in partners


def test_answers_follow_from_the_ground_truth():
    for index in range(100):
        scene = world.sample_scene(0, "test", index)
        for kind, question, answer in world.questions(scene, random.Random(index), 6):
            if kind == "count":
                shape = next(s for s in world.SHAPES if world.PLURALS[s] in question)
                assert answer == world.NUMBER_WORDS[sum(o.shape == shape for o in scene.objects)]
            elif kind == "colour":
                (obj,) = [o for o in scene.objects if f"the {o.shape}?" in question]
                assert answer == obj.colour
            elif kind in ("where", "size"):
                (obj,) = [o for o in scene.objects if f"the {o.colour} {o.shape}?" in question]
                assert answer == (obj.position if kind == "where" else obj.size)
            elif kind == "shape":
                (obj,) = [o for o in scene.objects if question.endswith(f"{world.place_phrase(o.position)}?")]
                assert answer == obj.shape
            else:
                colour, shape = question.removeprefix("is there a ").rstrip("?").split()
                assert answer == ("yes" if any((o.colour, o.shape) == (colour, shape) for o in scene.objects) else "no")


def test_the_papers_corruptions_change_what_the_model_sees():
    scene = world.Scene("k", (world.SceneObject("triangle", "blue", "small", "center"),), (128, 128, 128), 7)
    picture = world.render(scene)
    pixels = np.asarray(picture, dtype=np.float64)
    # Resize(20), then back to the model's size as its processor does: the small triangle's edges are gone.
    blurred = apply_corruption(picture, "low_resolution", {"shorter_side": 20}).resize(picture.size)
    centre = slice(16, 32)
    assert np.abs(np.asarray(blurred, dtype=np.float64)[centre, centre] - pixels[centre, centre]).mean() > 8
    # A hue shift of 0.3 (the largest ColorJitter draws) turns the blue triangle into another colour.
    shifted = apply_corruption(picture, "color_jitter", {"brightness": 1.0, "hue": 0.3, "order": ["hue", "brightness"]})
    blue = np.array(world.COLOURS["blue"], dtype=np.float64)
    centre_pixel = np.asarray(shifted, dtype=np.float64)[24, 24]
    assert np.abs(centre_pixel - blue).max() > 80


def test_a_faint_object_is_closer_to_the_background():
    bold = world.Scene("k", (world.SceneObject("square", "red", "large", "center"),), (128, 128, 128), 3)
    faint = world.Scene("k", (world.SceneObject("square", "red", "large", "center", faint=True),), (128, 128, 128), 3)
    background = np.asarray(world.render(world.Scene("k", (), (128, 128, 128), 3)), dtype=np.float64)[24, 24]
    bold_pixel = np.asarray(world.render(bold), dtype=np.float64)[24, 24]
    faint_pixel = np.asarray(world.render(faint), dtype=np.float64)[24, 24]
    assert np.abs(faint_pixel - background).sum() < 0.6 * np.abs(bold_pixel - background).sum()
