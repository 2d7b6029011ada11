"""The package's imports flow one way and form no cycle (every import, inside functions too, read with ast).

commands -> pipeline -> data, generation, method -> shared (constants, assets)
method (what STIC does) -> generation.base (the request and result types), data.formats;  data -> method.keys
commands -> evaluation -> pipeline and below;  train -> shared, data.formats
webui -> commands and below (only the seam imports it)
seam (stic_plugin, _autoload, patches) -> train, data.formats, webui
tools (the demo and its toy world, the bench, the fixtures) -> commands and below; nothing imports tools but the
command line, which names their modules to load them lazily
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "stic_plugin"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
SHARED = {"constants", "assets", "host", "model_check", "lifetime", "heap"}
SEAM = {"", "_autoload", "patches"}  # "" is the package itself (apply, revert, applied)
# group: what its modules may import (groups, or single modules as "group.module")
ALLOWED = {
    "shared": {"shared"},
    "generation": {"generation", "shared"},
    "method": {"method", "generation.base", "data.formats", "shared"},
    "data": {"data", "method.keys", "shared"},
    "pipeline": {"pipeline", "data", "generation", "method", "shared"},
    "train": {"train", "shared", "data.formats"},
    "evaluation": {"evaluation", "pipeline", "method", "data", "generation", "shared"},
    "commands": {"commands", "evaluation", "pipeline", "method", "data", "generation", "train", "shared"},
    "webui": {"webui", "commands", "pipeline", "method", "data", "generation", "train", "shared"},
    "tools": {"tools", "commands", "evaluation", "pipeline", "method", "data", "generation", "train", "shared"},
    "seam": {"seam", "train", "data.formats", "webui", "shared"},
}


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it ("" for the package, "data.formats", ...)."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def group(name: str) -> str:
    first = name.split(".")[0]
    if name in SEAM:
        return "seam"
    return "shared" if first in SHARED else first


def imports_of(name: str, path: Path, known) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def relative(dotted: str) -> str | None:  # "stic_plugin.pipeline.run" -> "pipeline.run"; None outside the package
        if dotted == PACKAGE:
            return ""
        return dotted[len(PACKAGE) + 1 :] if dotted.startswith(PACKAGE + ".") else None

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(relative(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([PACKAGE, *parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:  # "from x import y": the module x.y, or else the module x
                module = relative(f"{base}.{alias.name}")
                found.add(module if module in known else relative(base))
    return {module for module in found if module is not None and module in known}


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imports_of(name, path, known) - {name} for name, path in known.items()}


def violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for name, targets in sorted(graph.items()):
        allowed = ALLOWED[group(name)]
        for target in sorted(targets):
            if group(target) not in allowed and target not in allowed:
                wrong.append(f"{name or PACKAGE} ({group(name)}) imports {target or PACKAGE} ({group(target)})")
    return wrong


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from its first module)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_imports_flow_one_way():
    graph = import_graph()
    assert graph["commands.pref"] >= {"commands.config", "pipeline.run", "generation.base", "method.pairs", "assets"}
    assert graph["webui.command_line"] >= {"commands.config", "commands.cli"}
    assert graph["patches"] >= {"webui.train_tab", "webui.data_tab", "webui.locales"}
    assert graph["commands.eval"] >= {"evaluation", "evaluation.benchmarks", "evaluation.harness"}
    assert graph["evaluation.model"] >= {
        "pipeline.describer",
        "method.dar",
        "generation.base",
    }  # dar's code, not a copy
    assert violations(graph) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_see_what_they_look_for():
    graph = {"generation.base": {"pipeline.run"}, "pipeline.run": {"generation.base"}, "train.options": {"constants"}}
    assert violations(graph) == ["generation.base (generation) imports pipeline.run (pipeline)"]
    assert cycles(graph) == [["generation.base", "pipeline.run", "generation.base"]]
    assert violations({"data.formats": {"patches"}}) == ["data.formats (data) imports patches (seam)"]
    assert violations({"commands.config": {"webui.command_line"}}) == [
        "commands.config (commands) imports webui.command_line (webui)"
    ]
    assert violations({"evaluation.model": {"commands.dar"}}) == [
        "evaluation.model (evaluation) imports commands.dar (commands)"
    ]


@pytest.mark.parametrize("name", ["", "_autoload", "constants", "patches"], ids=lambda name: name or PACKAGE)
def test_what_runs_at_interpreter_start_imports_nothing_heavy_at_module_level(name):
    """stic_plugin.pth imports these in every interpreter: only the standard library at their top level."""
    path = module_names()[name]
    top_level = [node for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = {alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in top_level if isinstance(node, ast.ImportFrom) and not node.level}
    assert modules <= {"importlib.util", "sys", "threading", "collections", "os"}, modules
