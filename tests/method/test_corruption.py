"""The corruptions do what their names say, deterministically, against naive float64 pixel arithmetic."""

import colorsys
import json
import random

import numpy as np
import pytest
from PIL import Image

from stic_plugin.method.corruption import apply_corruption, sample_corruption


def _image(width=64, height=40, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(64, 40), (40, 64), (300, 301), (20, 20)])
def test_low_resolution_sets_shorter_side_and_keeps_aspect(size):
    out = apply_corruption(_image(*size), "low_resolution", {"shorter_side": 20})
    width, height = size
    # torchvision's Resize(int): the shorter side becomes 20, the other keeps the aspect ratio (truncated)
    expected = (20, int(20 * height / width)) if width <= height else (int(20 * width / height), 20)
    assert out.size == expected


def test_brightness_against_naive_float64():
    image = _image()
    out = apply_corruption(image, "color_jitter", {"brightness": 1.37, "hue": 0.0, "order": ["brightness", "hue"]})
    expected = np.clip(np.asarray(image, dtype=np.float64) * 1.37, 0, 255)
    assert np.abs(np.asarray(out, dtype=np.float64) - expected).max() <= 1.0  # PIL rounds to 8 bits


def test_hue_shift_against_naive_float64():
    image = _image(seed=1)
    shift = 0.21
    out = np.asarray(
        apply_corruption(image, "color_jitter", {"brightness": 1.0, "hue": shift, "order": ["hue", "brightness"]}),
        dtype=np.float64,
    )
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    expected = np.empty_like(pixels)
    for y in range(pixels.shape[0]):
        for x in range(pixels.shape[1]):
            h, s, v = colorsys.rgb_to_hsv(*pixels[y, x])
            expected[y, x] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    difference = np.abs(out - expected * 255.0)
    # PIL works in 8-bit HSV: a few levels of quantisation error, never a different colour.
    assert difference.mean() < 2.0 and np.percentile(difference, 99) <= 12.0
    assert np.abs(out - np.asarray(image, dtype=np.float64)).mean() > 20  # and the shift is really there


def test_same_parameters_same_pixels_and_unknown_name():
    image = _image(seed=2)
    params = {"brightness": 0.7, "hue": -0.12, "order": ["hue", "brightness"]}
    first = apply_corruption(image, "color_jitter", params)
    second = apply_corruption(image, "color_jitter", dict(params))
    assert first.tobytes() == second.tobytes()
    with pytest.raises(ValueError, match="unknown corruption 'blur'"):
        apply_corruption(image, "blur", {})


def test_sample_corruption_ranges_and_weights():
    rng = random.Random(0)
    names = []
    for _ in range(2000):
        name, params = sample_corruption(rng, {"low_resolution": 0.5, "color_jitter": 0.5}, 20, 0.5, 0.3)
        names.append(name)
        if name == "color_jitter":
            assert 0.5 <= params["brightness"] <= 1.5 and -0.3 <= params["hue"] <= 0.3
            assert sorted(params["order"]) == ["brightness", "hue"]
        else:
            assert params == {"shorter_side": 20}
    assert 0.45 < names.count("low_resolution") / len(names) < 0.55
    only_jitter = {sample_corruption(rng, {"low_resolution": 0, "color_jitter": 1})[0] for _ in range(50)}
    assert only_jitter == {"color_jitter"}


def test_records_of_every_kind_of_pair_share_one_schema(tmp_path):
    """The corruption parameters as records keep them: an object with the same keys and types for every pair,
    so that the JSON reader, which takes the first block's types for all, loads any mix of parts."""
    from datasets import load_dataset

    from stic_plugin.method.corruption import corruption_record

    rng = random.Random(0)
    jitter = sample_corruption(rng, {"color_jitter": 1.0})[1]
    low = sample_corruption(rng, {"low_resolution": 1.0})[1]
    assert corruption_record(low) == {"shorter_side": 20, "brightness": 1.0, "hue": 0.0, "order": ""}
    assert corruption_record(jitter)["order"] in ("brightness,hue", "hue,brightness")
    kinds = [corruption_record({}), corruption_record(low), corruption_record(jitter)]
    # the worst order: a part of hallucination pairs only (all neutral) first, then the corrupted ones
    for index, params in enumerate(kinds):
        (tmp_path / f"part-{index}.jsonl").write_text(json.dumps({"stic": {"corruption_params": params}}) + "\n")
    loaded = load_dataset(
        "json",
        data_files=sorted(str(p) for p in tmp_path.glob("*.jsonl")),
        split="train",
        cache_dir=str(tmp_path / "c"),
    )
    assert [row["stic"]["corruption_params"] for row in loaded] == kinds
