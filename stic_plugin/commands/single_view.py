"""``stic-cli single-view DIR``: a LLaVA-1.6 model as a copy that trains on one padded view.

The authors generated with LLaVA-1.6's anyres views (tiles at a grid resolution plus an overview) but trained with
``image_aspect_ratio pad``: the image padded to a square with the mean colour and resized to one 336-pixel view,
576 image tokens, no tiles. transformers' LLaVA-1.6 class always adds the tiles, so the copy is a LLaVA-1.5-type
model (``LlavaForConditionalGeneration``: the same vision tower, projector and language model, the weights
linked, LLaVA-1.6's tile-row separator left out) with ``LlavaImageProcessor(do_pad=True)``, which pads as LLaVA's
``expand2square``. Its module names are LLaVA-1.6's: an adapter trained on the copy applies to the model itself,
for generation and evaluation with anyres as the authors did.
"""

import os
from pathlib import Path

from ..constants import SINGLE_VIEW_TEMPLATE
from ..model_check import model_not_loaded
from .config.single_view import SingleViewConfig

# The files of the model folder that the copy links: the weights and the generation settings (it writes the rest).
LINKED = ("*.safetensors", "*.safetensors.index.json", "generation_config.json")
# The image processor's settings that the one-view processor keeps (resize, crop, rescale, normalise).
KEPT_IMAGE_SETTINGS = (
    "size",
    "crop_size",
    "resample",
    "do_resize",
    "do_center_crop",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
)


def model_folder(model_name_or_path: str) -> Path:
    """The model's local folder: itself, or the hub's files in the local cache (downloaded if need be)."""
    if Path(model_name_or_path).is_dir():
        return Path(model_name_or_path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_name_or_path, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as err:  # not found, offline, no access: where it was looked for, in one line
        raise ValueError(model_not_loaded(model_name_or_path, err)) from None


def single_view_config(config, model_name_or_path: str):
    """The LLaVA-1.5-type configuration of a LLaVA-1.6 configuration: the same towers, no grid of tiles."""
    from transformers import LlavaConfig

    if config.model_type != "llava_next":
        raise ValueError(
            f"model_name_or_path {model_name_or_path} is a {config.model_type} model: single-view copies a LLaVA-1.6 "
            "model (model type llava_next)"
        )
    values = config.to_dict()
    for key in ("image_grid_pinpoints", "architectures", "model_type", "transformers_version", "_name_or_path"):
        values.pop(key, None)
    vision = config.vision_config
    values["image_seq_length"] = (vision.image_size // vision.patch_size) ** 2
    llava = LlavaConfig(**values)
    llava.architectures = ["LlavaForConditionalGeneration"]
    return llava


def single_view_processor(processor):
    """LLaVA's one padded view, with the LLaVA-1.6 processor's resize, crop, normalisation and tokenizer."""
    from transformers import LlavaImageProcessor, LlavaProcessor

    settings = processor.image_processor.to_dict()
    image_processor = LlavaImageProcessor(do_pad=True, **{k: settings[k] for k in KEPT_IMAGE_SETTINGS if k in settings})
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=processor.tokenizer,
        patch_size=processor.patch_size,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        num_additional_image_tokens=processor.num_additional_image_tokens,
        image_token=processor.image_token,
        chat_template=processor.chat_template,
    )


def run_single_view(cfg: SingleViewConfig) -> int:
    from transformers import AutoConfig, AutoProcessor

    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ValueError(
            f"{out.absolute()} is not empty: its files are kept. Choose another folder, or overwrite=true to "
            "replace an earlier copy's files."
        )
    source = model_folder(cfg.model_name_or_path)
    config = single_view_config(AutoConfig.from_pretrained(source), cfg.model_name_or_path)
    if not any(source.glob("*.safetensors")):
        raise ValueError(f"{source} has no .safetensors weight files to link")
    processor = single_view_processor(AutoProcessor.from_pretrained(source))
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    processor.save_pretrained(out)
    linked = sorted({path for pattern in LINKED for path in source.glob(pattern)})
    for path in linked:
        target = out / path.name
        if target.is_symlink():  # an earlier copy's link (overwrite=true)
            target.unlink()
        os.symlink(path.resolve(), target)
    print(
        f"stic-cli single-view: {out.absolute()}: the weights of {cfg.model_name_or_path} "
        f"({len(linked)} files linked), "
        f"trained on one padded view of {config.image_seq_length} image tokens\n"
        f"  then: the override in the headers of recipes/llava-v1.6-mistral-7b/stage1.yaml and stage2.yaml "
        f"(model_name_or_path={out} template={SINGLE_VIEW_TEMPLATE} and a shorter cutoff_len)",
        flush=True,
    )
    return 0
