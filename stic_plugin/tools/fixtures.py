"""Tiny offline vision-language models, a tokenizer and images for tests and the demo.

Run: ``python -m stic_plugin.tools.fixtures OUT_DIR`` writes (``--vllm``: the same three models with 64-wide heads,
named ``*-vllm``, for vLLM's CPU attention)::

    OUT_DIR/tiny-llava/     LlavaForConditionalGeneration (CLIP vision + Llama text), template ``llava``
    OUT_DIR/tiny-qwen2vl/   Qwen2VLForConditionalGeneration, template ``qwen2_vl``
    OUT_DIR/tiny-llava-next/ LlavaNextForConditionalGeneration (CLIP + Mistral, any-resolution tiles),
                            template ``llava_next_mistral``
    OUT_DIR/images/         small RGB PNG images

The other image model families of docs/models.md are built by ``families.py`` the same way.

Everything is built from configs with random weights and a byte-level BPE tokenizer trained here,
so nothing is downloaded. Real sizes, for scale: LLaVA-1.5-7B has hidden size 4096 and 576 image
tokens; these have hidden size 64 and 16 (LLaVA) or 4 (Qwen2-VL) image tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# LLaVA: 32x32 images, 8x8 patches -> 16 image tokens (plus CLS, dropped by the "default" strategy).
LLAVA_IMAGE_SIZE = 32
LLAVA_PATCH = 8
# Qwen2-VL: 14x14 patches merged 2x2; 56x56 images -> 4x4 patches -> 4 image tokens.
QWEN_IMAGE_SIZE = 56

_WORDS = (
    "a the image picture photo shows shown dog cat man woman child tree car street table red blue green "
    "yellow white black sky water grass house room indoor outdoor light bright dark happy calm busy "
    "standing sitting walking running holding looking near next to on in under with and of is are "
    "describe detail scene object people animal color mood setting background foreground left right "
    "small large two three many one some there this that it they what where how why answer question"
).split()


def _training_corpus(rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16))) for _ in range(2000)]


def train_tokenizer(special_tokens: list[str], vocab_size: int = 600, seed: int = 0):
    """A byte-level BPE tokenizer trained offline on a generated corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(seed)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(rng), trainer=trainer)
    return tokenizer


def make_images(out_dir: str | os.PathLike, count: int = 8, size: int = 48, seed: int = 0) -> list[Path]:
    """Small RGB images with coloured shapes, different per index."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        background = tuple(rng.randrange(256) for _ in range(3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = rng.randrange(size // 2), rng.randrange(size // 2)
            x1, y1 = x0 + rng.randrange(4, size // 2), y0 + rng.randrange(4, size // 2)
            fill = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        path = out / f"image_{index:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def llava_tokenizer(seed: int = 0):
    """The offline BPE tokenizer with LLaVA's special tokens (Llama's unk/bos/eos, a pad, <image>)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(LLAVA_SPECIALS, seed=seed),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )


def qwen_tokenizer(seed: int = 0):
    """The offline BPE tokenizer with Qwen2-VL's special tokens (chat markers, vision markers, image and video pads)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(QWEN_SPECIALS, seed=seed),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def tiny_text_fields(tokenizer, hidden: int, heads: int, **extra) -> dict:
    """The language model of every tiny fixture and family model: two layers, half as many key-value heads, the
    tokenizer's special tokens; ``extra`` adds fields (the context length, a family's own) or replaces them."""
    fields = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return {**fields, **extra}


def tiny_text_config(config_class, tokenizer, hidden: int, heads: int, max_positions: int, **extra):
    """The language model of the tiny LLaVA-type fixtures, as a ``config_class``."""
    return config_class(**tiny_text_fields(tokenizer, hidden, heads, max_position_embeddings=max_positions, **extra))


def tiny_clip_vision_config(image_size: int):
    """The CLIP vision tower of the tiny LLaVA models: 2 layers, hidden size 32, 8x8 patches."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=LLAVA_PATCH,
        projection_dim=32,
    )


def save_random_model(model_class, config, processor, out: Path, seed: int) -> Path:
    """Random weights of ``config`` (seeded), saved with the processor as an HF folder."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_llava(out_dir: str | os.PathLike, seed: int = 0, hidden: int = 64, heads: int = 4) -> Path:
    """LLaVA-1.5 architecture (CLIP vision tower, MLP projector, Llama text model), tiny and random."""
    from transformers import (
        CLIPImageProcessor,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(out_dir)
    tokenizer = llava_tokenizer(seed)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": LLAVA_IMAGE_SIZE},
        crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token of the CLIP tower
    )
    config = LlavaConfig(
        vision_config=tiny_clip_vision_config(LLAVA_IMAGE_SIZE),
        text_config=tiny_text_config(LlamaConfig, tokenizer, hidden, heads, 2048),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    return save_random_model(LlavaForConditionalGeneration, config, processor, out, seed)


def build_tiny_llava_next(out_dir: str | os.PathLike, seed: int = 0, hidden: int = 64, heads: int = 4) -> Path:
    """LLaVA-1.6-Mistral architecture (CLIP tiles at any resolution, Mistral text model), tiny and random."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    out = Path(out_dir)
    tokenizer = llava_tokenizer(seed)
    side = LLAVA_IMAGE_SIZE
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]  # as the real model's, scaled down
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = LlavaNextConfig(
        vision_config=tiny_clip_vision_config(side),
        text_config=tiny_text_config(MistralConfig, tokenizer, hidden, heads, 4096, sliding_window=None),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    return save_random_model(LlavaNextForConditionalGeneration, config, processor, out, seed)


def build_tiny_qwen2vl(out_dir: str | os.PathLike, seed: int = 0, hidden: int = 64, heads: int = 4) -> Path:
    """Qwen2-VL architecture (ViT with 2x2 patch merger, M-RoPE text model), tiny and random."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    tokenizer = qwen_tokenizer(seed)
    pixels = QWEN_IMAGE_SIZE * QWEN_IMAGE_SIZE
    image_processor = Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)
    quarter = hidden // heads // 8  # M-RoPE sections (temporal, height, width) sum to head_dim / 2
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden,  # the merger projects into the text model's width
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": heads // 2,
            "max_position_embeddings": 2048,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [quarter, 3 * quarter // 2, 3 * quarter // 2],
                "rope_theta": 10000.0,
            },
            "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    return save_random_model(Qwen2VLForConditionalGeneration, config, processor, out, seed)


TINY_MODELS = {
    # name: (builder, LLaMA-Factory template, image side in pixels the processor expects)
    "tiny-llava": (build_tiny_llava, "llava", LLAVA_IMAGE_SIZE),
    "tiny-qwen2vl": (build_tiny_qwen2vl, "qwen2_vl", QWEN_IMAGE_SIZE),
    "tiny-llava-next": (build_tiny_llava_next, "llava_next_mistral", LLAVA_IMAGE_SIZE),
}


# vLLM's CPU attention needs a head size of at least 64: the same architectures, twice as wide, with 2 heads.
VLLM_SIZES = dict(hidden=128, heads=2)
VLLM_MODELS = {f"{name}-vllm": spec for name, spec in TINY_MODELS.items()}


def build_vllm_models(out_dir: str | os.PathLike) -> dict[str, str]:
    """The tiny models with heads vLLM's CPU backend runs (``tiny-llava-vllm``, ...), reusing finished builds."""
    out = Path(out_dir)
    built = {}
    for name, (builder, _template, _side) in VLLM_MODELS.items():
        target = out / name
        if not (target / ".complete").is_file():
            builder(target, **VLLM_SIZES)
            (target / ".complete").write_text("ok\n")
        built[name] = str(target)
    return built


def build_all(out_dir: str | os.PathLike, image_count: int = 8) -> dict[str, str]:
    """Build every tiny model and the images under ``out_dir``; reuse what a finished earlier build left."""
    out = Path(out_dir)
    built = {}
    for name, (builder, _template, _side) in TINY_MODELS.items():
        target = out / name
        if not (target / ".complete").is_file():
            builder(target)
            (target / ".complete").write_text("ok\n")
        built[name] = str(target)
    images = out / "images"
    if not (images / ".complete").is_file() or len(list(images.glob("*.png"))) < image_count:
        make_images(images, count=image_count)
        (images / ".complete").write_text("ok\n")
    built["images"] = str(images)
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stic_plugin.tools.fixtures", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to build into (created if missing; finished parts are reused)")
    parser.add_argument("--images", type=int, default=8, help="how many sample images to make (default 8)")
    parser.add_argument(
        "--vllm", action="store_true", help="build the models with heads vLLM's CPU attention runs instead"
    )
    args = parser.parse_args(argv)
    built = build_vllm_models(args.out_dir) if args.vllm else build_all(args.out_dir, image_count=args.images)
    print(json.dumps(built, indent=2))


if __name__ == "__main__":
    main()
