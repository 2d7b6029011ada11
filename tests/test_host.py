"""Every private name of a host library that the package touches is in ``stic_plugin.host``'s list, each listed
one is still used, each target resolves on the installed hosts, and the host check warns when they differ."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stic_plugin import host, patches

PACKAGE = Path(host.__file__).resolve().parent
OWN: set[str] = set()  # names the package defines itself and reads on its own objects (none so far)


def private_names_used() -> set[tuple[str, str]]:
    """(private name, module) for every ``x._name`` (x not self or cls), ``getattr(x, "_name")``, ``from m import
    _name`` of another package, and private name in a patch's list of needs."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    found.add((node.attr, module))
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr"):
                name = node.args[1] if len(node.args) > 1 else None
                if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value.startswith("_"):
                    if not name.value.startswith("__"):
                        found.add((name.value, module))
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.add((alias.name, module))
    for patch in patches.PATCHES:
        for need in patch.needs:
            for part in need.rpartition(":")[2].split("."):
                if part.startswith("_") and not part.startswith("__"):
                    found.add((part, "patches"))
    return {(name, module) for name, module in found if name not in OWN}


def listed() -> set[tuple[str, str]]:
    return {(internal.name, where) for internal in host.INTERNALS for where in internal.where}


def test_every_private_name_the_package_touches_is_listed():
    missing = private_names_used() - listed()
    assert not missing, f"private host names not in stic_plugin/host.py: {sorted(missing)}"


def test_every_listed_private_name_is_still_used():
    private = {(name, where) for name, where in listed() if name.startswith("_") and not name.startswith("__")}
    stale = private - private_names_used()
    assert not stale, f"listed in stic_plugin/host.py but no longer used there: {sorted(stale)}"


@pytest.mark.slow
def test_every_target_resolves_on_the_installed_hosts():
    # In a fresh interpreter: resolving imports the web UI's modules, which other tests check are not imported.
    check = "from stic_plugin import host; print(host.unresolved(imported_only=False), host.differing_versions())"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[] {}"  # the versions installed here are the ones checked


def test_the_check_finds_what_is_gone(monkeypatch):
    gone = host.Internal("transformers", "transformers:NoSuchThing._private", "_private", "a test", ("x",))
    monkeypatch.setattr(host, "INTERNALS", (gone,))
    assert host.unresolved(imported_only=False) == ["transformers:NoSuchThing._private"]
    monkeypatch.setattr(host, "CHECKED", {**host.CHECKED, "transformers": "4.0.0"})
    warning = patches.internals_warning()
    assert "transformers 4.0.0 (found 5.6.0)" in warning and "transformers:NoSuchThing._private" in warning


def test_the_check_is_quiet_on_the_checked_versions():
    assert patches.internals_warning() is None


@pytest.mark.parametrize("name", ["host"])
def test_the_list_imports_nothing_heavy(name):
    top = [
        n for n in ast.parse((PACKAGE / f"{name}.py").read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    assert {alias.name for n in top for alias in n.names} <= {"sys", "namedtuple"}
