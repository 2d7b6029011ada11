"""Every shipped recipe parses with the real parsers, explains itself, and never truncates an image."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from stic_plugin.assets import model_configs_dir
from stic_plugin.commands.config import DarConfig, EvalConfig, InfuseConfig, PrefConfig, load_config

REPO = Path(__file__).resolve().parents[1]
MODEL_DIRS = sorted(p for p in (REPO / "recipes").iterdir() if p.is_dir() and p.name != "deepspeed")
MAIN_MODEL = "llava-v1.6-mistral-7b"  # the paper's main model: its recipes also sit at the top of recipes/
MAIN_RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
RECIPES = sorted(p for d in MODEL_DIRS for p in d.glob("*.yaml")) + MAIN_RECIPES
GENERATORS = {"pref.yaml": PrefConfig, "infuse.yaml": InfuseConfig, "dar.yaml": DarConfig, "eval.yaml": EvalConfig}
RECIPE_NAMES = ["dar.yaml", "eval.yaml", "infuse.yaml", "pref.yaml", "stage1.yaml", "stage2.yaml"]  # each model's
ANSWER_BUDGET = 1024  # stage 2: question and answer tokens the recipes leave room for


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_five_model_families_have_full_sets():
    assert [d.name for d in MODEL_DIRS] == [
        "llava-1.5-7b",
        "llava-v1.6-mistral-7b",
        "qwen2-vl-7b",
        "qwen2.5-vl-7b",
        "qwen3-vl-8b",
    ]
    for folder in MODEL_DIRS:
        assert sorted(p.name for p in folder.glob("*.yaml")) == RECIPE_NAMES


def test_the_main_models_recipes_sit_at_the_top_with_the_same_values():
    assert [p.name for p in MAIN_RECIPES] == RECIPE_NAMES
    for recipe in MAIN_RECIPES:
        assert _load(recipe) == _load(REPO / "recipes" / MAIN_MODEL / recipe.name), recipe.name


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_the_cards_command_runs_on_a_tiny_model(name, tiny, tmp_path, monkeypatch):
    """``llamafactory-cli train recipes/stage1.yaml`` with key=value overrides for a tiny model: LLaMA-Factory's
    own reading of the command line and its full argument checks accept every key of the recipe."""
    from llamafactory.hparams import get_train_args
    from llamafactory.hparams.parser import read_args

    overrides = [
        f"model_name_or_path={tiny['tiny-llava-next']}",
        f"output_dir={tmp_path / 'out'}",
        f"dataset_dir={tmp_path}",
        "bf16=false",  # needs a GPU
        "use_cpu=true",
    ]
    if name == "stage2":
        overrides.append("adapter_name_or_path=null")  # no stage-1 adapter here
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["llamafactory-cli", f"recipes/{name}.yaml", *overrides])
    values = read_args()
    recipe = _load(REPO / "recipes" / f"{name}.yaml")
    overridden = {override.split("=", 1)[0] for override in overrides}
    assert {key: value for key, value in values.items() if key not in overridden} == {
        key: value for key, value in recipe.items() if key not in overridden
    }
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(values)
    assert finetuning_args.stage == {"stage1": "stic_dpo", "stage2": "sft"}[name]
    assert data_args.template == "llava_next_mistral" and training_args.learning_rate == recipe["learning_rate"]
    if name == "stage1":
        assert finetuning_args.stic_alpha == 1 / 1024


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_header_says_how_to_run_it(recipe):
    header = []
    for line in recipe.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    relative = recipe.relative_to(REPO).as_posix()
    commands = [
        line for line in header if relative in line and ("stic-cli" in line or "llamafactory-cli train" in line)
    ]
    assert len(commands) >= 2, f"{relative}: the command, then one override example"
    assert any("=" in line.split(relative, 1)[1] for line in commands), f"{relative}: no override example"
    if recipe.name.startswith("stage"):
        sections = [line for line in recipe.read_text().splitlines() if line.startswith("### ")]
        assert [s.split()[1] for s in sections] == ["model", "method", "dataset", "output", "train"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses(recipe):
    if recipe.name in GENERATORS:
        config = load_config(GENERATORS[recipe.name], str(recipe))
        assert config.template == _load(recipe.parent / "stage1.yaml")["template"]
        return
    from llamafactory.hparams.parser import _parse_train_args

    values = _load(recipe)
    values["bf16"] = False  # bf16 needs a GPU to be accepted; everything else is parsed as written
    model_args, data_args, training_args, finetuning_args, _ = _parse_train_args(values)
    assert finetuning_args.stage == {"stage1.yaml": "stic_dpo", "stage2.yaml": "sft"}[recipe.name]
    assert (finetuning_args.lora_rank, finetuning_args.lora_alpha) == (128, 256)
    assert training_args.lr_scheduler_type.value == "cosine" and training_args.warmup_ratio == 0.03
    if finetuning_args.stage == "stic_dpo":
        assert finetuning_args.stic_alpha == 1 / 1024 and finetuning_args.pref_beta == 0.1
        assert training_args.learning_rate == 1e-7
    else:
        assert training_args.learning_rate == 2e-5


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=lambda p: p.name)
def test_recipes_of_a_model_fit_together(folder):
    pref, stage1, infuse, stage2, dar = (
        _load(folder / f"{n}.yaml") for n in ("pref", "stage1", "infuse", "stage2", "dar")
    )
    assert len({r["model_name_or_path"] for r in (pref, stage1, infuse, stage2, dar)}) == 1
    assert len({r["image_max_pixels"] for r in (pref, stage1, infuse, stage2, dar)}) == 1
    assert stage1["dataset"] == pref["dataset_name"] and stage2["dataset"] == infuse["dataset_name"]
    assert infuse["adapter_name_or_path"] == stage1["output_dir"] == stage2["adapter_name_or_path"]
    assert dar["adapter_name_or_path"] == stage2["output_dir"]
    assert dar["max_new_tokens"] == dar["description_max_new_tokens"] == 1024  # the authors' evaluation
    evaluation = _load(folder / "eval.yaml")
    assert evaluation["model_name_or_path"] == dar["model_name_or_path"]
    assert (evaluation["template"], evaluation["image_max_pixels"]) == (dar["template"], dar["image_max_pixels"])
    assert evaluation["adapter_name_or_path"] == stage2["output_dir"]
    assert evaluation["description_prompt"] == dar["description_prompt"]
    assert evaluation["description_max_new_tokens"] == dar["description_max_new_tokens"]


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=lambda p: p.name)
def test_the_eval_recipes_header_runs_base_stage1_and_stage2_each_with_and_without_dar(folder):
    """Six command lines, parsed as stic-cli parses them: the adapters are none, stage 1's, stage 2's."""
    recipe = folder / "eval.yaml"
    relative = recipe.relative_to(REPO).as_posix()
    stage1, stage2 = _load(folder / "stage1.yaml"), _load(folder / "stage2.yaml")
    runs = set()
    for line in recipe.read_text().splitlines():
        if line.startswith("#") and f"stic-cli eval {relative}" in line:
            words = line.split("#")[1].split()[3:]
            config = load_config(EvalConfig, str(recipe), words)
            runs.add((config.adapter_name_or_path, config.dar))
    adapters = {None, stage1["output_dir"], stage2["output_dir"]}
    assert runs == {(adapter, dar) for adapter in adapters for dar in (False, True)}


def _processor_and_plugin(model: str):
    """The real image processor of the model (shipped config), a stand-in tokenizer, LLaMA-Factory's mm plugin."""
    from llamafactory.data.mm_plugin import get_mm_plugin
    from transformers import (
        CLIPImageProcessor,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        LlavaProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from stic_plugin.tools.fixtures import llava_tokenizer, qwen_tokenizer

    folder = model_configs_dir() / model
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    kind = settings.pop("image_processor_type")
    for key in ("patch_size", "num_additional_image_tokens", "vision_feature_select_strategy"):
        if kind != "Qwen2VLImageProcessor":
            settings.pop(key)
    if kind == "Qwen2VLImageProcessor":
        # Qwen2-VL and Qwen2.5-VL share a processor and LLaMA-Factory's plugin; Qwen3-VL has its own of both.
        qwen3 = model.startswith("qwen3")
        processor_class = Qwen3VLProcessor if qwen3 else Qwen2VLProcessor
        processor = processor_class(
            image_processor=Qwen2VLImageProcessor(**settings),
            tokenizer=qwen_tokenizer(),
            video_processor=(Qwen3VLVideoProcessor if qwen3 else Qwen2VLVideoProcessor)(),
        )
        plugin = "qwen3_vl" if qwen3 else "qwen2_vl"
        return processor, get_mm_plugin(plugin, image_token="<|image_pad|>", video_token="<|video_pad|>")
    tokenizer = llava_tokenizer()
    common = dict(
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1
    )
    if kind == "LlavaNextImageProcessor":
        return LlavaNextProcessor(image_processor=LlavaNextImageProcessor(**settings), **common), get_mm_plugin(
            "llava_next", image_token="<image>"
        )
    return LlavaProcessor(image_processor=CLIPImageProcessor(**settings), **common), get_mm_plugin(
        "llava", image_token="<image>"
    )


def _most_image_tokens(model: str, image_max_pixels: int) -> int:
    processor, plugin = _processor_and_plugin(model)
    # What LLaMA-Factory's patch_processor sets from ModelArguments
    processor.image_max_pixels, processor.image_min_pixels = image_max_pixels, 32 * 32
    processor.video_max_pixels, processor.video_min_pixels = 256 * 256, 16 * 16
    processor.video_fps, processor.video_maxlen, processor.image_do_pan_and_scan = 2.0, 128, False
    processor.crop_to_patches, processor.use_audio_in_video, processor.audio_sampling_rate = False, False, 16000
    counts = []
    for size in [
        (1000, 1000),
        (2000, 1000),
        (1000, 2000),
        (4000, 1000),
        (1000, 4000),
        (1008, 336),
        (640, 480),
        (6000, 6000),
    ]:
        messages = plugin.process_messages(
            [{"role": "user", "content": "<image>"}], [Image.new("RGB", size)], [], [], processor
        )
        counts.append(messages[0]["content"].count(plugin.image_token))
    return max(counts)


def _text_tokens(text: str) -> int:
    """A generous count: the small test tokenizer splits ordinary English into more pieces than real ones do."""
    from stic_plugin.tools.fixtures import LLAVA_SPECIALS, train_tokenizer

    return len(train_tokenizer(LLAVA_SPECIALS).encode(text).ids)


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=lambda p: p.name)
def test_cutoff_len_never_truncates_an_image(folder):
    from llamafactory.data.template import TEMPLATES

    pref, stage1, infuse, stage2 = (_load(folder / f"{n}.yaml") for n in ("pref", "stage1", "infuse", "stage2"))
    image_tokens = _most_image_tokens(folder.name, stage1["image_max_pixels"])
    assert image_tokens > 500  # the real processors are in use, not the tiny test ones
    template = TEMPLATES[stage1["template"]]
    chat = (template.default_system or "") + "USER: ASSISTANT: <|im_start|>system<|im_end|><|im_start|>user<|im_end|>"
    prompts = (REPO / "data_templates" / "prompts" / "captioning.txt").read_text().splitlines()
    longest_prompt = max(_text_tokens(p) for p in prompts)
    stage1_need = image_tokens + _text_tokens(chat) + longest_prompt + pref["max_new_tokens"]
    assert stage1_need <= stage1["cutoff_len"], (folder.name, stage1_need)
    infusion = (REPO / "data_templates" / "infusion_format.txt").read_text()
    stage2_need = image_tokens + _text_tokens(chat + infusion) + infuse["max_new_tokens"] + ANSWER_BUDGET
    assert stage2_need <= stage2["cutoff_len"], (folder.name, stage2_need)


@pytest.mark.parametrize(
    "name", ["stic_pref", "stic_sft", "llava_mix", "stic_authors_pref", "stic_authors_descriptions"]
)
def test_example_records_load_with_their_dataset_entry(name, tmp_path):
    """data_templates/examples/: each record goes through LLaMA-Factory's converter for its entry."""
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    entries = json.loads((REPO / "data_templates" / "dataset_info.json").read_text())
    example = next((REPO / "data_templates" / "examples").glob(f"{name}.json*"))
    text = example.read_text()
    records = json.loads(text) if example.suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    attr = DatasetAttr("file", dataset_name=example.name)
    attr.join(entries[name])
    converter = get_dataset_converter(attr.formatting, attr, DataArguments(dataset_dir=str(tmp_path)))
    for record in records:
        aligned = converter(record)
        assert aligned["_prompt"] and aligned["_response"]
        assert len(aligned["_response"]) == (2 if attr.ranking else 1)
        placeholders = sum(m["content"].count("<image>") for m in aligned["_prompt"])
        assert placeholders == len(aligned["_images"] or [])


TINY_OF = {  # the tiny model of each recipe's family (stic_plugin.tools: fixtures, families), and its template
    "llava-1.5-7b": ("tiny-llava", "llava"),
    "llava-v1.6-mistral-7b": ("tiny-llava-next", "llava_next_mistral"),
    "qwen2-vl-7b": ("tiny-qwen2vl", "qwen2_vl"),
    "qwen2.5-vl-7b": ("tiny-qwen2_5_vl", "qwen2_vl"),
    "qwen3-vl-8b": ("tiny-qwen3_vl", "qwen3_vl_nothink"),
}


def _header_override(recipe: Path, marker: str) -> dict:
    """The key=value overrides of the header's command line that holds ``marker``."""
    (line,) = [line for line in recipe.read_text().splitlines() if line.startswith("#") and marker in line]
    pairs = line.split(recipe.relative_to(REPO).as_posix(), 1)[1].split()
    return {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=lambda p: p.name)
def test_the_trained_projector_variant_trains_the_projector(folder, tiny, families, tmp_path):
    """The stage-1 header's projector override, on the tiny model of the family, through LLaMA-Factory's loader:
    the recipe as written trains no projector weight, the override trains all of them (full rank)."""
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    override = _header_override(folder / "stage1.yaml", "freeze_multi_modal_projector=false")
    assert override["freeze_multi_modal_projector"] is False and override["additional_target"]
    model_name, template = TINY_OF[folder.name]
    recipe = _load(folder / "stage1.yaml")
    trainable = {}
    for name, extra in (("as written", {}), ("override", override)):
        values = {
            key: recipe[key]
            for key in ("finetuning_type", "lora_rank", "lora_alpha", "lora_target", "freeze_vision_tower")
        }
        values.update({"freeze_multi_modal_projector": recipe["freeze_multi_modal_projector"], **extra})
        values.update(
            model_name_or_path={**tiny, **families}[model_name],
            template=template,
            stage="sft",
            do_train=True,
            dataset="unused",
            output_dir=str(tmp_path / name),
            report_to="none",
            use_cpu=True,
        )
        model_args, _, _, finetuning_args, _ = get_train_args(values)
        model = load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)
        projector = override["additional_target"]
        trainable[name] = [n for n, p in model.named_parameters() if projector in n and p.requires_grad]
        total = [n for n, p in model.named_parameters() if projector in n and "modules_to_save" not in n]
    assert trainable["as written"] == []
    assert len(trainable["override"]) == len(total) > 0


def _expand2square(image, background):
    """LLaVA's ``expand2square`` (``image_aspect_ratio: pad``), written out: the image centred on a square."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def _noise(width: int, height: int, seed: int):
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_llava_image_processor_with_do_pad_is_llavas_pad_preprocessing():
    """With LLaVA-1.5-7B's real settings, transformers' LlavaImageProcessor(do_pad=True) gives exactly LLaVA's
    expand-to-square (mean-colour background) followed by the CLIP processor, where CLIP alone centre-crops."""
    import numpy as np
    from transformers import CLIPImageProcessor, LlavaImageProcessor

    settings = json.loads((model_configs_dir() / "llava-1.5-7b" / "preprocessor_config.json").read_text())
    for key in ("image_processor_type", "patch_size", "num_additional_image_tokens", "vision_feature_select_strategy"):
        settings.pop(key)
    clip, padded = CLIPImageProcessor(**settings), LlavaImageProcessor(**settings, do_pad=True)
    background = tuple(int(x * 255) for x in clip.image_mean)
    for index, size in enumerate([(500, 300), (301, 640), (336, 336)]):
        image = _noise(*size, seed=index)
        reference = clip(_expand2square(image, background), return_tensors="np")["pixel_values"]
        assert np.array_equal(padded(image, return_tensors="np")["pixel_values"], reference)
        if size[0] != size[1]:
            assert not np.array_equal(clip(image, return_tensors="np")["pixel_values"], reference)  # centre crop


def test_the_pad_option_reaches_llamafactorys_plugin(tiny, tmp_path):
    """The recipe option: a model folder whose preprocessor_config.json names LlavaImageProcessor with do_pad.
    LLaMA-Factory's own loading and multimodal plugin then pad (the tiny LLaVA stands in for LLaVA-1.5)."""
    import shutil

    import torch
    from llamafactory.data.mm_plugin import get_mm_plugin
    from llamafactory.hparams import get_infer_args
    from llamafactory.model import load_tokenizer
    from transformers import CLIPImageProcessor

    model = tmp_path / "tiny-llava-pad"
    shutil.copytree(tiny["tiny-llava"], model)
    # transformers 5 saves the image processor's settings inside processor_config.json (the hub's llava-hf
    # checkpoints have them in preprocessor_config.json): the same two keys either way
    config_path = model / "processor_config.json"
    config = json.loads(config_path.read_text())
    settings = config["image_processor"]
    config["image_processor"] = dict(settings, image_processor_type="LlavaImageProcessor", do_pad=True)
    config_path.write_text(json.dumps(config))
    model_args, _, _, _ = get_infer_args(dict(model_name_or_path=str(model), template="llava"))
    processor = load_tokenizer(model_args)["processor"]
    assert type(processor.image_processor).__name__.startswith("LlavaImageProcessor")
    plugin = get_mm_plugin("llava", image_token="<image>")
    image = _noise(60, 30, seed=7)
    inputs = plugin.get_mm_inputs([image], [], [], [1], [0], [0], [[0]], processor)

    clip_settings = {
        key: value for key, value in settings.items() if key not in ("image_processor_type", "processor_class")
    }
    clip = CLIPImageProcessor(**clip_settings)
    reference = clip(_expand2square(image, tuple(int(x * 255) for x in clip.image_mean)), return_tensors="pt")
    assert torch.equal(inputs["pixel_values"], reference["pixel_values"])
    assert not torch.equal(inputs["pixel_values"], clip(image, return_tensors="pt")["pixel_values"])  # no crop


def _single_view_values(recipe: Path, model: str, tmp_path: Path) -> dict:
    """The recipe with its header's single-view override, on ``model``, as LLaMA-Factory's train arguments."""
    override = _header_override(recipe, "template=llava_mistral")
    values = {key: value for key, value in _load(recipe).items() if key not in ("bf16", "deepspeed")}
    values.update(override, model_name_or_path=model, output_dir=str(tmp_path / "out"), use_cpu=True)
    values.update(adapter_name_or_path=None, preprocessing_num_workers=None, dataloader_num_workers=0)
    return values


def test_the_single_view_option_trains_llava_1_6_on_one_padded_view_and_its_adapter_fits_the_model(tiny, tmp_path):
    """The override in the LLaVA-1.6 stage-1 and stage-2 headers, on a copy of the tiny LLaVA-1.6 that
    stic-cli single-view made: LLaMA-Factory loads it with template llava_mistral (the template check passes),
    every image becomes one view padded as LLaVA's expand2square, of the same number of tokens whatever its shape,
    and an adapter trained on the copy changes LLaVA-1.6 itself exactly as it changes the copy."""
    import torch
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import get_infer_args, get_train_args
    from llamafactory.model import load_model, load_tokenizer
    from transformers import CLIPImageProcessor

    from stic_plugin.commands.config import SingleViewConfig
    from stic_plugin.commands.single_view import run_single_view
    from stic_plugin.model_check import check_training_model

    folder = REPO / "recipes" / "llava-v1.6-mistral-7b"
    copy = tmp_path / "single-view"
    assert run_single_view(SingleViewConfig(output_dir=str(copy), model_name_or_path=tiny["tiny-llava-next"])) == 0
    side, patch = 32, 8  # the tiny LLaVA-1.6's view and patch (stic_plugin.tools.fixtures)
    for stage in ("stage1", "stage2"):
        values = _single_view_values(folder / f"{stage}.yaml", str(copy), tmp_path / stage)
        model_args, data_args, _, finetuning_args, _ = get_train_args(values)
        check_training_model(model_args, data_args)
    tokenizer_module = load_tokenizer(model_args)
    processor = tokenizer_module["processor"]
    assert type(processor.image_processor).__name__.startswith("LlavaImageProcessor")
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    settings = json.loads((Path(tiny["tiny-llava-next"]) / "processor_config.json").read_text())["image_processor"]
    clip_keys = ("size", "crop_size", "resample", "image_mean", "image_std", "rescale_factor")
    clip = CLIPImageProcessor(**{key: settings[key] for key in clip_keys})
    background = tuple(int(x * 255) for x in clip.image_mean)
    for index, size in enumerate([(60, 30), (30, 60), (40, 40)]):
        image = _noise(*size, seed=index)
        messages = [{"role": "user", "content": "<image>Describe."}]
        expanded = template.mm_plugin.process_messages(messages, [image], [], [], processor)
        assert expanded[0]["content"].count("<image>") == (side // patch) ** 2
        inputs = template.mm_plugin.get_mm_inputs([image], [], [], [1], [0], [0], [[0]], processor)
        reference = clip(_expand2square(image, background), return_tensors="pt")["pixel_values"]
        assert torch.equal(inputs["pixel_values"], reference)

    # an adapter trained on the copy (LoRA on every linear layer of the language model, as the recipe)
    model = load_model(tokenizer_module["tokenizer"], model_args, finetuning_args, is_trainable=True)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "adapter")
    merged = {}
    for name, (path, template_name) in {
        "copy": (copy, "llava_mistral"),
        "LLaVA-1.6": (tiny["tiny-llava-next"], "llava_next_mistral"),
    }.items():
        for adapter in (None, str(tmp_path / "adapter")):
            args = dict(model_name_or_path=str(path), template=template_name, adapter_name_or_path=adapter)
            model_args, _, finetuning_args, _ = get_infer_args(dict(args, infer_dtype="float32"))
            loaded = load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args)
            merged[name, adapter is not None] = {
                key: value.clone() for key, value in loaded.state_dict().items() if "language_model" in key
            }
    assert type(loaded).__name__ == "LlavaNextForConditionalGeneration"
    changed = [
        key
        for key, value in merged["LLaVA-1.6", True].items()
        if not torch.equal(value, merged["LLaVA-1.6", False][key])
    ]
    assert len(changed) == 2 * 7  # the 7 linear layers of each of the 2 layers
    for key, value in merged["LLaVA-1.6", True].items():
        assert torch.equal(value, merged["copy", True][key]), key


def test_the_single_view_cutoff_len_never_truncates_an_image():
    """The override's cutoff_len leaves room for LLaVA-1.6's one padded view (576 tokens), the prompt and the
    responses, counted as test_cutoff_len_never_truncates_an_image counts them."""
    from llamafactory.data.mm_plugin import get_mm_plugin

    from stic_plugin.commands.single_view import single_view_processor

    processor, _ = _processor_and_plugin("llava-v1.6-mistral-7b")
    one_view = single_view_processor(processor)
    plugin = get_mm_plugin("llava", image_token="<image>")
    one_view.image_max_pixels, one_view.image_min_pixels = 589824, 32 * 32
    counts = [
        plugin.process_messages([{"role": "user", "content": "<image>"}], [Image.new("RGB", size)], [], [], one_view)[
            0
        ]["content"].count("<image>")
        for size in [(640, 480), (480, 640), (4000, 1000), (336, 336)]
    ]
    assert set(counts) == {576}
    folder = REPO / "recipes" / "llava-v1.6-mistral-7b"
    stage1 = _header_override(folder / "stage1.yaml", "template=llava_mistral")["cutoff_len"]
    stage2 = _header_override(folder / "stage2.yaml", "template=llava_mistral")["cutoff_len"]
    pref, infuse = _load(folder / "pref.yaml"), _load(folder / "infuse.yaml")
    chat = "[INST] [/INST] </s>"
    prompts = (REPO / "data_templates" / "prompts" / "captioning.txt").read_text().splitlines()
    assert 576 + _text_tokens(chat) + max(_text_tokens(p) for p in prompts) + pref["max_new_tokens"] <= stage1
    infusion = (REPO / "data_templates" / "infusion_format.txt").read_text()
    assert 576 + _text_tokens(chat + infusion) + infuse["max_new_tokens"] + ANSWER_BUDGET <= stage2
