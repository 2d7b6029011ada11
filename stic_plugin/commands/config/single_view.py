"""The keys of ``stic-cli single-view``."""

from dataclasses import dataclass

from .groups import Keys
from .keys import option


@dataclass(kw_only=True)
class SingleViewConfig(Keys):
    """``stic-cli single-view DIR``: a copy of a LLaVA-1.6 model in DIR that trains on one padded view, as the
    authors' training scripts did (image_aspect_ratio pad: the image padded to a square with the mean colour,
    one 336-pixel view, 576 image tokens), for the stage-1 and stage-2 recipes with template=llava_mistral;
    generation and evaluation keep the model's anyres views, as the authors'."""

    command = "single-view"
    positional = "output_dir"  # stic-cli single-view DIR: the folder, without `output_dir=`

    output_dir: str = option(help="The folder of the copy (its weight files are links to the model's).")
    model_name_or_path: str = option(
        "llava-hf/llava-v1.6-mistral-7b-hf", help="The LLaVA-1.6 model (a local folder or a Hugging Face hub name)."
    )
    overwrite: bool = option(False, help="Replace the files of an earlier copy in output_dir.")
