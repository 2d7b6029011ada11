"""lmms-eval's evaluator run for ``stic-cli eval``: one task at a time on one loaded model, so that a task whose
data cannot be read or whose scoring fails is reported while the others finish; then lmms-eval's own files,
written by its ``EvaluationTracker`` as its command line writes them (``<date>_results.json`` and one
``<date>_samples_<task>.jsonl`` per task).

Tasks come from lmms-eval's own task folder, or first from ``task_dir``: a task defined there replaces
lmms-eval's task of the same name (a local copy of a benchmark's data, for example).
"""

import contextlib
import difflib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

logger = logging.getLogger(__name__)

_MANAGERS: dict = {}  # (folder or None for lmms-eval's own tasks) -> TaskManager: indexing takes seconds


def task_manager(folder: str | None):
    """lmms-eval's task index of ``folder`` alone, or of lmms-eval's own tasks (None); built once per process."""
    from lmms_eval.tasks import TaskManager

    from . import MODEL_ID

    key = str(Path(folder).resolve()) if folder else None
    if key not in _MANAGERS:
        if key is None:
            _MANAGERS[key] = TaskManager("WARNING", model_name=MODEL_ID)
        else:
            _MANAGERS[key] = TaskManager("WARNING", include_path=key, include_defaults=False, model_name=MODEL_ID)
    return _MANAGERS[key]


def managers_for(tasks: list[str], task_dir: str | None) -> dict:
    """task -> the TaskManager that defines it (``task_dir`` first); unknown names stop here, before any work."""
    local = task_manager(task_dir) if task_dir else None
    chosen = {task: local for task in tasks if local is not None and task in local.all_tasks}
    rest = [task for task in tasks if task not in chosen]
    if rest:
        own = task_manager(None)
        unknown = [task for task in rest if task not in own.all_tasks]
        if unknown:
            known = own.all_tasks + (local.all_tasks if local is not None else [])
            hints = []
            for task in unknown:
                close = difflib.get_close_matches(task, known, n=3)
                hints.append(f"`{task}`" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            where = f" nor in {task_dir}" if task_dir else ""
            raise ValueError(f"unknown lmms-eval task(s), not in lmms-eval 0.7.3's tasks{where}: {'; '.join(hints)}")
        chosen.update({task: own for task in rest})
    return chosen


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub, where lmms-eval's tasks read their data, cannot be reached from here, or None
    when it can: ``HF_HUB_OFFLINE`` set, or no connection to the host of ``HF_ENDPOINT`` within ``timeout``."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host} cannot be reached from this machine ({err})"
    return None


def output_type(manager, task: str) -> str | None:
    """The task's output_type from its YAML (None for a group, whose tasks may differ)."""
    from lmms_eval.utils import load_yaml_config

    entry = manager.task_index[task]
    if entry.get("type") != "task" or entry.get("yaml_path", -1) == -1:
        return None
    return load_yaml_config(entry["yaml_path"], mode="simple").get("output_type")


def merge(into: dict, result: dict) -> None:
    """One task's results into the run's: mappings (results, configs, versions, n-samples, ...) joined."""
    for key, value in result.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        else:
            into[key] = value


@dataclass
class Outcome:
    results: dict = field(default_factory=dict)  # lmms-eval's results of the tasks that finished (no samples)
    results_file: Path | None = None
    samples_files: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # task -> why it stopped


def evaluate(
    model, model_args: str, managers: dict, limit, output_path: Path, run_info: dict, verbose: bool = False
) -> Outcome:
    """Every task of ``managers`` on ``model`` (a loaded lmms-eval model), then lmms-eval's files in
    ``output_path``. ``run_info`` is kept in the results file under "stic" (run name, mode, skipped tasks)."""
    from lmms_eval import evaluator
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    outcome = Outcome()
    tracker = EvaluationTracker(output_path=str(output_path))
    date = get_datetime_str()
    samples: dict[str, list] = {}
    # What tasks read of lmms-eval's command line: output_path puts their submission files (TextVQA's, MMBench's)
    # in the run's folder, not the working directory; the documents reach scoring with their images, as when
    # lmms-eval is called without a command line.
    cli_args = SimpleNamespace(output_path=str(output_path), process_with_media=True)
    with _lmms_eval_logging(output_path / "lmms-eval.log", verbose):
        for task, manager in managers.items():
            try:
                result = evaluator.simple_evaluate(
                    model=model,
                    model_args=model_args,
                    tasks=[task],
                    limit=limit,
                    log_samples=True,
                    evaluation_tracker=tracker,
                    task_manager=manager,
                    verbosity="INFO" if verbose else "WARNING",
                    datetime_str=date,
                    cli_args=cli_args,
                )
            except Exception as err:  # this task's data, prompts or scoring: reported, the other tasks go on
                outcome.failed[task] = f"{type(err).__name__}: {err}"
                logger.warning("%s failed: %s", task, outcome.failed[task], exc_info=verbose)
                continue
            samples.update(result.pop("samples", {}))
            merge(outcome.results, result)
        if not outcome.results:
            return outcome
        outcome.results["stic"] = {**run_info, "failed": outcome.failed}
        tracker.save_results_aggregated(results=outcome.results, samples=samples, datetime_str=date)
        folder = output_path / tracker.general_config_tracker.model_name_sanitized
        for task in outcome.results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
            outcome.samples_files[task] = folder / f"{tracker.date_id}_samples_{task}.jsonl"
    outcome.results_file = folder / f"{tracker.date_id}_results.json"
    if not outcome.results_file.is_file():  # the tracker logs a failed write and goes on
        raise OSError(f"lmms-eval could not write {outcome.results_file} (see {output_path / 'lmms-eval.log'})")
    return outcome


@contextlib.contextmanager
def _lmms_eval_logging(log_file: Path, verbose: bool):
    """lmms-eval's own log (loguru) into the run's folder as well; on the console too with ``verbose``."""
    from loguru import logger as eval_logger

    log_file.parent.mkdir(parents=True, exist_ok=True)
    sinks = [eval_logger.add(log_file, level="INFO")]
    if verbose:
        sinks.append(eval_logger.add(sys.stderr, level="INFO"))
    try:
        yield
    finally:
        for sink in sinks:
            eval_logger.remove(sink)
