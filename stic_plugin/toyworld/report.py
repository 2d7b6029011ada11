"""The toy world's report: ``report.json`` (every number, every seed), ``report.md`` and two plots.

The numbers come only from the files the run wrote: predictions scored against the ground truth, and
the trainers' ``trainer_log.jsonl``.
"""

import json
import platform
from pathlib import Path

from .data import read_truth

COLUMNS = (  # (key, heading, lower is better)
    ("chair_i", "CHAIR-i", True),
    ("chair_s", "CHAIR-s", True),
    ("recall", "recall", False),
    ("colour_accuracy", "colour acc.", False),
    ("questions", "question acc.", False),
)


def cell(summary: dict, key: str) -> str:
    if key not in summary["mean"]:
        return "-"
    mean, sd = summary["mean"][key], summary["sd"][key]
    return f"{mean:.3f} ± {sd:.3f}" if summary["seeds"] > 1 else f"{mean:.3f}"


def table(summaries: dict) -> str:
    lines = [
        "| row | seeds | " + " | ".join(heading for _, heading, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for summary in summaries.values():
        lines.append(
            f"| {summary['label']} | {summary['seeds']} | "
            + " | ".join(cell(summary, key) for key, _, _ in COLUMNS)
            + " |"
        )
    return "\n".join(lines)


QUESTION_KINDS = ("count", "colour", "where", "shape", "exists")


def kinds_table(summaries: dict) -> str:
    """Question accuracy per kind of question, mean ± sd over seeds."""
    lines = [
        "| row | " + " | ".join(QUESTION_KINDS) + " |",
        "|---|" + "---|" * len(QUESTION_KINDS),
    ]
    for summary in summaries.values():
        lines.append(
            f"| {summary['label']} | "
            + " | ".join(cell(summary, f"questions_{kind}") for kind in QUESTION_KINDS)
            + " |"
        )
    return "\n".join(lines)


def world_text(scale: dict) -> str:
    return (
        f"The world: {scale['pretrain_images']} pretraining pictures "
        "(48x48 pixels, one to four objects on a 3x3 grid), "
        f"{scale['unlabeled_images']} unlabeled pictures for `stic-cli pref`, {scale['instruction_images']} pictures "
        f"with questions for stage 2, {scale['validation_images']} validation and {scale['test_images']} test "
        "pictures. "
        f"The base model, a LLaVA of about 0.9M parameters trained from scratch for {scale['base_steps']} steps, "
        "learned its plain captions from careless captioners, who often give a small object the usual colour of its "
        "shape (circle red, square blue, triangle green); careful descriptions, under the step-by-step prompt STIC "
        "uses for the preferred side, it saw for about a third of the pictures. The test descriptions answer the "
        "captioning prompts."
    )


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"


def training_curves(runs: dict[str, list[Path]], path: Path) -> None:
    """Loss, NLL of the preferred side and reward accuracy over steps of each stage-1 training:
    one colour per training, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    # LLaMA-Factory logs DPO's reward accuracy as "accuracy"
    keys = ("loss", "stic/nll", ("accuracy", "rewards/accuracies"))
    for index, (label, folders) in enumerate(runs.items()):
        colour = f"C{index % 10}"
        for seed_index, folder in enumerate(folders):
            log = folder / "trainer_log.jsonl"
            if not log.is_file():
                continue
            steps = [json.loads(line) for line in log.read_text().splitlines()]
            steps = [s for s in steps if "loss" in s]
            x = [s["current_steps"] for s in steps]
            for axis, key in zip(axes, keys):
                names = key if isinstance(key, tuple) else (key,)
                values = [next((s[n] for n in names if n in s), None) for s in steps]
                if any(v is not None for v in values):
                    axis.plot(x, values, color=colour, alpha=0.7, label=label if seed_index == 0 else None)
    for axis, title in zip(axes, ("loss (DPO + alpha NLL)", "NLL of the preferred description", "reward accuracy")):
        axis.set_title(title)
        axis.set_xlabel("step")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def bars(summaries: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("chair_i", "CHAIR-i (lower is better)"), ("recall", "recall"), ("questions", "question accuracy")]
    figure, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.5))
    names = list(summaries)
    for axis, (key, title) in zip(axes, keys):
        shown = [n for n in names if key in summaries[n]["mean"]]
        means = [summaries[n]["mean"][key] for n in shown]
        errors = [summaries[n]["sd"][key] for n in shown]
        axis.barh(range(len(shown)), means, xerr=errors, color="#4c72b0", alpha=0.85, capsize=3)
        axis.set_yticks(range(len(shown)), [summaries[n]["label"] for n in shown], fontsize=7)
        axis.invert_yaxis()
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(root: Path, result: dict, experiment) -> None:
    """report.md and the plots, from ``result`` (what report.json holds)."""
    summaries = {name: row for name, row in result["rows"].items()}
    bars(summaries, root / "report.png")
    curves = {}
    for name in ("stic", "alpha0", "bad_prompt_only", "corruption_only", "defect_no_image", "defect_no_corruption"):
        folders = [experiment.root / f"seed{seed}" / name for seed in result["seeds"]]
        if any(folder.is_dir() for folder in folders):
            curves[name] = folders
    training_curves(curves, root / "training_curves.png")
    lines = [
        "# STIC in the toy world",
        "",
        f"Command: `{result['command']}`. Wall time: {result['wall_seconds'] / 60:.1f} min on {result['machine']}; "
        f"the steps' own times add up to {sum(result['step_seconds'].values()) / 60:.1f} min (a step reused from an "
        "earlier run in the same folder counts with the time it took then).",
        f"Seeds: {result['seeds']}. Each seed trains its own base model (initial weights, order of the pretraining "
        "data), then STIC on it (preference sampling, data order, LoRA initialisation). Mean ± standard deviation "
        "over seeds.",
        "",
        world_text(result["scale"]),
        "",
        table(summaries),
        "",
        "CHAIR-i: hallucinated object mentions / all mentions; CHAIR-s: descriptions with a hallucination; "
        "recall: ground-truth objects named; colour acc.: colour right where the shape is named at its place; "
        "question acc.: exact answers. Descriptions are greedy, under a captioning prompt drawn per picture; "
        "DaR rows score the description pass of describe-and-respond and the answers after it.",
        "",
        f"Learning rates: {result['learning_rates']}.",
        "",
        "Question accuracy by kind of question:",
        "",
        kinds_table(summaries),
    ]
    if result.get("protocol"):
        lines += [
            "",
            f"## Learning rates, chosen on the validation split (seed {result['seeds'][0]})",
            "",
            "| training | learning rate | validation CHAIR-i | validation recall | validation DaR question acc. |",
            "|---|---|---|---|---|",
        ]
        for row in result["protocol"]["table"]:
            lines.append(
                f"| {row['what']} | {row['learning_rate']:g} | {_f(row.get('chair_i'))} | "
                f"{_f(row.get('recall'))} | {_f(row.get('questions_dar'))} |"
            )
    lines += ["", "![bars](report.png)", "", "![training curves](training_curves.png)", ""]
    (root / "report.md").write_text("\n".join(lines))


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def console_table(summaries: dict) -> str:
    """The rows as plain text, for the terminal."""
    headings = ["", "CHAIR-i", "recall", "colour", "questions"]
    keys = ["chair_i", "recall", "colour_accuracy", "questions"]
    rows = [headings]
    for summary in summaries.values():
        rows.append([summary["label"]] + [_mean_sd(summary, key) for key in keys])
    widths = [max(len(row[i]) for row in rows) for i in range(len(headings))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _mean_sd(summary: dict, key: str) -> str:
    if key not in summary["mean"]:
        return "-"
    if summary["seeds"] > 1:
        return f"{summary['mean'][key]:.3f}±{summary['sd'][key]:.3f}"
    return f"{summary['mean'][key]:.3f}"


def examples(experiment, count: int = 3) -> str:
    """A few test pictures: the truth, the base model's description and the STIC model's (first seed)."""
    from .experiment import read_records
    from .world import detailed_description

    truth = read_truth(experiment.world_dir, "test")
    seed = experiment.seeds[0]
    said = {}
    for label, name in (("base", f"seed{seed}-base"), ("STIC", f"seed{seed}-stage2")):
        folder = experiment.predictions(name)
        said[label] = {
            r["source_id"].split(":")[-1]: r["prediction"]
            for r in read_records(folder)
            if r["source_id"].startswith("describe:")
        }
    lines = []
    for key in sorted(truth)[:count]:
        lines.append(f"{key}  truth: {detailed_description(truth[key].objects)}")
        for label in said:
            lines.append(f"{' ' * len(key)}  {label + ':':6} {said[label].get(key, '-')}")
    return "\n".join(lines)
