"""Tiny offline models of the image model families LLaMA-Factory 0.9.5 has templates for, beyond the three of
``fixtures.py``: each the real transformers class, its own processor and special tokens, random weights."""

from __future__ import annotations

from pathlib import Path

from .fixtures import QWEN_IMAGE_SIZE, save_random_model, tiny_text_fields, train_tokenizer


def family_tokenizer(specials: list[str], named: dict[str, str], plain_added: tuple[str, ...] = (), **roles):
    """The offline BPE tokenizer with the family's special tokens; ``named``: the tokenizer's attributes naming
    some of them (image_token, boi_token...); ``roles``: bos/eos/pad/unk; ``plain_added``: tokens added as
    ordinary words (not skipped when decoding), as a family's ``<think>``."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(specials), extra_special_tokens=named, **roles)
    if plain_added:
        tokenizer.add_tokens(list(plain_added))
    return tokenizer


def siglip_vision(image_size: int, patch: int, hidden: int = 32, **extra):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        **extra,
    )


# Gemma's vocabulary has runs of newlines as tokens of their own (vLLM's Gemma 3 reads them).
GEMMA_NEWLINES = ("\n", "\n\n", "\n\n\n", "\n\n\n\n")


def build_tiny_gemma3(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4, sliding_window: int | None = 512):
    """Gemma 3 (SigLIP tower, pooled to 4 soft tokens, Gemma 3 text with sliding-window layers and tied embeddings as
    the real one)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tokenizer = family_tokenizer(
        [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
        ],
        {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
        plain_added=GEMMA_NEWLINES,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )
    side, patch, tokens = 32, 8, 4
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        image_seq_length=tokens,
    )
    layer_types = ["sliding_attention", "full_attention"] if sliding_window else ["full_attention"] * 2
    config = Gemma3Config(
        vision_config=siglip_vision(side, patch),
        text_config=tiny_text_fields(
            tokenizer,
            hidden,
            heads,
            head_dim=hidden // heads,
            query_pre_attn_scalar=hidden // heads,
            sliding_window=sliding_window,
            layer_types=layer_types,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        ),
        mm_tokens_per_image=tokens,
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        tie_word_embeddings=True,
    )
    return save_random_model(Gemma3ForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_paligemma(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """PaliGemma (SigLIP tower, 16 image tokens before the prompt, Gemma text with tied embeddings), templates
    ``paligemma`` and ``paligemma_chat``."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer = family_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<image>", "<start_of_turn>", "<end_of_turn>"],  # Gemma's chat markers
        {"image_token": "<image>"},
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )
    side, patch = 32, 8
    image_processor = SiglipImageProcessor(size={"height": side, "width": side})
    image_processor.image_seq_length = (side // patch) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = PaliGemmaConfig(
        vision_config=siglip_vision(side, patch, projection_dim=hidden),
        text_config=tiny_text_fields(
            tokenizer,
            hidden,
            heads,
            model_type="gemma",
            head_dim=hidden // heads,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=hidden,
        hidden_size=hidden,
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
    )
    return save_random_model(PaliGemmaForConditionalGeneration, config, processor, Path(out_dir), seed)


LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
    "<|image|>",
]


def build_tiny_mllama(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Llama 3.2 Vision (tiled vision encoder, cross-attention layers in the Llama text model)."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor

    tokenizer = family_tokenizer(
        LLAMA3_SPECIALS,
        {"image_token": "<|image|>"},
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    side = 32
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessor(size={"height": side, "width": side}, max_image_tiles=4),
        tokenizer=tokenizer,
    )
    vision_hidden, indices = 32, [0, 1]
    config = MllamaConfig(
        vision_config=dict(
            hidden_size=vision_hidden,
            intermediate_size=2 * vision_hidden,
            num_hidden_layers=2,
            num_global_layers=1,
            attention_heads=2,
            image_size=side,
            patch_size=8,
            max_num_tiles=4,
            intermediate_layers_indices=indices,
            vision_output_dim=vision_hidden * (1 + len(indices)),
        ),
        text_config=tiny_text_fields(
            tokenizer,
            hidden,
            heads,
            num_hidden_layers=3,
            cross_attention_layers=[1],
            max_position_embeddings=2048,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    return save_random_model(MllamaForConditionalGeneration, config, processor, Path(out_dir), seed)


CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_lfm2_vl(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """LFM2-VL (SigLIP 2 tower at the image's own resolution, LFM2 text model of convolution and attention
    layers)."""
    from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration, Lfm2VlImageProcessor, Lfm2VlProcessor

    tokenizer = family_tokenizer(
        [*CHATML_SPECIALS, "<|startoftext|>", "<image>", "<|image_start|>", "<|image_end|>", "<|img_thumbnail|>"],
        {"image_token": "<image>"},
        bos_token="<|startoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    patch = 8
    image_processor = Lfm2VlImageProcessor(
        do_image_splitting=False, encoder_patch_size=patch, min_image_tokens=4, max_image_tokens=16, tile_size=32
    )
    processor = Lfm2VlProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = Lfm2VlConfig(
        vision_config=dict(
            model_type="siglip2_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=patch,
            num_patches=64,
            vision_use_head=False,  # as the real checkpoints: the text model reads the last hidden states
        ),
        text_config=tiny_text_fields(
            tokenizer,
            hidden,
            heads,
            block_auto_adjust_ff_dim=False,
            num_hidden_layers=3,
            layer_types=["conv", "full_attention", "conv"],
            conv_dim=hidden,  # the real checkpoints' configs carry these (transformers ignores them, vLLM reads them)
            conv_dim_out=hidden,
            block_dim=hidden,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_size=hidden,
        downsample_factor=2,
        tie_word_embeddings=False,
    )
    return save_random_model(Lfm2VlForConditionalGeneration, config, processor, Path(out_dir), seed)


def qwen2_text(tokenizer, hidden: int, heads: int, **extra) -> dict:
    """A tiny Qwen2-like text configuration (the language model of several families)."""
    return tiny_text_fields(tokenizer, hidden, heads, max_position_embeddings=2048, tie_word_embeddings=False, **extra)


def build_tiny_internvl(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """InternVL3 as transformers has it (InternViT, pixel shuffle to 4 tokens per 32-pixel tile, Qwen2 text). As in
    the real tokenizer, ``<IMG_CONTEXT>`` fills the image span and the template's ``<image>`` is no token."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = family_tokenizer(
        [*CHATML_SPECIALS, *named.values()], named, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    side, patch, tokens = 32, 8, 4
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size={"height": side, "width": side}),
        image_seq_length=tokens,
    )
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[side, side],
            patch_size=[patch, patch],
        ),
        text_config=dict(model_type="qwen2", **qwen2_text(tokenizer, hidden, heads)),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=tokens,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    return save_random_model(InternVLForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_llama4(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Llama 4 (tiled vision encoder with pixel shuffle, mixture-of-experts text model with chunked attention
    layers). ``<|patch|>`` fills the image span; the template's ``<|image|>`` only marks where the image goes."""
    from transformers import Llama4Config, Llama4ForConditionalGeneration, Llama4ImageProcessor, Llama4Processor

    image_tokens = ["<|image_start|>", "<|image_end|>", "<|image|>", "<|patch|>"]
    tiles = ["<|tile_x_separator|>", "<|tile_y_separator|>"]
    tokenizer = family_tokenizer(
        [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|header_start|>",
            "<|header_end|>",
            "<|eot|>",
            "<|eom|>",
            "<|finetune_right_pad|>",
            *image_tokens,
            *tiles,
        ],
        {"image_token": "<|image|>"},
        bos_token="<|begin_of_text|>",
        eos_token="<|eot|>",
        pad_token="<|finetune_right_pad|>",
    )
    side, patch, vision = 32, 8, 32
    processor = Llama4Processor(
        image_processor=Llama4ImageProcessor(size={"height": side, "width": side}, max_patches=4),
        tokenizer=tokenizer,
        patch_size=patch,
        pixel_shuffle_ratio=0.5,
    )
    config = Llama4Config(
        vision_config=dict(
            hidden_size=vision,
            intermediate_size=4 * vision,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=side,
            patch_size=patch,
            pixel_shuffle_ratio=0.5,
            projector_input_dim=hidden,
            projector_output_dim=hidden,
            vision_output_dim=hidden,
        ),
        text_config=tiny_text_fields(
            tokenizer,
            hidden,
            heads,
            intermediate_size_mlp=2 * hidden,
            head_dim=hidden // heads,
            num_local_experts=2,
            num_experts_per_tok=1,
            interleave_moe_layer_step=2,
            attention_chunk_size=256,
            max_position_embeddings=2048,
        ),
        boi_token_index=tokenizer.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<|image_end|>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<|patch|>"),
    )
    return save_random_model(Llama4ForConditionalGeneration, config, processor, Path(out_dir), seed)


def glm4v_parts(hidden: int, heads: int):
    """GLM-4.1V's tokenizer (a thinking model's words), processor, and the keys of its configuration."""
    from transformers import Glm4vImageProcessor, Glm4vProcessor, Glm4vVideoProcessor

    media = [
        "<|begin_of_image|>",
        "<|end_of_image|>",
        "<|image|>",
        "<|begin_of_video|>",
        "<|end_of_video|>",
        "<|video|>",
    ]
    tokenizer = family_tokenizer(
        ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>", *media],
        {"image_token": "<|image|>", "video_token": "<|video|>"},
        plain_added=("<think>", "</think>", "<answer>", "</answer>"),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    pixels = QWEN_IMAGE_SIZE * QWEN_IMAGE_SIZE
    size = {"shortest_edge": pixels, "longest_edge": pixels}
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(size=size),
    )
    rotary_half = hidden // heads // 4  # half of the rotary part (partial_rotary_factor 0.5) of each head
    keys = dict(
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            image_size=QWEN_IMAGE_SIZE,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=hidden,
        ),
        text_config=dict(
            **qwen2_text(tokenizer, hidden, heads),
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
                "mrope_section": [rotary_half // 4, rotary_half * 3 // 8, rotary_half * 3 // 8],
            },
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video|>"),
        image_start_token_id=tokenizer.convert_tokens_to_ids("<|begin_of_image|>"),
        image_end_token_id=tokenizer.convert_tokens_to_ids("<|end_of_image|>"),
        video_start_token_id=tokenizer.convert_tokens_to_ids("<|begin_of_video|>"),
        video_end_token_id=tokenizer.convert_tokens_to_ids("<|end_of_video|>"),
    )
    return tokenizer, processor, keys


def build_tiny_glm4v(out_dir, seed: int = 0, hidden: int = 64, heads: int = 2):
    """GLM-4.1V (ViT with 2x2 patch merger, GLM-4 text with 3-D rotary positions), template ``glm4v``."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    _, processor, keys = glm4v_parts(hidden, heads)
    return save_random_model(Glm4vForConditionalGeneration, Glm4vConfig(**keys), processor, Path(out_dir), seed)


def build_tiny_mistral3(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Mistral Small 3.1 (Pixtral tower at the image's resolution, 2x2 patch merger, Mistral text)."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessor, PixtralProcessor

    image = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"]
    tokenizer = family_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", *image],
        {"image_token": "[IMG]"},
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    patch, longest = 8, 64
    processor = PixtralProcessor(
        image_processor=PixtralImageProcessor(
            size={"longest_edge": longest}, patch_size={"height": patch, "width": patch}
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        spatial_merge_size=2,
    )
    config = Mistral3Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            head_dim=16,
            image_size=longest,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="mistral", sliding_window=None, head_dim=hidden // heads, **qwen2_text(tokenizer, hidden, heads)
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        tie_word_embeddings=False,
    )
    return save_random_model(Mistral3ForConditionalGeneration, config, processor, Path(out_dir), seed)


QWEN_VL_SPECIALS = [*CHATML_SPECIALS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def qwen_vl_tokenizer(thinking: bool = False):
    """Qwen2.5-VL's and Qwen3-VL's special tokens (Qwen3's ``<think>`` and ``</think>`` are ordinary added words)."""
    return family_tokenizer(
        QWEN_VL_SPECIALS,
        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        plain_added=("<think>", "</think>") if thinking else (),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def qwen_vl_token_ids(tokenizer) -> dict:
    return dict(
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )


def build_tiny_qwen2_5_vl(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Qwen2.5-VL (windowed ViT with 2x2 patch merger, M-RoPE text model), template ``qwen2_vl``."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = qwen_vl_tokenizer()
    pixels = QWEN_IMAGE_SIZE * QWEN_IMAGE_SIZE
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
    )
    quarter = hidden // heads // 8  # M-RoPE sections (temporal, height, width) sum to head_dim / 2
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        text_config=dict(
            **qwen2_text(tokenizer, hidden, heads),
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [quarter, 3 * quarter // 2, 3 * quarter // 2],
                "rope_theta": 10000.0,
            },
        ),
        **qwen_vl_token_ids(tokenizer),
    )
    return save_random_model(Qwen2_5_VLForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_qwen3_vl(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Qwen3-VL (ViT of 16-pixel patches with deep-stack features, interleaved M-RoPE Qwen3 text), templates
    ``qwen3_vl`` (thinking) and ``qwen3_vl_nothink``."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = qwen_vl_tokenizer(thinking=True)
    side = 64  # 16-pixel patches merged 2x2: 4 image tokens
    pixels = side * side
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=16, merge_size=2
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": pixels, "longest_edge": pixels}),
    )
    half = hidden // heads // 2
    config = Qwen3VLConfig(
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        ),
        text_config=dict(
            **qwen2_text(tokenizer, hidden, heads),
            head_dim=hidden // heads,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [half // 2, half // 4, half // 4],
                "mrope_interleaved": True,
                "rope_theta": 10000.0,
            },
        ),
        **qwen_vl_token_ids(tokenizer),
    )
    return save_random_model(Qwen3VLForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_qwen3_5(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Qwen3.5 (Qwen3-VL's vision tower, a hybrid text model: gated delta-net linear attention and full attention
    layers), templates ``qwen3_5`` (thinking) and ``qwen3_5_nothink``."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = qwen_vl_tokenizer(thinking=True)
    side = 64
    pixels = side * side
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=16, merge_size=2
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": pixels, "longest_edge": pixels}),
    )
    head_dim = hidden // heads
    rotary_half = head_dim // 4 // 2  # partial_rotary_factor 0.25, as the real model's
    config = Qwen3_5Config(
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=64,
        ),
        text_config=dict(
            **qwen2_text(tokenizer, hidden, heads),
            head_dim=head_dim,
            layer_types=["linear_attention", "full_attention"],
            linear_key_head_dim=head_dim,
            linear_value_head_dim=head_dim,
            linear_num_key_heads=heads // 2,
            linear_num_value_heads=heads,
            rope_parameters={
                "rope_type": "default",
                "partial_rotary_factor": 0.25,
                "mrope_section": [rotary_half // 2, rotary_half // 4, rotary_half // 4],
                "mrope_interleaved": True,
                "rope_theta": 10000.0,
            },
        ),
        **qwen_vl_token_ids(tokenizer),
    )
    return save_random_model(Qwen3_5ForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_video_llava(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """Video-LLaVA (LanguageBind image and video towers, Llama text), template ``video_llava``."""
    from transformers import (
        LlamaConfig,
        VideoLlavaConfig,
        VideoLlavaForConditionalGeneration,
        VideoLlavaImageProcessor,
        VideoLlavaProcessor,
        VideoLlavaVideoProcessor,
    )

    from .fixtures import LLAVA_IMAGE_SIZE, LLAVA_PATCH, tiny_clip_vision_config, tiny_text_config

    tokenizer = family_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>"],
        {"image_token": "<image>", "video_token": "<video>"},
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    side = LLAVA_IMAGE_SIZE
    crop = {"height": side, "width": side}
    processor = VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(size={"shortest_edge": side}, crop_size=crop),
        video_processor=VideoLlavaVideoProcessor(size={"shortest_edge": side}, crop_size=crop),
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = VideoLlavaConfig(
        vision_config=tiny_clip_vision_config(side),
        text_config=tiny_text_config(LlamaConfig, tokenizer, hidden, heads, 2048),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(side // LLAVA_PATCH) ** 2 + 1,
        video_seq_length=((side // LLAVA_PATCH) ** 2 + 1) * 8,
    )
    return save_random_model(VideoLlavaForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_llava_next_video(out_dir, seed: int = 0, hidden: int = 64, heads: int = 4):
    """LLaVA-NeXT-Video (LLaVA-NeXT's tiles for images, pooled frames for videos, Llama text), template
    ``llava_next_video``."""
    from transformers import (
        LlamaConfig,
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    from .fixtures import LLAVA_PATCH, tiny_clip_vision_config, tiny_text_config

    tokenizer = family_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>"],
        {"image_token": "<image>", "video_token": "<video>"},
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    side = 64  # at least a patch's area in pixels: vLLM's video pooler divides the side by it
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    crop = {"height": side, "width": side}
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size={"shortest_edge": side}, crop_size=crop),
        image_processor=LlavaNextImageProcessor(
            size={"shortest_edge": side}, crop_size=crop, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = LlavaNextVideoConfig(
        vision_config=tiny_clip_vision_config(side),
        text_config=tiny_text_config(LlamaConfig, tokenizer, hidden, heads, 4096),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    return save_random_model(LlavaNextVideoForConditionalGeneration, config, processor, Path(out_dir), seed)


def build_tiny_glm4v_moe(out_dir, seed: int = 0, hidden: int = 64, heads: int = 2):
    """GLM-4.5V (GLM-4.1V's vision side and tokens, a mixture-of-experts text model), template ``glm4_5v``."""
    from transformers import Glm4vMoeConfig, Glm4vMoeForConditionalGeneration

    _, processor, keys = glm4v_parts(hidden, heads)
    keys["text_config"].update(
        head_dim=hidden // heads,  # these two as the real configuration has them (vLLM reads them)
        use_qk_norm=False,
        moe_intermediate_size=hidden,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
    )
    config = Glm4vMoeConfig(**keys)
    return save_random_model(Glm4vMoeForConditionalGeneration, config, processor, Path(out_dir), seed)


# name: (builder, the LLaMA-Factory templates of the family, whether vLLM 0.26's CPU build runs it: Mllama and
# Video-LLaVA are not in vLLM, its Gemma 3 and LLaVA-NeXT-Video are refused (vllm_engine.CANNOT_RUN), its CPU
# kernels fail on Qwen3.5's linear attention)
FAMILIES = {
    "tiny-qwen2_5_vl": (build_tiny_qwen2_5_vl, ("qwen2_vl", "mimo_vl"), True),
    "tiny-qwen3_vl": (build_tiny_qwen3_vl, ("qwen3_vl", "qwen3_vl_nothink"), True),
    "tiny-internvl": (build_tiny_internvl, ("intern_vl",), True),
    "tiny-glm4v": (build_tiny_glm4v, ("glm4v",), True),
    "tiny-mistral3": (build_tiny_mistral3, ("mistral_small", "pixtral", "ministral3"), True),
    "tiny-gemma3": (build_tiny_gemma3, ("gemma3",), False),
    "tiny-paligemma": (build_tiny_paligemma, ("paligemma", "paligemma_chat"), True),
    "tiny-mllama": (build_tiny_mllama, ("mllama",), False),
    "tiny-lfm2_vl": (build_tiny_lfm2_vl, ("lfm2_vl",), True),
    "tiny-llama4": (build_tiny_llama4, ("llama4",), True),
    "tiny-qwen3_5": (build_tiny_qwen3_5, ("qwen3_5", "qwen3_5_nothink"), False),
    "tiny-glm4v_moe": (build_tiny_glm4v_moe, ("glm4_5v",), True),
    "tiny-llava_next_video": (build_tiny_llava_next_video, ("llava_next_video",), False),
    "tiny-video_llava": (build_tiny_video_llava, ("video_llava",), False),
}
# vLLM's CPU attention needs a head size of at least 64.
VLLM_SIZES = dict(hidden=128, heads=2)


def build_families(out_dir, vllm: bool = False) -> dict[str, str]:
    """Every family's tiny model under ``out_dir`` (``vllm``: those vLLM's CPU build runs, with 64-wide heads, named
    ``*-vllm``), reusing finished builds."""
    out = Path(out_dir)
    built = {}
    for name, (builder, _templates, on_vllm) in FAMILIES.items():
        if vllm and not on_vllm:
            continue
        target = out / (f"{name}-vllm" if vllm else name)
        if not (target / ".complete").is_file():
            builder(target, **(VLLM_SIZES if vllm else {}))
            (target / ".complete").write_text("ok\n")
        built[target.name] = str(target)
    return built


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m stic_plugin.tools.families", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to build into (created if missing; finished models are reused)")
    parser.add_argument("--vllm", action="store_true", help="the families vLLM's CPU build runs, with heads it takes")
    args = parser.parse_args(argv)
    print(json.dumps(build_families(args.out_dir, vllm=args.vllm), indent=2))


if __name__ == "__main__":
    main()
