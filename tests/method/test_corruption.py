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


def _scene(width: int = 640, height: int = 480):
    """A photo-like test image: smooth gradients with soft-edged discs."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 200 + 30, y / height * 180 + 40, (x + y) / (width + height) * 150 + 50], -1)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        left, top = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        w, h = (int(v) for v in rng.integers(20, 200, 2))
        draw.ellipse([left, top, left + w, top + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image.filter(ImageFilter.GaussianBlur(1))


@pytest.mark.parametrize("model", ["llava-1.5-7b", "llava-v1.6-mistral-7b"])
def test_the_low_resolution_negative_reaches_the_processor_enlarged_to_image_min_pixels(model):
    """Resize(20) makes 26x20 of a 640x480 photo; LLaMA-Factory's plugin enlarges it to 36x28 (image_min_pixels,
    1,024 by default) before the processor, where the authors handed 26x20 to the processor. The same 520 pixels
    either way: the processor's pixel values differ by under one grey level on average, against about six between
    the negative and the clean photo (the numbers in docs/paper-code-project.md)."""
    from llamafactory.data.mm_plugin import get_mm_plugin
    from transformers import CLIPImageProcessor, LlavaNextImageProcessor

    from stic_plugin.assets import model_configs_dir

    settings = json.loads((model_configs_dir() / model / "preprocessor_config.json").read_text())
    kind = settings.pop("image_processor_type")
    for key in ("patch_size", "num_additional_image_tokens", "vision_feature_select_strategy"):
        settings.pop(key)
    processor = {"CLIPImageProcessor": CLIPImageProcessor, "LlavaNextImageProcessor": LlavaNextImageProcessor}[kind]
    processor = processor(**settings)
    clean = _scene()
    negative = apply_corruption(clean, "low_resolution", {"shorter_side": 20})
    plugin = get_mm_plugin("llava_next" if kind == "LlavaNextImageProcessor" else "llava", image_token="<image>")
    (enlarged,) = plugin._regularize_images([negative], image_max_pixels=768 * 768, image_min_pixels=32 * 32)["images"]
    assert (negative.size, enlarged.size) == ((26, 20), (36, 28))

    def overview(image):  # LLaVA-1.6: the first view, the whole image at 336x336 (its tiles depend on the size)
        values = np.asarray(processor(image, return_tensors="np")["pixel_values"], dtype=np.float64)
        return values[:, 0] if values.ndim == 5 else values

    grey_levels = np.mean(processor.image_std) * 255  # normalised pixel values back to 8-bit steps
    authors, project = overview(negative), overview(enlarged)
    apart = np.abs(authors - project).mean() * grey_levels
    from_clean = np.abs(overview(clean) - authors).mean() * grey_levels
    assert apart < 1.0 and from_clean > 5.0, (apart, from_clean)
