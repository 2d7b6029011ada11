"""``stic-cli demo``: STIC in the toy world, on the CPU, with nothing downloaded.

Run: ``stic-cli demo`` (or ``make demo``). It draws the world (``stic_plugin/toyworld``), takes the shipped
base model of seed 0 (``retrain_base=true`` trains it from scratch with ``llamafactory-cli train``), runs STIC
with the shipped commands (``pref``, ``stic_dpo``, ``infuse``, stage-2 ``sft``, ``dar``), and prints the base
model against the STIC model, scored against the ground truth: the seed-0 rows of the committed report
(``docs/toy-world/report.md``), which it checks. ``stic-cli demo full=true`` runs the whole comparison of
``docs/toy-world/protocol.md`` and writes the report. Finished steps are reused by a rerun (``fresh=true``
starts over).
"""

import json
import shutil
import time
import typing
from dataclasses import dataclass
from pathlib import Path

from ..commands.config import option
from .toyworld import comparison, report
from .toyworld.data import DEMO, SMOKE
from .toyworld.experiment import DEMO_ROWS, ROWS, Experiment, shipped_base_models


@dataclass
class DemoConfig:
    """``stic-cli demo``: STIC in a toy world where a model really sees: base model against STIC, on the CPU."""

    command = "demo"

    output_dir: str = option("demo_output", help="Everything the demo writes goes here; finished steps are reused.")
    full: bool = option(
        False,
        help="The whole comparison of docs/toy-world/protocol.md: learning rates chosen on the validation split, "
        "every row, each seed of `seeds`; writes report.md, report.json and the plots (75 minutes measured on 2 CPU "
        "cores for five seeds, one of their base models trained within it).",
    )
    seeds: list = option(
        [0, 1, 2, 3, 4], help="Seeds of the full comparison (one base model each); the demo uses the first."
    )
    scale: typing.Literal["demo", "smoke"] = option(
        "demo", help="demo: the world and training the report measures; smoke: a few pictures and steps (the plumbing)."
    )
    retrain_base: bool = option(
        False,
        help="Train the base models from scratch (18 to 31 minutes each, measured two at a time on 2 CPU cores) "
        "instead of using the shipped ones; a base "
        "model trained on another machine or with another thread count is another model.",
    )
    workers: int = option(2, help="Commands run side by side (each on one thread); the numbers do not depend on it.")
    fresh: bool = option(False, help="Run every step again, the world and the base model included.")

    def __post_init__(self):
        if not self.seeds or any(not isinstance(seed, int) or isinstance(seed, bool) for seed in self.seeds):
            raise ValueError(f"`seeds` must be a list of whole numbers; got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must not repeat a seed; got {self.seeds!r}")
        if self.workers < 1:
            raise ValueError(f"`workers` must be at least 1; got {self.workers}")


# The demo's table as the committed report has it (written by `stic-cli demo full=true` with the shipped base
# models); the demo says whether it printed exactly this.
EXPECTED_TABLE = Path(__file__).resolve().parent / "toyworld" / "demo_table.txt"


def run_demo(cfg: DemoConfig) -> int:
    started = time.time()
    root = Path(cfg.output_dir).absolute()
    seeds = tuple(cfg.seeds) if cfg.full else tuple(cfg.seeds[:1])
    smoke = cfg.scale == "smoke"
    experiment = Experiment(
        root, SMOKE if smoke else DEMO, seeds=seeds, retrain_base=cfg.retrain_base or smoke, workers=cfg.workers
    )
    if cfg.fresh:
        shutil.rmtree(experiment.steps.stamps, ignore_errors=True)
    what = "the full comparison" if cfg.full else "the base model against STIC"
    base = "trained from scratch" if experiment.retrain_base else f"shipped in {shipped_base_models()}"
    print(
        f"STIC in the toy world: {what}, seed(s) {', '.join(map(str, seeds))}; base model(s) {base}; "
        f"everything goes to {root}",
        flush=True,
    )
    experiment.build_world()
    rows = tuple(row.name for row in ROWS) if cfg.full else DEMO_ROWS
    outcome = comparison.run(experiment, cfg.full, rows)
    result = {
        "command": "stic-cli demo"
        + (" full=true" if cfg.full else "")
        + (" scale=smoke" if smoke else "")
        + (" retrain_base=true" if cfg.retrain_base else ""),
        "seeds": list(seeds),
        "scale": vars(experiment.scale),
        "learning_rates": outcome["learning_rates"],
        "sweep": outcome["sweep"],
        "step_seconds": {name: round(seconds, 1) for name, seconds in sorted(experiment.steps.seconds.items())},
        "wall_seconds": round(time.time() - started, 1),
        "machine": report.machine(),
        "base_models": {
            str(seed): report.file_hash(Path(experiment.base_model(seed)) / "model.safetensors") for seed in seeds
        },
        "rows": comparison.without_pictures(outcome["rows"]),
    }
    if cfg.full:
        result["summaries"] = comparison.summarize(outcome["rows"])
        result["contrasts"] = report.contrasts(outcome["rows"])
    (root / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    demo_rows = {name: outcome["rows"][name] for name in DEMO_ROWS}
    table = report.console_table(demo_rows)
    report.write(root, result, table, experiment)
    print()
    print(table)
    print()
    print(
        report.examples(
            experiment.world_dir,
            {
                "base": experiment.predictions(f"seed{seeds[0]}-base", "test", "direct"),
                "STIC": experiment.predictions(f"seed{seeds[0]}-stage2", "test", "direct"),
            },
        )
    )
    print()
    if not smoke and not cfg.retrain_base and seeds[0] == 0:
        print(reproduced(table))
    print(f"finished in {result['wall_seconds'] / 60:.1f} min; report: {root / 'report.md'}")
    return 0


def reproduced(table: str) -> str:
    """Whether the table is the committed report's seed-0 table, to the last digit."""
    if not EXPECTED_TABLE.is_file():
        return "(no committed report to compare with)"
    if EXPECTED_TABLE.read_text(encoding="utf-8").rstrip("\n") == table:
        return "These are the seed-0 rows of the committed report (docs/toy-world/report.md), to the last digit."
    return (
        "These differ from the seed-0 rows of the committed report (docs/toy-world/report.md, whose table is in "
        f"{EXPECTED_TABLE}): the steps ran with other numerics than on the machines the report was checked on "
        "(docs/toy-world/report.md says which)."
    )
