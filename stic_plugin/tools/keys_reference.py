"""``docs/keys.md``: every key of every command and of ``stage: stic_dpo``, generated from the code (the keys'
dataclasses and their help texts), so that it cannot drift from ``stic-cli COMMAND --help``.

Run: ``python -m stic_plugin.tools.keys_reference > docs/keys.md`` (``tests/test_docs.py`` checks that the
committed file is what this prints).
"""

import dataclasses
from pathlib import Path

HEADER = """# Every key

Generated from the code by `python -m stic_plugin.tools.keys_reference > docs/keys.md` (a test checks it):
each command's keys as `stic-cli COMMAND --help` lists them. A key goes in the YAML file, or on the command
line as `key=value` (which wins). Renamed keys still work under their former names, with a warning:
{renamed}.
"""


def shown(value, root: Path) -> str:
    """A default as the table writes it (a shipped file by its path in the repository)."""
    if value is dataclasses.MISSING:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "`" + ", ".join(f"{key}: {item}" for key, item in value.items()) + "`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(item) for item in value) + "]`"
    if isinstance(value, str) and value.startswith(str(root)):
        return f"`{Path(value).relative_to(root).as_posix()}`"
    return f"`{value}`"


def key_table(cls, root: Path) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        meaning = " ".join(f.metadata.get("help", "").split())
        lines.append(f"| `{f.name}` | {shown(default, root)} | {meaning} |")
    return "\n".join(lines)


def reference() -> str:
    from ..assets import data_templates_dir
    from ..commands.cli import COMMANDS, config_class
    from ..commands.config import RENAMED
    from ..train.options import SticArguments

    # a shipped file's default path is shown from the folder that holds data_templates/ (the repository or
    # the installed package), the same on every machine
    root = data_templates_dir().parent
    renamed = ", ".join(f"`{old}` is now `{new}`" for old, new in RENAMED.items())
    parts = [HEADER.format(renamed=renamed).rstrip()]
    parts += [
        "## `stage: stic_dpo` (llamafactory-cli train)",
        "The STIC options of the training stage, beside LLaMA-Factory's own keys (`pref_beta`, the DPO beta, "
        "defaults to 0.1).",
        key_table(SticArguments, root),
    ]
    for name in COMMANDS:
        cls = config_class(name)
        summary = " ".join((cls.__doc__ or "").split()).replace("``", "`")
        parts += [f"## `stic-cli {name}`", summary, key_table(cls, root)]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
