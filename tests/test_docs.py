"""The documentation holds what the code says: every key with its default and help text (``docs/keys.md``,
generated), and every link between the documents leads to a file."""

import re

from helpers import REPO


def test_the_key_reference_is_the_one_the_code_generates():
    from stic_plugin.tools.keys_reference import reference

    committed = (REPO / "docs" / "keys.md").read_text(encoding="utf-8")
    assert committed == reference(), (
        "docs/keys.md is out of date: python -m stic_plugin.tools.keys_reference > docs/keys.md"
    )


def test_every_key_has_a_row_with_its_help_text():
    import dataclasses

    from stic_plugin.commands.cli import COMMANDS, config_class
    from stic_plugin.train.options import stic_option_names

    text = (REPO / "docs" / "keys.md").read_text(encoding="utf-8")
    for name in stic_option_names():
        assert f"| `{name}` |" in text.split("## `stic-cli", 1)[0]
    for name in COMMANDS:
        section = text.split(f"## `stic-cli {name}`", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(config_class(name)):
            row = next((line for line in section.splitlines() if line.startswith(f"| `{f.name}` |")), None)
            assert row is not None, f"{name}: {f.name}"
            assert " ".join(f.metadata["help"].split()) in row


def test_every_relative_link_leads_to_a_file():
    documents = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for document in documents:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (document.parent / target).exists(), f"{document.relative_to(REPO)} links to {target}"


def test_the_readme_is_one_page():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
