"""The transformers engines on the image model families beyond LLaVA and Qwen2-VL (tiny models: the ``families``
fixture): per-token inputs as tensors (Gemma 3, PaliGemma), the fallback from continuous batching for caches it
does not hold (Mllama, LFM2-VL), the image token that really fills the span (InternVL, Llama 4), every stop id
held back before min_new_tokens, and thinking templates (Qwen3-VL, GLM-4.1V) whose reasoning never reaches a text."""

import logging
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from helpers import chain_model, sharpen_attention


def load(path: str, template: str):
    from stic_plugin.generation.base import GeneratorSettings
    from stic_plugin.generation.transformers_engine import TransformersModel

    loaded = TransformersModel.load(GeneratorSettings(path, template, infer_dtype="float32"))
    if hasattr(loaded.model, "model"):  # Llama 4 keeps its text model elsewhere; its tests need no sharp attention
        sharpen_attention(loaded.model)
    return loaded


def requests_on_two_images():
    """Two requests on each of two images (as pref sends them: the same image objects), prompts of varied length."""
    from stic_plugin.generation.base import Request, user_turn

    images = [Image.new("RGB", (40, 30), (200, 30, 60)), Image.new("RGB", (52, 61), (20, 90, 160))]
    prompts = ["Describe the picture.", "Say what is wrong in this picture, in detail and at length."]
    return [
        Request.single(user_turn(prompt), image, key=f"{index}-{turn}")
        for index, image in enumerate(images)
        for turn, prompt in enumerate(prompts)
    ]


@pytest.mark.parametrize("name,template", [("tiny-gemma3", "gemma3"), ("tiny-paligemma", "paligemma")])
def test_token_types_are_one_left_padded_tensor_for_the_batch(families, name, template):
    """Before: the plugins' Python list went to the model as it was (``'list' object has no attribute 'shape'``)."""
    loaded = load(families[name], template)
    requests = requests_on_two_images()[:2]
    ids = [loaded.encode(request) for request in requests]
    width = max(len(row) for row in ids)
    batch = torch.tensor([[0] * (width - len(row)) + row for row in ids])
    types = loaded.mm_inputs(requests, ids, batch)["token_type_ids"]
    assert isinstance(types, torch.Tensor) and types.shape == batch.shape
    plugin = loaded.template.mm_plugin.get_mm_inputs([], [], [], [1, 1], [0, 0], [0, 0], ids, loaded.processor)
    for row, (tokens, expected) in enumerate(zip(ids, plugin["token_type_ids"])):
        assert types[row, width - len(tokens) :].tolist() == expected  # the plugin's own types, at the right end
        assert types[row, : width - len(tokens)].tolist() == [0] * (width - len(tokens))
    one = loaded.token_inputs(requests[1], ids[1])["token_type_ids"]
    assert one.tolist() == [plugin["token_type_ids"][1]]  # one prompt's, without processing its image


@pytest.mark.parametrize(
    "name,template",
    [
        ("tiny-paligemma", "paligemma"),
        ("tiny-gemma3-full", "gemma3"),
        ("tiny-qwen2_5_vl", "qwen2_vl"),
        ("tiny-qwen3_vl", "qwen3_vl"),
        ("tiny-internvl", "intern_vl"),
        ("tiny-glm4v", "glm4v"),
        ("tiny-mistral3", "mistral_small"),
        ("tiny-glm4v_moe", "glm4_5v"),
        ("tiny-llava_next_video", "llava_next_video"),
        ("tiny-video_llava", "video_llava"),
    ],
)
def test_both_engines_write_the_same_greedy_texts_on_each_family_the_continuous_engine_drives(
    families, tmp_path, name, template
):
    """Requests sharing images, as pref sends them. Gemma 3's real models have sliding-window layers (the continuous
    engine falls back, below); this one has none, so that the continuous engine's per-prompt token types are
    checked against transformers' generate too."""
    from stic_plugin.generation.transformers_engine import ContinuousGenerator, PlainGenerator

    if name == "tiny-gemma3-full":
        from stic_plugin.tools.families import build_tiny_gemma3

        path = str(build_tiny_gemma3(tmp_path / name, sliding_window=None))
    else:
        path = families[name]
    loaded = load(path, template)
    # Texts worth comparing: with tied random embeddings the model repeats its last token, so it gets an output
    # layer of its own.
    torch.manual_seed(0)
    head = loaded.model.get_output_embeddings()
    head.weight = torch.nn.Parameter(torch.randn_like(head.weight))
    requests = requests_on_two_images()
    plain = [g.text for g in PlainGenerator(loaded).generate(requests, 8, temperature=0)]
    continuous = ContinuousGenerator(loaded)
    assert [g.text for g in continuous.generate(requests, 8, temperature=0)] == plain
    assert continuous.last_run_stats["prefix_runs"] == 2  # the image's prefix ran once per image
    assert len(set(plain)) > 1


def fallback(families, name, template, caplog):
    """The default engine on a model (as pref creates it), and the warnings it logged."""
    from stic_plugin.generation.base import GeneratorSettings, create_generator

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stic_plugin"):
        generator = create_generator(GeneratorSettings(families[name], template, infer_dtype="float32"))
    return generator, [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("stic")
    ]


@pytest.mark.parametrize(
    "name,template,reason",
    [
        ("tiny-mllama", "mllama", "cross-attention layers"),  # before: index_copy_(): Number of indices (26) ...
        ("tiny-lfm2_vl", "lfm2_vl", "layers without self-attention (Lfm2DecoderLayer"),  # before: no attribute 'keys'
        ("tiny-gemma3", "gemma3", "sliding-window attention"),
        ("tiny-qwen3_5", "qwen3_5", "layers without self-attention (Qwen3_5DecoderLayer"),  # linear attention
    ],
)
def test_the_default_engine_falls_back_with_one_warning_before_the_first_image(
    families, caplog, name, template, reason
):
    from stic_plugin.generation.transformers_engine import PlainGenerator

    generator, warnings = fallback(families, name, template, caplog)
    assert isinstance(generator, PlainGenerator)
    assert len(warnings) == 1 and "continuous batching is off for this model" in warnings[0] and reason in warnings[0]
    caplog.clear()
    texts = generator.generate(requests_on_two_images(), 4, temperature=0)
    assert all(g.tokens > 0 for g in texts)
    assert not [r for r in caplog.records if "continuous batching" in r.getMessage()]  # said once, not per image


def test_models_the_continuous_engine_drives_are_not_refused(families):
    from stic_plugin.generation.continuous import unsupported_reason

    for name, template in [("tiny-qwen3_vl", "qwen3_vl"), ("tiny-internvl", "intern_vl"), ("tiny-glm4v", "glm4v")]:
        assert unsupported_reason(load(families[name], template).model) is None, name


@pytest.mark.parametrize(
    "name,template,filler",
    [("tiny-internvl", "intern_vl", "<IMG_CONTEXT>"), ("tiny-llama4", "llama4", "<|patch|>")],
)
def test_the_token_that_fills_the_image_span_is_never_written(families, name, template, filler):
    """Before: only the template's image token was banned (InternVL's ``<image>`` is no token at all), and the
    model could write the token its image features replace."""
    loaded = load(families[name], template)
    filler_id = loaded.tokenizer.convert_tokens_to_ids(filler)
    request = requests_on_two_images()[0]
    assert filler_id in loaded.encode(request)  # it is what fills the span
    assert loaded.banned_bias[filler_id] == -math.inf
    assert filler_id in loaded.image_token_ids


def test_image_token_ids_are_the_template_s_and_the_model_s_that_exist():
    from stic_plugin.generation.transformers_engine import image_token_ids

    vocabulary = {"<image>": 5, "<unk>": 0}
    tokenizer = SimpleNamespace(
        convert_tokens_to_ids=lambda token: vocabulary.get(token, 0), unk_token_id=0, unk_token="<unk>"
    )

    def template(token):
        return SimpleNamespace(mm_plugin=SimpleNamespace(image_token=token))

    assert image_token_ids(tokenizer, template("<image>"), SimpleNamespace(image_token_id=7)) == [5, 7]
    assert image_token_ids(tokenizer, template("<image>"), SimpleNamespace(image_token_index=5)) == [5]
    # a template token missing from the vocabulary is not the unknown token's id
    assert image_token_ids(tokenizer, template("<img>"), SimpleNamespace(image_token_id=9)) == [9]
    none = SimpleNamespace(convert_tokens_to_ids=lambda token: None, unk_token_id=None, unk_token=None)
    assert image_token_ids(none, template("<image>"), SimpleNamespace()) == []


def test_before_min_new_tokens_no_stop_id_may_be_written():
    """Before: only the first of several stop ids was held back (Llama 3's <|eot_id|> and <|eom_id|>, GLM-4.1V's
    four), so a row could end at once on another."""
    from stic_plugin.generation.transformers_engine import RowLimits

    limits = RowLimits(torch.zeros(8), 3, minimums=[2, 0], maximums=[10, 4], stop_ids=[5, 6])
    scores = limits(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 8))  # one token written
    assert scores[0, 5] == -math.inf and scores[0, 6] == -math.inf
    assert scores[1, 5] == 0 and scores[1, 6] == 0
    scores = limits(torch.zeros(2, 7, dtype=torch.long), torch.zeros(2, 8))  # row 1 at its maximum: stop
    assert scores[1].argmax() == 5 and int((scores[1] > -math.inf).sum()) == 1


def test_min_new_tokens_holds_on_a_model_with_several_stop_ids(families):
    """Llama 4 stops at <|eot|> or <|eom|>: a model made to write <|eom|> first writes min_new_tokens tokens."""
    from stic_plugin.generation.transformers_engine import PlainGenerator

    loaded = load(families["tiny-llama4"], "llama4")
    assert len(loaded.stop_token_ids) > 1
    loaded.banned_bias[loaded.stop_token_ids[1]] = 1e4  # the second stop id, whenever it may be written
    request = requests_on_two_images()[0]
    request.min_new_tokens = 3
    assert PlainGenerator(loaded).generate([request], 8, temperature=0)[0].tokens == 3


# ---- thinking templates ----


def test_a_thinking_template_s_prompt_ends_with_its_empty_thought_block(families):
    """As LLaMA-Factory trains them (enable_thinking, the default, puts an empty block before every answer
    without one), so that the model answers at once."""
    thinking, plain = load(families["tiny-qwen3_vl"], "qwen3_vl"), load(families["tiny-qwen3_vl"], "qwen3_vl_nothink")
    request = requests_on_two_images()[0]
    block = thinking.template.get_thought_word_ids(thinking.tokenizer)
    assert thinking.tokenizer.decode(block) == "<think>\n\n</think>\n\n"
    assert thinking.encode(request)[-len(block) :] == block
    assert plain.encode(request) == thinking.encode(request)[: -len(block)]  # otherwise the same prompt
    glm = load(families["tiny-glm4v"], "glm4v")
    glm_block = glm.template.get_thought_word_ids(glm.tokenizer)
    assert glm.encode(request)[-len(glm_block) :] == glm_block


def test_without_thought_keeps_the_answer_after_the_last_closed_block():
    from stic_plugin.generation.transformers_engine import without_thought

    opening, closing = [1], [2, 3]
    assert without_thought([1, 7, 2, 3, 8, 9], opening, closing) == [8, 9]
    assert without_thought([7, 2, 3, 8], opening, closing) == [8]  # the opening was in the prompt
    assert without_thought([8, 1, 7, 7], opening, closing) == [8]  # a thought that never closed: no answer in it
    assert without_thought([8, 2, 9], opening, closing) == [8, 2, 9]  # half a closing word is text
    assert without_thought([8, 9], opening, []) == [8, 9]


@pytest.mark.parametrize("engine", ["plain", "continuous"])
def test_a_model_that_thinks_gives_its_answer_alone(families, tmp_path, engine):
    """A Qwen3-VL made to write ``<think>dog</think>A.`` after its prompt: the text is the answer. Before: the
    reasoning went into the description (and so into the preference pairs and the infused descriptions)."""
    from stic_plugin.generation.base import GeneratorSettings
    from stic_plugin.generation.transformers_engine import ContinuousGenerator, PlainGenerator, TransformersModel

    chain = {"Ċ": "<think>", "<think>": "dog", "dog": "</think>", "</think>": "A", "A": ".", ".": "<|im_end|>"}
    path = chain_model(families["tiny-qwen3_vl"], tmp_path / "thinker", chain, "Ċ")
    loaded = TransformersModel.load(GeneratorSettings(str(path), "qwen3_vl", infer_dtype="float32"))
    generator = PlainGenerator(loaded) if engine == "plain" else ContinuousGenerator(loaded)
    generation = generator.generate(requests_on_two_images()[:1], 12, temperature=0)[0]
    assert generation.tokens == 5  # <think> dog </think> A . : the model did think
    assert generation.text == "A."
