"""The paper's Table 1 from lmms-eval's results files: one row per model and mode, one column per task, and
the difference of each run from the first. Pure functions of the files' JSON."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .benchmarks import BY_TASK, PAPER_TASKS


@dataclass
class Run:
    label: str
    scores: dict  # task -> percent (paper's tasks) or lmms-eval's value (other tasks); None: not scored
    path: Path


def find_results(path: str | Path) -> Path:
    """A results file, or the newest ``*_results.json`` under a folder (a stic-cli eval run's folder)."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.rglob("*_results.json"), key=lambda p: p.stat().st_mtime) if path.is_dir() else []
    if not found:
        raise ValueError(f"{path}: no lmms-eval results file (*_results.json) there")
    return found[-1]


def score(task: str, metrics: dict) -> float | None:
    """The number the table shows: the paper's metric in percent, or for another task its first metric."""
    benchmark = BY_TASK.get(task)
    if benchmark is not None:
        value = metrics.get(benchmark.metric)
        return value * benchmark.scale if isinstance(value, (int, float)) else None
    for key, value in metrics.items():
        if "stderr" not in key and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def load_run(path: str | Path) -> Run:
    file = find_results(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the results file {file}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{file} is not an lmms-eval results file (no `results`)")
    info = data.get("stic") or {}
    scores = {task: score(task, metrics) for task, metrics in data["results"].items()}
    for task in list(info.get("skipped", {})) + list(info.get("failed", {})):
        scores.setdefault(task, None)
    config = data.get("config") or {}
    label = info.get("run_name") or f"{config.get('model', '?')} ({file.parent.name})"
    return Run(label, scores, file)


def _columns(runs: list[Run]) -> list[str]:
    tasks = []
    for run in runs:
        tasks.extend(task for task in run.scores if task not in tasks)
    return [task for task in PAPER_TASKS if task in tasks] + [task for task in tasks if task not in PAPER_TASKS]


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def table(runs: list[Run]) -> str:
    """Rows of runs, columns of tasks (the paper's order first), an average over the paper's tasks that every
    run scored (other tasks' scores are not percents), and for each run after the first its difference from
    the first."""
    columns = _columns(runs)
    common = [task for task in columns if task in BY_TASK and all(run.scores.get(task) is not None for run in runs)]
    average = f"Avg({len(common)})" if len(common) < len(columns) else "Avg"
    headers = ["run"] + [BY_TASK[task].column if task in BY_TASK else task for task in columns] + [average]

    def values(run: Run) -> list[float | None]:
        row = [run.scores.get(task) for task in columns]
        mean = sum(run.scores[task] for task in common) / len(common) if common else None
        return row + [mean]

    rows = [[run.label] + [_cell(v) for v in values(run)] for run in runs]
    first = values(runs[0])
    for run in runs[1:]:
        differences = [None if a is None or b is None else b - a for a, b in zip(first, values(run))]
        rows.append([f"{run.label} - {runs[0].label}"] + [_cell(v, signed=True) for v in differences])
    widths = [max(len(row[i]) for row in [headers] + rows) for i in range(len(headers))]
    lines = [
        "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width) for i, (text, width) in enumerate(zip(row, widths))
        )
        for row in [headers] + rows
    ]
    return "\n".join(lines)
