"""The files shipped beside the code, found in one place: ``data_templates/`` (prompt sets, the infusion
format, dataset entries), ``recipes/`` and ``model_configs/``.

In a checkout ``data_templates/`` and ``recipes/`` sit beside the package; an installed wheel carries them
inside it (``pyproject.toml``). ``model_configs/`` is inside the package in both.
"""

import json
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _shipped_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ not found beside stic_plugin: the installation is incomplete")


def data_templates_dir() -> Path:
    """``stic_plugin/data_templates`` in an installed wheel, ``data_templates/`` beside the package in a checkout."""
    return _shipped_dir("data_templates")


def recipes_dir() -> Path:
    """The shipped recipes: ``stic_plugin/recipes`` in a wheel, ``recipes/`` beside the package in a checkout."""
    return _shipped_dir("recipes")


def model_configs_dir() -> Path:
    """The real models' configurations (``config.json``, ``preprocessor_config.json``), one folder per model."""
    return _PACKAGE / "model_configs"


def default_prompt_file(name: str) -> str:
    return str(data_templates_dir() / "prompts" / f"{name}.txt")


def default_infusion_format_file() -> str:
    return str(data_templates_dir() / "infusion_format.txt")


def read_prompts(path: str, what: str) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ValueError(f"cannot read the {what} prompts from {path}: {err}") from err
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no {what} prompt (one per line; '#' starts a comment)")
    return prompts


def dataset_entry(name: str) -> dict:
    """An entry of ``data_templates/dataset_info.json``, without its file name (the caller sets it)."""
    entries = json.loads((data_templates_dir() / "dataset_info.json").read_text(encoding="utf-8"))
    return {key: value for key, value in entries[name].items() if key != "file_name"}
