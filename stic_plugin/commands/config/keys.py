"""How a command's keys are declared, read and shown: ``option`` (a key: default, help text, choices),
``load_config`` (a YAML file and ``key=value`` overrides into a command's configuration, refusing an unknown key
with the closest known one, and reading a renamed key under its new name with a warning), ``describe_keys``
(the keys of ``--help``). Each command's keys are one dataclass in its own module of this package.
"""

import dataclasses
import difflib
import logging
import math
import types
import typing
from dataclasses import MISSING, field
from pathlib import Path

logger = logging.getLogger("stic_plugin")

# old key -> its new name: the old one keeps working, with a warning
RENAMED = {"max_image_pixels": "max_file_pixels"}


def option(default=MISSING, help: str = "", choices=None, **kwargs):  # noqa: A002 - mirrors dataclasses.field
    """A key: its default and help text; ``choices``: a function giving the values it takes, where they are known
    only at run time (the engines, registered ones included)."""
    metadata = {"help": help, **({"choices": choices} if choices else {})}
    if isinstance(default, (dict, list)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def engine_choices() -> tuple:
    from ...generation.base import engine_names

    return tuple(engine_names())


def _coerce(name: str, value, annotation):
    """Check a YAML or command-line value against the annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for candidate in options:
            if candidate is type(None):
                continue
            try:
                return _coerce(name, value, candidate)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"`{name}`: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(
                f"`{name}` must be one of {', '.join(map(str, typing.get_args(annotation)))}; got {value!r}"
            )
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` must be true or false; got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` must be a whole number; got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number; got {value!r}")
            return float(value)
        raise ValueError(f"`{name}` must be a number; got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"`{name}` must be text; got {value!r}")
    if origin is list or annotation is list:
        if isinstance(value, list):
            return list(_finite(name, value))
        raise ValueError(f"`{name}` must be a list, as [1, 2, 3]; got {value!r}")
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return dict(_finite(name, value))
        raise ValueError(f"`{name}` must be a mapping (key: value); got {value!r}")
    return _finite(name, value)


def _finite(name: str, value):
    """``value``, refused if a number in it, at any depth, is not finite (YAML's .nan, .inf): no key takes one,
    and a NaN would not even equal itself in the output's configuration."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must hold finite numbers only; got {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(name, key)
            _finite(name, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _finite(name, item)
    return value


def _accepts_text(annotation) -> bool:
    if annotation is str:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and str in typing.get_args(annotation)


def parse_override(text: str, annotation=None) -> tuple[str, object]:
    """``key=value`` from the command line: text keys take the value as written, others are read as YAML."""
    import yaml

    if "=" not in text:
        raise ValueError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if raw.strip() in ("", "null", "~"):
        return key, None
    if annotation is not None and _accepts_text(annotation):
        return key, raw  # "Describe it. Note: be brief" stays text, not a YAML mapping
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"`{key}`: cannot read the value {raw!r} ({err.problem or err})") from err


def load_config(cls, config_path: str | None = None, overrides: list[str] = ()):
    """Build ``cls`` from a YAML file and ``key=value`` overrides (the overrides win)."""
    import yaml

    values = {}
    if config_path:
        try:
            loaded = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ValueError(f"cannot read the configuration {config_path}: {err}") from err
        except yaml.YAMLError as err:
            raise ValueError(f"{config_path} is not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{config_path} must hold `key: value` lines")
        values.update(loaded or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        key, value = parse_override(override, hints.get(RENAMED.get(key, key)))
        values[key] = value
    for old, new in RENAMED.items():
        if old in values and new in known:
            logger.warning("`%s` is now `%s`: the old name still works", old, new, extra={"console": True})
            values.setdefault(new, values.pop(old))
            values.pop(old, None)
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"Unknown key `{key}`.{hint} `stic-cli {cls.command} --help` lists the keys.")
    missing = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING and n not in values]
    if missing:
        raise ValueError(f"Missing required key(s): {', '.join(f'`{n}`' for n in missing)}.")
    return cls(**{key: _coerce(key, value, hints[key]) for key, value in values.items()})


def _as_yaml(value) -> str:
    """A default as it is written in a YAML file or as key=value."""
    import json

    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value).replace('"', "")
    return str(value)


def describe_keys(cls) -> str:
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f"default: {_as_yaml(f.default)}"
        elif f.default_factory is not MISSING:
            default = f"default: {_as_yaml(f.default_factory())}"
        else:
            default = "required"
        lines.append(f"  {f.name}  ({default})\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


# The endings of an output's own files beside its folder (NAME.stic/, NAME.stats.json, NAME.lengths.png) and of
# dataset_info.json: an output named with one would be taken for another output's files, or write into them.
RESERVED_ENDINGS = (".stic", ".json", ".png")


def check_plain_name(key: str, value: str) -> None:
    """An output name becomes a folder and a dataset_info entry beside the output's own files: no path, no
    hidden name, none of their endings."""
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"`{key}` must be a plain name; got {value!r}")
    if value.lower().endswith(RESERVED_ENDINGS):
        raise ValueError(
            f"`{key}` must not end in {', '.join(RESERVED_ENDINGS)}: an output keeps its own files under those "
            f"names (NAME.stic/, NAME.stats.json, NAME.*.png, dataset_info.json); got {value!r}"
        )


def check_engine(engine: str) -> None:
    if engine not in engine_choices():
        raise ValueError(f"`engine` must be one of {', '.join(engine_choices())}; got {engine!r}")
