"""The comparison of ``docs/toy-world/protocol.md``: the learning-rate sweep on the validation split (first
seed), then every row on the test split for every seed, and the statistics of the report.

The steps are futures (``Plan``): each is submitted once, runs when what it needs is done, and the
experiment's ``workers`` commands run side by side. The demo runs the same steps for its rows on the first
seed, with the learning rates the sweep chose (``experiment.CHOSEN_LEARNING_RATES``).
"""

import threading
from concurrent.futures import Future
from pathlib import Path

from . import statistics
from .experiment import LEARNING_RATE_GRID, ROWS, STAGE1, STAGE2, TRAININGS, Experiment, Row, Training


class Plan:
    """The steps of one experiment as futures, each made once (keyed by what it produces)."""

    def __init__(self, experiment: Experiment, learning_rates: dict):
        self.experiment = experiment
        self.learning_rates = dict(learning_rates)
        self._made: dict[tuple, Future] = {}
        self._lock = threading.Lock()

    def _once(self, key: tuple, function, *needs: Future) -> Future:
        with self._lock:
            if key not in self._made:
                self._made[key] = self.experiment.steps.later(function, *needs)
            return self._made[key]

    def base(self, seed: int) -> Future:
        return self._once(("base", seed), lambda: self.experiment.train_base(seed))

    def pref(self, seed: int, training: Training) -> Future:
        name = self.experiment.pref_name(training)
        return self._once(("pref", seed, name), lambda _: self.experiment.pref(seed, training), self.base(seed))

    def stage1_data(self, seed: int, training: Training) -> Future:
        pairs = self.pref(seed, training)
        if training.data == "preferred_only":
            return self._once(("preferred", seed), lambda p: self.experiment.preferred_only(seed, p), pairs)
        if training.data == "pairs_without_image":
            return self._once(("without_image", seed), lambda p: self.experiment.without_image(seed, p), pairs)
        return pairs

    def adapter(self, seed: int, name: str, learning_rate: float | None = None) -> Future:
        """The adapter of a training (at its chosen learning rate unless one is given)."""
        training = TRAININGS[name]
        rate = self.learning_rates[name] if learning_rate is None else learning_rate
        key = ("train", seed, name, rate)
        if training.stage == "stage1":
            return self._once(
                key, lambda data: self.experiment.train(seed, training, data, rate), self.stage1_data(seed, training)
            )
        after = self.adapter(seed, training.after) if training.after else self.base(seed)
        if training.data == "plain":
            data = self._once(("instructions", seed), lambda _: self.experiment.instructions(seed), self.base(seed))
        else:
            data = self._once(("infuse", seed, training.after), lambda a: self.experiment.infuse(seed, a), after)
        return self._once(key, lambda d, a: self.experiment.train(seed, training, d, rate, a), data, after)

    def evaluate(self, seed: int, row: Row, split: str = "test", learning_rate: float | None = None) -> Future:
        """The scores of a row (its model evaluated its way) on a split."""
        model = self.adapter(seed, row.training, learning_rate) if row.training else self.base(seed)
        tag = "base" if row.training is None else row.training
        if learning_rate is not None:
            tag += f"-lr{learning_rate:g}"
        name = f"seed{seed}-{tag}"
        adapter = (lambda a: a) if row.training else (lambda _: None)
        return self._once(
            ("evaluate", name, split, row.mode),
            lambda a: self.experiment.evaluate(seed, name, adapter(a), split, row.mode),
            model,
        )


def selection_metric(training: Training) -> str:
    """What the sweep chooses a training's learning rate by (protocol.md): F1 of the captions for what trains
    on descriptions, question accuracy for what trains on questions."""
    return "f1" if training.stage == "stage1" else "questions"


def metric_value(metrics: dict, name: str):
    return metrics["questions"] if name == "questions" else (metrics["descriptions"] or {}).get(name)


def sweep(plan: Plan, trainings: tuple[Training, ...]) -> list[dict]:
    """Every training at every learning rate of the grid, on the first seed's validation split; sets each
    training's chosen rate in ``plan`` (ties go to the smaller rate)."""
    seed = plan.experiment.seeds[0]
    futures = {
        (training.name, rate): plan.evaluate(
            seed, Row(training.name, training.label, training.name), "validation", rate
        )
        for training in trainings
        for rate in LEARNING_RATE_GRID
    }
    table = []
    for training in trainings:
        key = selection_metric(training)
        scored = []
        for rate in LEARNING_RATE_GRID:
            metrics = futures[(training.name, rate)].result()
            value = metric_value(metrics, key)
            scored.append((value if value is not None else float("-inf"), -rate, rate))
            descriptions = metrics["descriptions"] or {}
            table.append(
                {
                    "training": training.name,
                    "learning_rate": rate,
                    "selected_by": key,
                    "f1": descriptions.get("f1"),
                    "chair_i": descriptions.get("chair_i"),
                    "questions": metrics["questions"],
                }
            )
        plan.learning_rates[training.name] = max(scored)[2]
    for row in table:
        row["chosen"] = plan.learning_rates[row["training"]] == row["learning_rate"]
    return table


def run(experiment: Experiment, full: bool, rows: tuple[str, ...]) -> dict:
    """The sweep (``full``) and the rows on the test split of every seed: {"rows": {name: [metrics per seed]},
    "sweep": [...], "learning_rates": {...}}."""
    plan = Plan(experiment, experiment.learning_rates)
    wanted = [row for row in ROWS if row.name in rows]

    def submit(stage: str | None) -> dict:
        """The test evaluations of the wanted rows (of one stage's trainings, or untrained with None)."""
        return {
            (row.name, seed): plan.evaluate(seed, row)
            for seed in experiment.seeds
            for row in wanted
            if (TRAININGS[row.training].stage if row.training else None) == stage
        }

    try:
        futures = submit(None)
        table = []
        if full:
            for seed in experiment.seeds:  # every seed's preference data and base model meanwhile
                for training in STAGE1:
                    plan.pref(seed, training)
            table += sweep(plan, STAGE1)
        futures.update(submit("stage1"))
        if full:
            table += sweep(plan, STAGE2)
        futures.update(submit("stage2"))
        results = {
            name: [futures[(name, seed)].result() for seed in experiment.seeds] for name in (r.name for r in wanted)
        }
    finally:
        experiment.steps.close()
    return {"rows": results, "sweep": table, "learning_rates": plan.learning_rates}


def summarize(results: dict[str, list[dict]]) -> dict:
    """Per row: its label, mean and standard deviation over seeds of every metric, and (except the base) the
    paired difference to the base with its bootstrap interval."""
    labels = {row.name: row for row in ROWS}
    base = results.get("base")
    out = {}
    for name, per_seed in results.items():
        row = labels[name]
        dar = row.mode == "dar"
        values: dict[str, list] = {}
        for metrics in per_seed:
            descriptions = metrics["dar_descriptions"] if dar else metrics["descriptions"]
            for key, value in (descriptions or {}).items():
                if value is not None:
                    values.setdefault(key, []).append(value)
            if metrics["questions"] is not None:
                values.setdefault("questions", []).append(metrics["questions"])
            for kind, value in metrics["questions_by_kind"].items():
                values.setdefault(f"questions_{kind}", []).append(value)
        summary = {
            "label": row.label,
            "seeds": len(per_seed),
            "mean": {k: statistics.mean_and_sd(v)[0] for k, v in values.items()},
            "sd": {k: statistics.mean_and_sd(v)[1] for k, v in values.items()},
            "paired": {},
        }
        if base is not None and name != "base":
            for metric in statistics.PAIRED_METRICS:
                if metric not in summary["mean"]:
                    continue
                row_counts = [statistics.picture_counts(m["per_picture"], metric, dar) for m in per_seed]
                base_counts = [statistics.picture_counts(m["per_picture"], metric, False) for m in base]
                summary["paired"][metric] = statistics.paired_difference(row_counts, base_counts, metric)
        out[name] = summary
    return out


def contrast(results: dict, first: str, second: str, metric: str) -> dict | None:
    """The paired difference first − second of one metric, with its bootstrap interval."""
    labels = {row.name: row for row in ROWS}
    counts = [
        [statistics.picture_counts(m["per_picture"], metric, labels[name].mode == "dar") for m in results[name]]
        for name in (first, second)
    ]
    return statistics.paired_difference(counts[0], counts[1], metric)


def without_pictures(results: dict) -> dict:
    """The results as report.json keeps them: the counts per picture left out (they stay in the run's folder)."""
    return {
        name: [{k: v for k, v in m.items() if k != "per_picture"} for m in per_seed]
        for name, per_seed in results.items()
    }


def path_of(experiment: Experiment, seed: int, name: str) -> Path:
    return experiment.root / f"seed{seed}" / name
