"""The files in ``data_templates/`` (prompt sets, formats): one copy of each, read by every generator."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_templates_dir() -> Path:
    """``stic_plugin/data_templates`` in an installed wheel, ``data_templates/`` beside the package in a checkout."""
    for candidate in (_PACKAGE / "data_templates", _PACKAGE.parent / "data_templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("data_templates/ not found beside stic_plugin: the installation is incomplete")


def default_prompt_file(name: str) -> str:
    return str(data_templates_dir() / "prompts" / f"{name}.txt")


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
    import json

    entries = json.loads((data_templates_dir() / "dataset_info.json").read_text(encoding="utf-8"))
    return {key: value for key, value in entries[name].items() if key != "file_name"}
