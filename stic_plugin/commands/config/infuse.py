"""The keys of ``stic-cli infuse``."""

from dataclasses import dataclass

from ...assets import default_prompt_file
from .groups import GeneratorKeys, InfusionKeys, InputKeys, check_num_samples
from .keys import check_plain_name, option


@dataclass(kw_only=True)
class InfuseConfig(InfusionKeys, InputKeys, GeneratorKeys):
    """``stic-cli infuse``: stage-2 description-infused SFT data (paper Algorithm 2)."""

    command = "infuse"

    num_samples: int | None = option(
        5000, help="Samples with images drawn from the input with `seed` (the paper: 5k); null takes all."
    )
    dataset_name: str = option(
        "stic_sft", help="Name of the output dataset (folder in dataset_dir and dataset_info entry)."
    )
    description_prompts_file: str = option(
        default_prompt_file("captioning"),
        help="Prompts for the image descriptions, one per line; one is drawn per image.",
    )
    keep_text_only: bool = option(
        False,
        help="Add samples without an image, unchanged, on top of the `num_samples` image samples, in their "
        "input's proportion (false: leave them out, as the authors' generator does).",
    )

    def __post_init__(self):
        super().__post_init__()
        check_num_samples(self.num_samples)
        check_plain_name("dataset_name", self.dataset_name)
