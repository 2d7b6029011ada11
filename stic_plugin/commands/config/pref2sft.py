"""The keys of ``stic-cli pref2sft``."""

from dataclasses import dataclass

from .groups import Keys
from .keys import check_plain_name, option


@dataclass(kw_only=True)
class Pref2SftConfig(Keys):
    """``stic-cli pref2sft``: SFT data from the preferred descriptions of a `pref` output (the paper's Table 3
    ablation, "SFT on positives")."""

    command = "pref2sft"

    dataset_dir: str = option(
        "data", help="Folder of the `pref` output; the SFT dataset and its dataset_info.json entry go here too."
    )
    pref_dataset: str = option("stic_pref", help="Name of the `pref` output to convert (its `dataset_name`).")
    dataset_name: str = option(
        "stic_pref_sft", help="Name of the SFT dataset (folder in dataset_dir and dataset_info entry)."
    )
    overwrite: bool = option(False, help="Replace an existing output converted from other pairs.")

    def __post_init__(self):
        check_plain_name("pref_dataset", self.pref_dataset)
        check_plain_name("dataset_name", self.dataset_name)
        if self.dataset_name == self.pref_dataset:
            raise ValueError("`dataset_name` must differ from `pref_dataset`: the pairs are never overwritten")
