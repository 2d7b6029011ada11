"""The keys of ``stic-cli dar``."""

import typing
from dataclasses import dataclass

from .groups import DescriptionKeys, GeneratorKeys, InfusionKeys, InputKeys, check_num_samples
from .keys import check_plain_name, option


@dataclass(kw_only=True)
class DarConfig(DescriptionKeys, InfusionKeys, InputKeys, GeneratorKeys):
    """``stic-cli dar``: describe-and-respond inference, with accuracy when answers are known."""

    command = "dar"

    dataset_dir: str = option("predictions", help="Folder for the predictions (`predictions_name`/part-*.jsonl).")
    num_samples: int | None = option(None, help="Questions drawn from the input with `seed`; null takes all.")
    temperature: float = option(0.0, help="Sampling temperature; 0 decodes greedily, as the authors' evaluation.")
    predictions_name: str = option("dar", help="Name of the predictions folder and summary.")
    dar: bool = option(
        True,
        help="Describe the image first and answer with the description infused "
        "(false: answer directly, to compare on the same model).",
    )
    metric: typing.Literal["none", "choice", "exact", "contains"] = option(
        "none",
        help=(
            "Score predictions against the reference answers: choice (multiple-choice letter), exact (same text), "
            "contains (the reference appears in the prediction); none to skip."
        ),
    )

    def __post_init__(self):
        super().__post_init__()
        check_num_samples(self.num_samples)
        check_plain_name("predictions_name", self.predictions_name)
