"""The transformers engines: the stream of generations, Qwen2-VL's image positions, the prefix that requests
on one image share, and the tokens never written (generators: tests/generation/conftest.py)."""

import math

import pytest
import torch
from PIL import Image

from helpers import mixed_requests


def test_stream_yields_each_request_once_with_its_tag(generators):
    continuous = generators["tiny-qwen2vl"]["continuous"]
    requests = mixed_requests(7)
    for index, request in enumerate(requests):
        request.tag = ("image", index)
    seen = []
    for request, _ in continuous.generate_stream(iter(requests), 30, temperature=0, slots=2):
        # the caller's loop body runs with its own autograd state, not the engine's
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        seen.append(request.tag)
    assert sorted(seen) == [("image", i) for i in range(7)]
    assert seen != sorted(seen)  # short rows finish first: results come in completion order


def test_qwen2vl_image_tokens_get_two_dimensional_positions(generators):
    from stic_plugin.generation.base import Request, user_turn

    continuous = generators["tiny-qwen2vl"]["continuous"]
    request = Request.single(user_turn("Describe."), Image.new("RGB", (448, 448), (10, 200, 30)))
    assert continuous.encode(request).count(continuous.tokenizer.convert_tokens_to_ids("<|image_pad|>")) > 1
    continuous.generate([request], 3, temperature=0)
    # A grid of image tokens spans fewer positions than tokens: the text after it resumes lower.
    assert int(continuous.model.model.rope_deltas.reshape(-1)[0]) < 0


def test_shared_prefix_length():
    from stic_plugin.generation.transformers_engine import shared_prefix_length

    image = [9]
    assert shared_prefix_length([[1, 9, 9, 2, 3, 4], [1, 9, 9, 2, 5]], image) == 4
    assert shared_prefix_length([[1, 9, 9, 2], [1, 9, 9, 2]], image) == 3  # one token left to run on its own
    assert shared_prefix_length([[1, 9, 2], [7, 9, 2]], image) == 0  # they differ before the image
    assert shared_prefix_length([[1, 9, 9, 2], [1, 9, 8, 2]], image) == 0  # an image token after the split
    assert shared_prefix_length([[1, 2, 3], [1, 2, 4]], image) == 0  # no image: nothing worth sharing


def test_the_image_token_and_ids_past_the_tokenizer_are_never_written(generators):
    continuous = generators["tiny-llava"]["continuous"]
    bias = continuous.banned_bias
    image_id = continuous.tokenizer.convert_tokens_to_ids("<image>")
    assert bias[image_id] == -math.inf
    assert bool((bias[len(continuous.tokenizer) :] == -math.inf).all())
    assert int((bias == -math.inf).sum()) == 1 + bias.shape[0] - len(continuous.tokenizer)


@pytest.mark.parametrize(
    "model,template,plugin",
    [
        ("tiny-llava", "qwen2_vl", "Qwen2VLPlugin"),  # before: 'CLIPImageProcessor' object has no attribute ...
        ("tiny-qwen2vl", "llava", "LlavaPlugin"),
        ("tiny-llava-next", "llava", "LlavaPlugin"),
        ("tiny-llava", "llava_next_mistral", "LlavaNextPlugin"),
        # before: these ran, on the other family's image plugin
        ("tiny-qwen3_vl", "qwen2_vl", "Qwen2VLPlugin"),
        ("tiny-gemma3", "paligemma", "PaliGemmaPlugin"),
    ],
)
def test_a_template_that_does_not_fit_the_model_is_a_message(tiny, families, model, template, plugin):
    from stic_plugin.generation.base import GeneratorSettings
    from stic_plugin.generation.transformers_engine import TransformersModel

    with pytest.raises(ValueError) as caught:
        TransformersModel.load(GeneratorSettings({**tiny, **families}[model], template, infer_dtype="float32"))
    message = str(caught.value)
    assert f"template `{template}` does not fit" in message and plugin in message
    processor = {"tiny-llava": "CLIPImageProcessor", "tiny-qwen2vl": "Qwen2VLImageProcessor"}.get(model)
    assert processor is None or processor in message
    assert "llava_next_mistral for llava-v1.6-mistral-7b-hf" in message


def test_a_weight_file_cut_short_is_a_message_naming_it(tiny, tmp_path):
    """Before: safetensors' SafetensorError ("incomplete metadata, file not fully covered"), with a traceback."""
    import shutil

    from stic_plugin.generation.base import GeneratorSettings
    from stic_plugin.generation.transformers_engine import TransformersModel

    model = shutil.copytree(tiny["tiny-llava"], tmp_path / "model")
    weights = model / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    with pytest.raises(OSError) as caught:
        TransformersModel.load(GeneratorSettings(str(model), "llava", infer_dtype="float32"))
    assert f"cannot read the weights {weights} (" in str(caught.value) and "Fetch or copy it again" in str(caught.value)
