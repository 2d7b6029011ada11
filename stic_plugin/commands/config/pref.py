"""The keys of ``stic-cli pref``."""

import math
import typing
from dataclasses import dataclass

from ...assets import default_prompt_file
from .groups import GeneratorKeys
from .keys import check_plain_name, option


@dataclass(kw_only=True)
class PrefConfig(GeneratorKeys):
    """``stic-cli pref``: STIC stage-1 preference data from unlabeled images (paper Algorithm 1)."""

    command = "pref"

    image_dir: str | None = option(None, help="Folder searched recursively for images (or use `image_list`).")
    image_list: str | None = option(
        None,
        help="Text file of image paths (one per line), a JSON list of paths (the authors' 6k_coco_names.json), or "
        "JSON/JSONL records with an image column.",
    )
    image_root: str | None = option(
        None, help="Folder that relative paths in `image_list` start from (default: the list file's folder)."
    )
    image_column: str = option("image", help="Column holding the image path(s) in a JSON/JSONL `image_list`.")
    max_samples: int | None = option(None, help="Use at most this many images, drawn reproducibly with `seed`.")
    dataset_name: str = option("stic_pref", help="Name of the dataset (folder in dataset_dir and dataset_info entry).")
    corruption_prob: float = option(
        0.5,
        help="Probability that the dispreferred response comes from a corrupted "
        "image (else from a hallucination prompt on the clean image).",
    )
    corruptions: dict = option(
        {"low_resolution": 0.5, "color_jitter": 0.5},
        help="Corruptions and their weights: low_resolution, color_jitter.",
    )
    low_resolution_size: int = option(20, help="low_resolution: the shorter side, in pixels (torchvision Resize).")
    jitter_brightness: float = option(0.5, help="color_jitter: brightness factor drawn from [1-b, 1+b].")
    jitter_hue: float = option(0.3, help="color_jitter: hue shift drawn from [-h, h] (at most 0.5).")
    preferred_prompt_file: str = option(
        default_prompt_file("preferred"),
        help="Step-by-step prompt(s) for the preferred description; one per line (one is drawn per image).",
    )
    captioning_prompts_file: str = option(
        default_prompt_file("captioning"),
        help="Training prompts stored with each pair and used on the corrupted image; one per line.",
    )
    hallucination_prompts_file: str = option(
        default_prompt_file("hallucination"),
        help="Hallucination-inducing prompts for the dispreferred description; one per line.",
    )
    on_truncated: typing.Literal["keep", "drop"] = option(
        "keep", help="A preferred response cut off at max_new_tokens: keep it (flagged) or drop the pair."
    )

    def __post_init__(self):
        super().__post_init__()
        if (self.image_dir is None) == (self.image_list is None):
            raise ValueError("Set exactly one of `image_dir` and `image_list`.")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"`max_samples` must be at least 1 when set; got {self.max_samples}")
        if not 0 <= self.corruption_prob <= 1:
            raise ValueError(f"`corruption_prob` must be in [0, 1]; got {self.corruption_prob}")
        from ...method.corruption import CORRUPTIONS

        for name, weight in self.corruptions.items():
            if name not in CORRUPTIONS:
                raise ValueError(f"`corruptions`: unknown corruption `{name}`; known: {', '.join(CORRUPTIONS)}")
            if (
                not isinstance(weight, (int, float))
                or isinstance(weight, bool)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(f"`corruptions`: the weight of `{name}` must be a number >= 0; got {weight!r}")
        if self.corruption_prob > 0 and not any(self.corruptions.values()):
            raise ValueError("`corruptions` needs at least one positive weight while `corruption_prob` > 0")
        if self.low_resolution_size < 1:
            raise ValueError(f"`low_resolution_size` must be at least 1; got {self.low_resolution_size}")
        if not 0 <= self.jitter_brightness <= 1 or not 0 <= self.jitter_hue <= 0.5:
            raise ValueError("`jitter_brightness` must be in [0, 1] and `jitter_hue` in [0, 0.5]")
        check_plain_name("dataset_name", self.dataset_name)
