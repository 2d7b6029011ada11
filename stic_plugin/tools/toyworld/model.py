"""The toy world's model and data: a tokenizer trained on the world's language, a tiny LLaVA, the splits.

The model is a real ``LlavaForConditionalGeneration`` (CLIP vision tower, MLP projector, Llama text
model, 0.9 M parameters) with random weights, trained from scratch by ``llamafactory-cli train`` on
the pretraining split. The tokenizer is a byte-level BPE trained here on the world's texts; each of the
paper's prompts (and the chat template's system prompt) is one token of it, which keeps sequences
short on a CPU: the model still has to learn what each prompt asks for.
"""

from pathlib import Path

from . import world

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
# LLaMA-Factory's `llava` template writes this system prompt before every conversation.
LLAVA_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
PATCH_SIZE = 16  # 48x48 pictures -> 3x3 patches, one per grid cell -> 9 image tokens


def world_texts(world_seed: int, count: int = 3000) -> list[str]:
    """What the world says, for training the tokenizer."""
    texts = ["USER: ASSISTANT: Image description:\n\n"]
    for index in range(count):
        scene = world.sample_scene(world_seed, "tokenizer", index)
        rng = world.scene_rng(world_seed, "tokenizer", index, "texts")
        texts.append(world.describe(list(scene.objects) + world.imagined_objects(scene, rng, 2)))
        texts.append(world.describe(world.careless_objects(scene, rng)))
        for _, question, answer in world.questions(scene, rng, 4):
            texts += [f"{question} {answer}", answer]
    return texts


def build_tokenizer(prompts: list[str], world_seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(world_texts(world_seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_tokens(list(dict.fromkeys(prompts + [LLAVA_SYSTEM_PROMPT])))
    return tokenizer


def build_model(out_dir: Path, tokenizer, seed: int = 0) -> Path:
    """A tiny LLaVA with random weights, saved with its processor as an HF folder."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    side = world.IMAGE_SIZE
    image_processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=96,
            intermediate_size=192,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=side,
            patch_size=PATCH_SIZE,
            projection_dim=96,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the console shows the experiment's steps, not a save's
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
