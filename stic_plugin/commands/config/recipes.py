"""The keys of ``stic-cli recipes``."""

from dataclasses import dataclass

from .groups import Keys
from .keys import option


@dataclass(kw_only=True)
class RecipesConfig(Keys):
    """``stic-cli recipes DIR``: a copy of the shipped recipes and data templates in DIR (recipes/ and
    data_templates/), so that the README's commands run as written from DIR after a pip install."""

    command = "recipes"
    positional = "output_dir"  # stic-cli recipes DIR: the folder, without `output_dir=`

    output_dir: str = option(help="The folder to copy recipes/ and data_templates/ into.")
    overwrite: bool = option(False, help="Replace files of an earlier copy (others in the folder are kept).")
