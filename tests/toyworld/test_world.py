"""The toy world: deterministic scenes and pictures, texts that agree with the ground truth, corruptions that matter."""

import hashlib
import random

import numpy as np

from stic_plugin.generation.corruption import apply_corruption
from stic_plugin.toyworld import world
from stic_plugin.toyworld.scoring import description_counts, description_metrics, parse_mentions


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


def test_the_careful_description_and_caption_name_exactly_the_scene():
    for index in range(50):
        scene = world.sample_scene(3, "test", index)
        for text in (world.detailed_description(scene.objects), world.short_caption(scene.objects)):
            metrics = description_metrics(description_counts(text, scene))
            assert (metrics["chair_i"], metrics["recall"], metrics["colour_accuracy"]) == (0.0, 1.0, 1.0)
        mentions = parse_mentions(world.detailed_description(scene.objects))
        assert [(m.colour, m.shape, m.position, m.size) for m in mentions] == [
            (o.colour, o.shape, o.position, o.size) for o in scene.in_reading_order()
        ]


def test_careless_captions_change_only_the_colour_of_small_objects():
    changed = 0
    for index in range(200):
        scene = world.sample_scene(0, "pretrain", index)
        seen = world.careless_caption_objects(scene, random.Random(index), world.CARELESS_SHARE)
        for truth, caption in zip(scene.objects, seen):
            assert (caption.shape, caption.size, caption.position) == (truth.shape, truth.size, truth.position)
            if caption.colour != truth.colour:
                assert truth.size == "small" and caption.colour == world.USUAL_COLOUR[truth.shape]
                changed += 1
    assert changed > 50  # the habit is common enough for the base model to learn it


def test_imagined_objects_are_absent_and_in_free_cells():
    for index in range(100):
        scene = world.sample_scene(0, "unlabeled", index)
        extra = world.imagined_objects(scene, random.Random(index), 2)
        taken = {obj.position for obj in scene.objects}
        assert len(extra) == 2 and not taken & {obj.position for obj in extra}
        assert not {(o.colour, o.shape) for o in scene.objects} & {(o.colour, o.shape) for o in extra}


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
            elif kind == "where":
                (obj,) = [o for o in scene.objects if f"the {o.colour} {o.shape}?" in question]
                assert answer == obj.position
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
    assert np.abs(np.asarray(blurred, dtype=np.float64)[centre, centre] - pixels[centre, centre]).mean() > 10
    # A hue shift of 0.3 (the largest ColorJitter draws) turns the blue triangle into another colour.
    shifted = apply_corruption(picture, "color_jitter", {"brightness": 1.0, "hue": 0.3, "order": ["hue", "brightness"]})
    blue = np.array(world.COLOURS["blue"], dtype=np.float64)
    centre_pixel = np.asarray(shifted, dtype=np.float64)[24, 24]
    assert np.abs(centre_pixel - blue).max() > 80
