"""Every random choice for one image, derived from (seed, the image's key) alone.

So the same prompts, negative types and corruptions come out whatever the batch size, the number of
processes, or how often a run was resumed: nothing depends on the order in which images are processed.
(The sampled texts themselves vary with the sampling, as any sampled generation does.)
"""

import random
from dataclasses import dataclass, field

from .corruption import sample_corruption

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
