"""The ``stic-cli`` command line of the STIC data tab, built from its form and checked by the command's own
configuration class (``stic_plugin.commands.config``), so every key of the command, present or future, is
accepted in the form's "Advanced" box and refused with the command's own message when wrong.

The form has, per action, the fields of ``ACTION_FIELDS`` (some stand for one of two keys, chosen by the
value: a folder of images or a list file, a dataset name or a LLaVA file), the fields every generator shares
(``SHARED_FIELDS``), and the model, template and adapters of the web UI's top bar.
"""

import dataclasses
import shlex
import typing
from pathlib import Path

ACTIONS = ("pref", "infuse", "dar")

# action -> the fields of its form, besides SHARED_FIELDS. A field is a key of the command's configuration,
# or one of PSEUDO_FIELDS, which set one key or another.
ACTION_FIELDS = {
    "pref": ("images", "dataset_dir", "dataset_name", "max_samples"),
    "infuse": ("source", "image_folder", "dataset_dir", "dataset_name", "num_samples"),
    "dar": ("source", "image_folder", "dataset_dir", "predictions_name", "num_samples", "metric"),
}
SHARED_FIELDS = ("batch_size", "max_new_tokens", "temperature", "engine")
PSEUDO_FIELDS = ("images", "source", "image_folder")
# the keys each pseudo-field may set (the form does not offer them again in the "Advanced" list)
PSEUDO_KEYS = {
    "images": ("image_dir", "image_list"),
    "source": ("dataset", "llava_file"),
    "image_folder": ("image_folder", "media_dir"),
}
MODEL_KEYS = ("model_name_or_path", "adapter_name_or_path", "template")
LLAVA_FILE_SUFFIXES = (".json", ".jsonl")


def config_class(action: str):
    """The configuration dataclass of ``stic-cli ACTION``."""
    from ..commands import cli

    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    return cli.config_class(action)


def option_fields(action: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_class(action))}


def default_of(action: str, key: str):
    option = option_fields(action)[key]
    if option.default is not dataclasses.MISSING:
        return option.default
    if option.default_factory is not dataclasses.MISSING:
        return option.default_factory()
    return None


def help_of(action: str, key: str) -> str:
    """The help text of a key of ``stic-cli ACTION``, as ``stic-cli ACTION --help`` shows it."""
    option = option_fields(action).get(key)
    return option.metadata.get("help", "") if option is not None else ""


def choices_of(action: str, key: str) -> tuple | None:
    """The values a key takes: its ``Literal``'s, or those its option lists (None for other keys)."""
    choices = option_fields(action)[key].metadata.get("choices")
    if choices is not None:
        return tuple(choices())
    annotation = typing.get_type_hints(config_class(action))[key]
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def kind_of(action: str, key: str) -> str:
    """How the form shows a key: "choice", "int", "float", "bool" or "text"."""
    if key in PSEUDO_FIELDS:
        return "text"
    if choices_of(action, key) is not None:
        return "choice"
    annotation = typing.get_type_hints(config_class(action))[key]
    options = typing.get_args(annotation) or (annotation,)
    if type(None) in options:
        return "text"  # a number that may be left empty (null: "all", "unset")
    for kind, python_type in (("bool", bool), ("int", int), ("float", float)):
        if python_type in options:
            return kind
    return "text"


def advanced_keys(action: str) -> list[str]:
    """The keys of ``stic-cli ACTION`` that only the "Advanced" box sets."""
    in_form = set(MODEL_KEYS) | set(SHARED_FIELDS)
    for name in ACTION_FIELDS[action]:
        in_form.update(PSEUDO_KEYS.get(name, (name,)))
    return [key for key in option_fields(action) if key not in in_form]


def format_value(value) -> str:
    """A value as stic-cli reads it back from ``key=value`` (YAML for all but text keys)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def field_overrides(action: str, fields: dict) -> list[tuple[str, object]]:
    """(key, value) pairs for the form's fields (those in ``fields``). An empty field leaves out a key whose
    default is unset, and sets the others to null, for the command to read as it does (``num_samples``: all;
    ``dataset_dir``: an error that names it)."""
    pairs = []
    source_key = None
    for name in ACTION_FIELDS[action] + SHARED_FIELDS:
        if name not in fields:
            continue
        value = fields[name]
        if _is_empty(value):
            if name not in PSEUDO_FIELDS and default_of(action, name) is not None:
                pairs.append((name, None))
            continue
        if isinstance(value, str):
            value = value.strip()
        if name == "images":
            key = "image_list" if Path(value).is_file() else "image_dir"
        elif name == "source":
            is_file = value.lower().endswith(LLAVA_FILE_SUFFIXES) or Path(value).is_file()
            key = source_key = "llava_file" if is_file else "dataset"
        elif name == "image_folder":
            key = "media_dir" if source_key == "dataset" else "image_folder"
        else:
            key = name
        pairs.append((key, value))
    return pairs


def parse_advanced(text: str) -> list[tuple[str, str]]:
    """The "Advanced" box: one ``key=value`` a line; blank lines and lines starting with '#' are skipped."""
    pairs = []
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"Advanced, line {number}: expected key=value, got {line!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def overrides(action: str, model: dict, fields: dict, advanced: str) -> list[str]:
    """The ``key=value`` arguments of the command: the top bar's model, the form's fields, then the "Advanced"
    box, which wins over both (a key it sets is left out of the others)."""
    extra = parse_advanced(advanced)
    extra_keys = {key for key, _ in extra}
    pairs = [(key, model[key]) for key in MODEL_KEYS if not _is_empty(model.get(key))]
    pairs += field_overrides(action, fields)
    out = [f"{key}={format_value(value)}" for key, value in pairs if key not in extra_keys]
    return out + [f"{key}={value}" for key, value in extra]


def check(action: str, args: list[str]):
    """The command's configuration built from ``args`` exactly as ``stic-cli`` builds it, and checked against
    its output as the run checks it (another configuration's output, an entry of other data); its ValueError
    (the command's own message) when stic-cli would refuse it."""
    import importlib

    from ..commands.cli import COMMANDS
    from ..commands.config import load_config

    config = load_config(config_class(action), None, args)
    preflight = getattr(importlib.import_module(COMMANDS[action][2]), "preflight", None)
    if preflight is not None:
        preflight(config)
    return config


def output_location(config) -> tuple[str, str]:
    """(folder, name) of what a command writes: the dataset, or dar's predictions."""
    name = getattr(config, "dataset_name", None) or config.predictions_name
    return config.dataset_dir, name


def preview(program: str, action: str, args: list[str]) -> str:
    """The command line as a shell reads it, one key a line."""
    lines = [f"{program} {action}"] + [shlex.quote(arg) for arg in args]
    return " \\\n    ".join(lines)
