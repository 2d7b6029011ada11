"""``executor: ray``: the rows handed to Ray Data, and ``stic-cli pref engine=vllm executor=ray`` on a Ray
instance of this machine with vLLM's CPU build (marked slow)."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from stic_plugin.generation import ray_executor

from helpers import VLLM_ENV, killed_after_records, needs_ray, pref_command, run_vllm, texts_by_image


def test_a_row_brings_back_the_exact_pixels_and_the_sampling_keys():
    picture = Image.effect_noise((40, 30), 60).convert("RGB")
    png = ray_executor.png_bytes(picture)

    def row(images):  # as Arrow gives a row back: lists as arrays, the bias as [token, bias] pairs
        return {
            "png_images": images,
            "sampling_keys": {"max_tokens": 8, "stop_token_ids": np.array([2]), "seed": None},
            "logit_bias": np.array([[32000, -100.0], [5, -100.0]]),
        }

    ready = ray_executor.images_from_png(row([png, png]))
    images = ready["multimodal_data"]["image"]
    assert len(images) == 2 and all(list(image.getdata()) == list(picture.getdata()) for image in images)
    assert ready["sampling_params"] == {
        "max_tokens": 8,
        "stop_token_ids": [2],
        "seed": None,
        "logit_bias": {32000: -100.0, 5: -100.0},
    }
    one = ray_executor.images_from_png(row([png]))
    assert isinstance(one["multimodal_data"]["image"], Image.Image)  # one image, as vLLM is given it locally
    text_only = ray_executor.images_from_png(row([]))
    assert "multimodal_data" not in text_only


def test_without_ray_executor_ray_stops_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'ray\[data\]==2.58.1'"):
        ray_executor.require_ray()


def test_under_torchrun_executor_ray_refuses_to_start(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="without torchrun"):
        ray_executor.RayVllmGenerator(None)


@needs_ray
@pytest.mark.slow
def test_pref_on_ray_writes_what_vllm_writes_with_a_lora_through_a_kill_and_resume(vllm_models, tmp_path):
    from helpers import random_lora_adapter

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    adapter = random_lora_adapter(model, tmp_path / "adapter", language_model_only=True)
    common = dict(adapter_name_or_path=adapter, max_samples=6)
    local = tmp_path / "local"
    run_vllm(pref_command(model, "llava", images, local, batch_size=4, **common), tmp_path)
    expected = texts_by_image(local)
    assert len(expected) == 6

    # On Ray: one image (two requests) per Ray Data batch, killed once a pair is written, resumed with
    # three images per batch and two engines side by side.
    on_ray = tmp_path / "ray"
    part = on_ray / "stic_pref" / "part-00000-of-00001.jsonl"
    first = pref_command(model, "llava", images, on_ray, batch_size=1, executor="ray", **common)
    assert killed_after_records(first, tmp_path, part, 1, **VLLM_ENV) == 1
    resumed = pref_command(model, "llava", images, on_ray, batch_size=3, executor="ray", concurrency=2, **common)
    result = run_vllm(resumed, tmp_path)
    assert "already done" in result.stderr
    keys = [json.loads(line)["stic"]["image"] for line in part.read_text().splitlines()]
    assert sorted(keys) == sorted(expected)  # every image exactly once
    assert texts_by_image(on_ray) == expected  # the adapter's texts, as vLLM in this process writes them
    # Ray Data gives no finish reason: a text that ran out of tokens is told from one that stopped as vLLM tells it.
    stats = [json.loads((folder / "stic_pref.stats.json").read_text()) for folder in (local, on_ray)]
    assert [s["chosen_truncated"] for s in stats] == [stats[0]["chosen_truncated"]] * 2
    assert stats[1]["mean_tokens"] == stats[0]["mean_tokens"]


@needs_ray
@pytest.mark.slow
def test_dar_on_ray_describes_then_answers_as_vllm_does(vllm_models, tmp_path):
    """dar's two streams (the descriptions, then the answers that read them) on Ray, against vLLM in one process."""
    from helpers import key_values, read_records

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    questions = [
        {
            "id": f"q{i}",
            "image": f"image_{i:03d}.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a"}],
        }
        for i in range(4)
    ]
    source = tmp_path / "questions.json"
    source.write_text(json.dumps(questions))
    common = dict(model_name_or_path=model, template="llava", llava_file=source, image_folder=images, dar=True)
    common.update(engine="vllm", infer_dtype="float32", temperature=0, max_new_tokens=12, description_max_new_tokens=16)
    predictions = {}
    for executor in ("local", "ray"):
        folder = tmp_path / executor
        run_vllm(["stic-cli", "dar", *key_values(**common, dataset_dir=folder, executor=executor)], tmp_path)
        records = read_records(folder / "dar")
        predictions[executor] = {r["id"]: (r["description"], r["prediction"]) for r in records}
    assert len(predictions["ray"]) == 4 and all(description for description, _ in predictions["ray"].values())
    assert predictions["ray"] == predictions["local"]
