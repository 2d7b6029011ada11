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


VISION_WARM_START_STEPS = 300


def warm_start_vision_tower(vision_tower, image_processor, seed: int, steps: int = VISION_WARM_START_STEPS) -> None:
    """A short supervised start of the CLIP tower, as a real vision-language model starts from a pretrained
    vision encoder: for each cell of pretraining pictures, whether it holds an object and the object's shape,
    colour and size, read by a linear head from the cell's image token (the token the language model gets).
    Without it the tower learns shapes late or never within the base model's training (the language model
    first learns to guess them). Afterwards the typical objects are seen almost perfectly, and the faint small
    ones are not (their colour especially). One thread, the seed's own data order: the same tower every time
    on one machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        hidden = vision_tower.config.hidden_size
        colours = list(world.COLOURS)
        heads = torch.nn.ModuleDict(
            {
                "present": torch.nn.Linear(hidden, 2),
                "shape": torch.nn.Linear(hidden, len(world.SHAPES)),
                "colour": torch.nn.Linear(hidden, len(colours)),
                "size": torch.nn.Linear(hidden, len(world.SIZES)),
            }
        )
        for head in heads.values():
            torch.nn.init.normal_(head.weight, std=0.02, generator=generator)
            torch.nn.init.zeros_(head.bias)
        optimizer = torch.optim.AdamW(list(vision_tower.parameters()) + list(heads.parameters()), lr=1e-3)
        order = torch.randperm(steps * 32, generator=generator).tolist()
        vision_tower.train()
        for step in range(steps):
            scenes = [
                world.sample_scene(world.VISION_WORLD_SEED, "vision", index)
                for index in order[step * 32 : (step + 1) * 32]
            ]
            pixels = image_processor([world.render(scene) for scene in scenes], return_tensors="pt")["pixel_values"]
            labels = {name: [] for name in heads}
            for scene in scenes:
                at = {obj.position: obj for obj in scene.objects}
                for position in world.POSITIONS:
                    obj = at.get(position)
                    labels["present"].append(int(obj is not None))
                    labels["shape"].append(world.SHAPES.index(obj.shape) if obj else -100)
                    labels["colour"].append(colours.index(obj.colour) if obj else -100)
                    labels["size"].append(world.SIZES.index(obj.size) if obj else -100)
            tokens = vision_tower(pixel_values=pixels).last_hidden_state[:, 1:].reshape(-1, hidden)  # one per cell
            loss = sum(
                torch.nn.functional.cross_entropy(heads[name](tokens), torch.tensor(labels[name]), ignore_index=-100)
                for name in heads
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        vision_tower.eval()
    finally:
        torch.set_num_threads(threads)


def build_model(out_dir: Path, tokenizer, seed: int = 0) -> Path:
    """A tiny LLaVA with random weights (its vision tower warm-started), saved with its processor as an HF
    folder."""
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
    warm_start_vision_tower(model.model.vision_tower, image_processor, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
