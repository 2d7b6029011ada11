"""Checks of a model before its weights are loaded, shared by generation and training: does the template's image
plugin fit the model (``check_template_fits``), and, where a model cannot be loaded, where it was looked for
(``model_not_loaded``)."""

import os
from pathlib import Path

# The image plugin (LLaMA-Factory's template -> mm_plugin) that each model type needs; other model types are
# checked by the trial run alone.
PLUGIN_OF_MODEL_TYPE = {
    "llava": "LlavaPlugin",
    "llava_next": "LlavaNextPlugin",
    "qwen2_vl": "Qwen2VLPlugin",
    "qwen2_5_vl": "Qwen2VLPlugin",
    "qwen3_vl": "Qwen3VLPlugin",
    "internvl": "InternVLPlugin",
    "glm4v": "GLM4VPlugin",
    "mistral3": "PixtralPlugin",
    "gemma3": "Gemma3Plugin",
    "paligemma": "PaliGemmaPlugin",
    "mllama": "MllamaPlugin",
    "lfm2_vl": "LFMVLPlugin",
    "llama4": "Llama4Plugin",
}
TEMPLATE_HINT = (
    "Use the template of your checkpoint, the same in stic-cli and in training: llava for llava-1.5-*-hf, "
    "llava_next_mistral for llava-v1.6-mistral-7b-hf (llava_mistral for its stic-cli single-view copy), qwen2_vl "
    "for Qwen2-VL and Qwen2.5-VL, qwen3_vl_nothink for Qwen3-VL-*-Instruct (qwen3_vl for -Thinking), intern_vl for "
    "InternVL3-*-hf, glm4v for GLM-4.1V, mistral_small for Mistral Small 3.1, gemma3, paligemma, mllama for Llama "
    "3.2 Vision, lfm2_vl, llama4 (docs/models.md)."
)


def check_template_fits(chat_template, processor, config, template: str, model_name_or_path: str) -> None:
    """Stop with a message when the template's image plugin cannot drive the model's processor, before the
    weights are loaded (a wrong template otherwise fails deep inside the plugin, or writes nonsense)."""
    from PIL import Image

    plugin = chat_template.mm_plugin
    model_type = getattr(config, "model_type", "?")
    image_processor = getattr(processor, "image_processor", None)
    model = f"{type(processor).__name__} with {type(image_processor).__name__}, model type {model_type}"
    expected = PLUGIN_OF_MODEL_TYPE.get(model_type)
    problem = None
    if expected is not None and type(plugin).__name__ != expected:
        problem = f"its image plugin is {type(plugin).__name__}, and this model needs {expected}"
    else:
        from llamafactory.extras.constants import IMAGE_PLACEHOLDER

        image = Image.new("RGB", (64, 48))
        try:
            plugin.process_messages([{"role": "user", "content": IMAGE_PLACEHOLDER}], [image], [], [], processor)
            plugin.get_mm_inputs([image], [], [], [1], [0], [0], [[0]], processor)
        except Exception as err:  # whatever the plugin trips over: a message instead of its traceback
            problem = f"its image plugin {type(plugin).__name__} fails on this processor ({type(err).__name__}: {err})"
    if problem:
        raise ValueError(
            f"template `{template}` does not fit {model_name_or_path} ({model}): {problem}. {TEMPLATE_HINT}"
        )


def model_not_loaded(model_name_or_path: str, error: Exception) -> str:
    """Why a model could not be loaded, saying where it was looked for: the local folder, or the Hugging Face hub
    (and that this machine is offline, where it is)."""
    if Path(model_name_or_path).exists():
        return f"cannot load the model in the local folder {Path(model_name_or_path).absolute()}: {error}"
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    where = (
        "on the Hugging Face hub, which this process may not reach (HF_HUB_OFFLINE is set): download the model "
        "first, or give its local folder"
        if offline
        else "on the Hugging Face hub (it is no local folder): check the name, the network, or give a local folder"
    )
    return f"cannot load the model {model_name_or_path!r}: looked up {where} ({type(error).__name__}: {error})"


def check_training_model(model_args, data_args) -> None:
    """Before ``llamafactory-cli train`` loads the weights: the model's tokenizer and processor can be loaded, and
    the template's image plugin fits them (a text template or a text model is not checked). Raises ValueError with
    ``stic-cli``'s one-line messages."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.model import load_config, load_tokenizer

    try:
        tokenizer_module = load_tokenizer(model_args)
    except OSError as err:
        raise ValueError(model_not_loaded(model_args.model_name_or_path, err)) from None
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    processor = tokenizer_module.get("processor")
    if template.mm_plugin.image_token is None or processor is None:
        return
    check_template_fits(template, processor, load_config(model_args), data_args.template, model_args.model_name_or_path)
