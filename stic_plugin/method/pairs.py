"""Stage 1's preference pairs (paper Algorithm 1): every random choice for one image, the pair's record, and the
pairs that are dropped.

Every choice is derived from (seed, the image's key) alone, so the same prompts, negative types and
corruptions come out whatever the batch size, the number of processes, or how often a run was resumed:
nothing depends on the order in which images are processed. (The sampled texts themselves vary with the
sampling, as any sampled generation does.) One record::

    {"messages": [{"role": "user", "content": "<image>\\nInterpret the scene shown in the image."}],
     "chosen": {"role": "assistant", "content": "The image shows ..."},
     "rejected": {"role": "assistant", "content": "..."},
     "images": ["../coco/COCO_train2014_000000000009.jpg"],
     "stic": {"image": "COCO_train2014_000000000009.jpg", "negative": "corruption", "bad_prompt": "",
              "corruption": "color_jitter",
              "corruption_params": {"shorter_side": 0, "brightness": 1.21, "hue": -0.07, "order": "hue,brightness"},
              ...}}
"""

import random
from dataclasses import dataclass, field

from ..generation.base import user_turn
from .corruption import corruption_record, sample_corruption
from .keys import path_from

NEGATIVE_HALLUCINATION = "hallucination"
NEGATIVE_CORRUPTION = "corruption"


@dataclass(frozen=True)
class PairPlan:
    key: str
    preferred_prompt: str  # the step-by-step prompt, on the clean image
    training_prompt: str  # stored for both responses, and used on the corrupted image
    negative: str  # NEGATIVE_HALLUCINATION or NEGATIVE_CORRUPTION
    bad_prompt: str | None = None
    corruption: str | None = None
    corruption_params: dict = field(default_factory=dict)

    @property
    def rejected_prompt(self) -> str:
        return self.bad_prompt if self.negative == NEGATIVE_HALLUCINATION else self.training_prompt


def image_rng(seed: int, key: str, purpose: str) -> random.Random:
    # A string seed goes through SHA-512 in random.Random: stable across processes and platforms.
    return random.Random(f"stic:{purpose}:{seed}:{key}")


def plan_pair(
    seed: int,
    key: str,
    preferred_prompts: list[str],
    captioning_prompts: list[str],
    hallucination_prompts: list[str],
    corruption_prob: float,
    corruption_weights: dict[str, float],
    low_resolution_size: int = 20,
    jitter_brightness: float = 0.5,
    jitter_hue: float = 0.3,
) -> PairPlan:
    """Algorithm 1's choices for one image: training prompt, negative type, bad prompt or corruption."""
    rng = image_rng(seed, key, "pref")
    preferred_prompt = rng.choice(preferred_prompts)
    training_prompt = rng.choice(captioning_prompts)
    if rng.random() < corruption_prob:
        name, params = sample_corruption(rng, corruption_weights, low_resolution_size, jitter_brightness, jitter_hue)
        return PairPlan(
            key, preferred_prompt, training_prompt, NEGATIVE_CORRUPTION, corruption=name, corruption_params=params
        )
    bad_prompt = rng.choice(hallucination_prompts)
    return PairPlan(key, preferred_prompt, training_prompt, NEGATIVE_HALLUCINATION, bad_prompt=bad_prompt)


def pair_record(plan: PairPlan, image_path: str, chosen, rejected, dataset_dir) -> dict:
    """The record of one pair (``chosen`` and ``rejected``: the two generations), its image path relative to
    the dataset's folder."""
    return {
        "messages": [{"role": "user", "content": user_turn(plan.training_prompt)}],
        "chosen": {"role": "assistant", "content": chosen.text},
        "rejected": {"role": "assistant", "content": rejected.text},
        "images": [path_from(dataset_dir, image_path)],
        # Fixed keys and types (no nulls), so any JSON reader infers one schema for the whole file.
        "stic": {
            "image": plan.key,
            "negative": plan.negative,
            "preferred_prompt": plan.preferred_prompt,
            "bad_prompt": plan.bad_prompt or "",
            "corruption": plan.corruption or "",
            "corruption_params": corruption_record(plan.corruption_params),
            "chosen_tokens": chosen.tokens,
            "rejected_tokens": rejected.tokens,
            "chosen_truncated": chosen.truncated,
            "rejected_truncated": rejected.truncated,
        },
    }


def drop_reason(chosen, rejected, on_truncated: str) -> str | None:
    """Why a pair cannot teach anything, or was asked to be left out (``on_truncated: drop``); None to keep it."""
    if not chosen.text:
        return "empty chosen"
    if not rejected.text:
        return "empty rejected"
    if chosen.text == rejected.text:
        return "chosen identical to rejected"
    if chosen.truncated and on_truncated == "drop":
        return "chosen truncated"
    return None
