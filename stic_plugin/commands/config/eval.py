"""The keys of ``stic-cli eval``."""

from dataclasses import dataclass
from pathlib import Path

from ...evaluation.benchmarks import PAPER_TASKS
from .groups import DescriptionKeys, EngineKeys, InfusionKeys, ModelKeys
from .keys import check_plain_name, option


@dataclass(kw_only=True)
class EvalConfig(DescriptionKeys, InfusionKeys, EngineKeys, ModelKeys):
    """``stic-cli eval``: the paper's benchmarks (Table 1) through lmms-eval, on a model with or without its
    STIC adapter, answering directly or by describe-and-respond."""

    command = "eval"

    dar: bool = option(
        False,
        help="Describe the image first and answer with the description infused, as `stic-cli dar` does "
        "(false: answer directly).",
    )
    tasks: list = option(
        PAPER_TASKS,
        help="lmms-eval tasks to run; the default is the paper's seven. A task scored by an API judge is "
        "skipped, naming the missing variable, when its credentials are not set.",
    )
    limit: int | float | None = option(
        None,
        help="At most this many questions per task (below 1: this fraction), as lmms-eval's --limit: for trial "
        "runs, the scores are not the benchmark's.",
    )
    output_dir: str = option("eval_output", help="lmms-eval's result files go to `output_dir`/`run_name`/.")
    run_name: str | None = option(
        None, help="The run's row in the table and its folder; unset: named after the model, adapter and mode."
    )
    task_dir: str | None = option(
        None,
        help="Folder of lmms-eval task YAML files, searched before lmms-eval's own: a task defined there "
        "replaces lmms-eval's task of the same name (a local copy of a benchmark's data, for example).",
    )
    seed: int = option(42, help="Seed of the answers' sampling, for tasks that sample (the paper's decode greedily).")
    verbose: bool = option(
        False,
        help="Show every library's messages on the console; by default it shows the progress bars, the warnings "
        "that matter and the summary, and the rest goes to the log files in the run's folder.",
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.tasks or not all(isinstance(task, str) and task for task in self.tasks):
            raise ValueError(f"`tasks` must be a list of lmms-eval task names; got {self.tasks!r}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"`tasks` names a task twice: {self.tasks!r}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"`limit` must be above 0 (or null for every question); got {self.limit}")
        if self.run_name is not None:
            check_plain_name("run_name", self.run_name)

    @property
    def name(self) -> str:
        """The run's name: ``run_name``, or the model's folder, the adapters' folders and the mode."""
        if self.run_name:
            return self.run_name
        paths = [self.model_name_or_path] + [p for p in (self.adapter_name_or_path or "").split(",") if p.strip()]
        return "+".join(Path(p.strip().rstrip("/")).name for p in paths) + ("-dar" if self.dar else "")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def log_file(self) -> Path:
        return self.run_dir / "log.txt"
