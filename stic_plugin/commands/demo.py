"""``stic-cli demo``: STIC in the toy world, on the CPU, with nothing downloaded.

Run: ``stic-cli demo`` (or ``make demo``). It draws the world (``stic_plugin/toyworld``), trains the base
model from scratch with ``llamafactory-cli train``, runs STIC with the shipped commands (``pref``,
``stic_dpo``, ``infuse``, stage-2 ``sft``, ``dar``) on one seed, and prints the base model against the
STIC model, scored against the ground truth. ``stic-cli demo full=true`` runs the whole comparison
(learning rates chosen on the validation split, every ablation, three seeds) and writes the report.
Finished steps are reused by a rerun (``fresh=true`` starts over).
"""

import json
import shutil
import time
from pathlib import Path

from ..toyworld import report
from ..toyworld.data import DEMO, SMOKE
from ..toyworld.experiment import Experiment, run_comparison, summarize, sweep
from .config import DemoConfig


def run_demo(cfg: DemoConfig) -> int:
    started = time.time()
    root = Path(cfg.output_dir).absolute()
    seeds = tuple(cfg.seeds) if cfg.full else tuple(cfg.seeds[:1])
    experiment = Experiment(root, SMOKE if cfg.scale == "smoke" else DEMO, seeds=seeds)
    if cfg.fresh:
        shutil.rmtree(experiment.steps.stamps, ignore_errors=True)
    what = "the full comparison" if cfg.full else "the base model against STIC"
    print(f"STIC in the toy world: {what}, seed(s) {', '.join(map(str, seeds))}; everything goes to {root}", flush=True)
    experiment.build_world()
    experiment.train_base(seeds[0])  # the other seeds' base models are trained in turn
    protocol = None
    if cfg.full:
        protocol = sweep(experiment)
        experiment.learning_rates = dict(protocol["chosen"])
    rows = run_comparison(experiment, ablations=cfg.full)
    summaries = summarize(rows)
    result = {
        "command": "stic-cli demo"
        + (" full=true" if cfg.full else "")
        + ("" if cfg.scale == "demo" else " scale=smoke"),
        "seeds": list(seeds),
        "scale": vars(experiment.scale),
        "learning_rates": experiment.learning_rates,
        "protocol": protocol,
        "step_seconds": {name: round(seconds, 1) for name, seconds in experiment.steps.seconds.items()},
        "wall_seconds": round(time.time() - started, 1),
        "machine": report.machine(),
        "rows": {name: {**summaries[name], "per_seed": rows[name]["per_seed"]} for name in rows},
    }
    (root / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    report.write(root, result, experiment)
    print()
    print(report.console_table(summaries))
    print()
    print(report.examples(experiment, count=3))
    print(f"\nfinished in {result['wall_seconds'] / 60:.1f} min; report: {root / 'report.md'}")
    return 0
