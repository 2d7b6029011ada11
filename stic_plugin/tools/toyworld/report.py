"""The toy world's report: ``report.json`` (every number, every seed), ``report.md`` and its plots, and the table
``stic-cli demo`` prints.

The numbers come only from the files the run wrote: predictions scored against the ground truth, and the
trainers' ``trainer_log.jsonl``.
"""

import hashlib
import json
import os
import platform
from pathlib import Path

from .data import CAREFUL_INFUSED_SHARE, CAREFUL_SHARE, IMAGINED_SHARE, INFUSED_SHARE, read_truth
from .model import VISION_WARM_START_STEPS

COLUMNS = (  # (key, heading)
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("chair_i", "CHAIR-i"),
    ("chair_s", "CHAIR-s"),
    ("mentions_per_description", "mentions"),
    ("size_accuracy", "size acc."),
    ("questions", "question acc."),
)
CONSOLE_COLUMNS = (
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("chair_i", "CHAIR-i"),
    ("questions", "questions"),
)
PAIRED_COLUMNS = (
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("chair_i", "CHAIR-i"),
    ("questions", "question acc."),
)
QUESTION_KINDS = ("count", "colour", "where", "shape", "size", "exists")


def cell(summary: dict, key: str) -> str:
    if key not in summary["mean"]:
        return "-"
    mean, sd = summary["mean"][key], summary["sd"][key]
    return f"{mean:.3f} ± {sd:.3f}" if summary["seeds"] > 1 else f"{mean:.3f}"


def markdown_table(headings: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def table(summaries: dict) -> str:
    return markdown_table(
        ["row", "seeds"] + [heading for _, heading in COLUMNS],
        [[s["label"], str(s["seeds"])] + [cell(s, key) for key, _ in COLUMNS] for s in summaries.values()],
    )


def interval(paired: dict | None) -> str:
    if not paired:
        return "-"
    return f"{paired['difference']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]"


def paired_table(summaries: dict) -> str:
    return markdown_table(
        ["row"] + [heading for _, heading in PAIRED_COLUMNS],
        [
            [s["label"]] + [interval(s["paired"].get(key)) for key, _ in PAIRED_COLUMNS]
            for name, s in summaries.items()
            if name != "base"
        ],
    )


def kinds_table(summaries: dict) -> str:
    """Question accuracy per kind of question, mean ± sd over seeds."""
    return markdown_table(
        ["row"] + list(QUESTION_KINDS),
        [[s["label"]] + [cell(s, f"questions_{kind}") for kind in QUESTION_KINDS] for s in summaries.values()],
    )


def console_table(rows: dict, seed_index: int = 0) -> str:
    """The rows of one seed as plain text: what ``stic-cli demo`` prints, and the report shows for the first
    seed."""
    from .comparison import metric_value
    from .experiment import ROWS

    modes = {row.name: row.mode for row in ROWS}
    labels = {row.name: row.label for row in ROWS}
    lines = [[""] + [heading for _, heading in CONSOLE_COLUMNS]]
    for name, per_seed in rows.items():
        metrics = per_seed[seed_index]
        if modes[name] == "dar":
            metrics = {**metrics, "descriptions": metrics["dar_descriptions"]}
        values = [metric_value(metrics, key) for key, _ in CONSOLE_COLUMNS]
        lines.append([labels[name]] + ["-" if value is None else f"{value:.3f}" for value in values])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in lines)


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
    """The paired differences to the base model with their intervals, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PAIRED_COLUMNS), figsize=(4.2 * len(PAIRED_COLUMNS), 5.5), sharey=True)
    names = [name for name in summaries if name != "base"]
    for axis, (key, title) in zip(axes, PAIRED_COLUMNS):
        for position, name in enumerate(names):
            paired = summaries[name]["paired"].get(key)
            if not paired:
                continue
            low, high = paired["difference"] - paired["low"], paired["high"] - paired["difference"]
            axis.errorbar(paired["difference"], position, xerr=[[low], [high]], fmt="o", color="#4c72b0", capsize=3)
        axis.axvline(0, color="grey", linewidth=0.8)
        axis.set_title(f"{title}: row − base")
        axis.set_yticks(range(len(names)), [summaries[n]["label"] for n in names], fontsize=7)
    axes[0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def processor_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo; platform.processor() is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def machine() -> dict:
    """What the numbers were computed on, and with which numerical settings (the steps' pinned ones)."""
    import torch

    from .steps import PINNED

    return {
        "system": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "processor": processor_name(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "pinned_settings": PINNED,
    }


def examples(world_dir: Path, predictions: dict[str, Path], count: int = 3) -> str:
    """A few test pictures: the truth, then each model's description."""
    from .experiment import read_records
    from .world import describe

    truth = read_truth(world_dir, "test")
    said = {}
    for label, folder in predictions.items():
        said[label] = {
            r["source_id"].split(":")[-1]: r["prediction"]
            for r in read_records(folder)
            if r["source_id"].startswith("describe:")
        }
    width = max(len(label) for label in said) + 1
    lines = []
    for key in sorted(truth)[:count]:
        lines.append(f"{key}  {'truth:':{width}} {describe(truth[key].objects)}")
        for label in said:
            lines.append(f"{' ' * len(key)}  {label + ':':{width}} {said[label].get(key, '-')}")
    return "\n".join(lines)


CONTRASTS = (  # (first, second, what the difference tells)
    ("stic", "preferred_sft", "STIC stage 1 against SFT on its preferred descriptions (the paper's Table 3)"),
    ("stic", "alpha0", "the NLL term (alpha = 1/1024 against 0)"),
    ("stic", "corruption_only", "both negatives against corrupted-image negatives only"),
    ("stic", "bad_prompt_only", "both negatives against hallucination-prompt negatives only"),
    ("stage2", "stic", "stage 2 on top of stage 1"),
    ("stage2", "stage2_control", "the descriptions in stage 2 (against the same questions without them)"),
    ("stage2", "stage2_without_stage1", "stage 1 before stage 2"),
    ("stage2_dar", "stage2", "describe-and-respond on the STIC model"),
    ("base_dar", "base", "describe-and-respond on the base model"),
)
CONTRAST_METRICS = (("f1", "F1"), ("chair_i", "CHAIR-i"), ("questions", "question acc."))


def contrasts(rows: dict) -> list[dict]:
    from .comparison import contrast

    out = []
    for first, second, meaning in CONTRASTS:
        if first in rows and second in rows:
            paired = {key: contrast(rows, first, second, key) for key, _ in CONTRAST_METRICS}
            out.append({"first": first, "second": second, "meaning": meaning, "paired": paired})
    return out


def world_text(scale: dict) -> str:
    return (
        f"The world: {scale['pretrain_images']} pretraining pictures (48x48 pixels, one to four objects on a 3x3 "
        "grid: three shapes, six colours in three pairs of similar hues, two sizes, some objects faint), "
        f"{scale['unlabeled_images']} unlabeled pictures for `stic-cli pref`, {scale['instruction_images']} "
        f"pictures with {scale['questions_per_image']} questions each for stage 2, {scale['validation_images']} "
        f"validation and {scale['test_images']} test pictures (the test pictures from a world seed of their own). "
        "The base model, a LLaVA of about 0.9M parameters: its vision tower warm-started "
        f"({VISION_WARM_START_STEPS} supervised steps on the cells of pretraining pictures, as a real model starts "
        f"from a pretrained encoder) and then frozen, the rest trained from scratch for {scale['base_steps']} steps. "
        "It learned its plain captions from careless annotators (a faint small object left out, another faint one "
        "named as the absent companion of an object in the picture or with the similar hue, the absent companion of an "
        "object written in after it), careful descriptions under the step-by-step prompt STIC uses for the preferred "
        f"side (for {CAREFUL_SHARE:.0%} of the pictures), descriptions with imagined objects under the hallucination "
        f"prompts ({IMAGINED_SHARE:.0%}), and {scale.get('pretrain_questions', 3)} questions per picture, "
        f"{INFUSED_SHARE:.0%} of them after a description of the picture "
        f"({CAREFUL_INFUSED_SHARE:.0%} of those careful)."
    )


def write(root: Path, result: dict, demo_table: str, experiment) -> None:
    """report.md and the plots, from ``result`` (what report.json holds)."""
    machine_info = result["machine"]
    lines = [
        "# STIC in the toy world",
        "",
        f"Command: `{result['command']}`. Wall time {result['wall_seconds'] / 60:.1f} min on {machine_info['system']} "
        f"({machine_info['processor'] or 'processor not reported'}); the steps' own times add up to "
        f"{sum(result['step_seconds'].values()) / 60:.1f} min (a step reused from an earlier run counts with the time "
        "it took then).",
        f"torch {machine_info['torch']}, CPU capability {machine_info['cpu_capability']}; every step ran with "
        + ", ".join(f"`{k}={v}`" for k, v in machine_info["pinned_settings"].items())
        + ". Base models (sha256 of model.safetensors): "
        + ", ".join(f"seed {seed} `{digest[:16]}`" for seed, digest in result["base_models"].items())
        + ".",
        "",
        world_text(result["scale"]),
        "",
        f"What `stic-cli demo` prints (seed {result['seeds'][0]}, test split):",
        "",
        "```",
        demo_table,
        "```",
    ]
    summaries = result.get("summaries")
    if summaries:
        bars(summaries, root / "report.png")
        curves = {}
        for name in ("stic", "alpha0", "bad_prompt_only", "corruption_only", "defect_no_image", "defect_no_corruption"):
            rate = result["learning_rates"][name]
            folders = [experiment.root / f"seed{seed}" / f"{name}-lr{rate:g}" for seed in result["seeds"]]
            if any(folder.is_dir() for folder in folders):
                curves[name] = folders
        training_curves(curves, root / "training_curves.png")
        lines += [
            "",
            f"## Every row against its base model ({len(result['seeds'])} seeds: {result['seeds']})",
            "",
            "Paired differences row − base on the test split, mean over seeds, with the 95% bootstrap interval over "
            "test pictures and seeds (docs/toy-world/protocol.md). Higher is better except for CHAIR-i.",
            "",
            paired_table(summaries),
            "",
            "## Contrasts between rows",
            "",
            markdown_table(
                ["first − second", "what it tells"] + [heading for _, heading in CONTRAST_METRICS],
                [
                    [f"{c['first']} − {c['second']}", c["meaning"]]
                    + [interval(c["paired"].get(key)) for key, _ in CONTRAST_METRICS]
                    for c in result["contrasts"]
                ],
            ),
            "",
            "## Every row, mean ± standard deviation over seeds",
            "",
            table(summaries),
            "",
            "F1, precision, recall: object identity (shape, colour, place, and size where named, must all be right); "
            "CHAIR-i: mentions of an object the picture does not hold anywhere / mentions; CHAIR-s: descriptions with "
            "such a mention; mentions: per description; size acc.: sizes right where the object is named right "
            "otherwise; question acc.: exact answers. Descriptions are greedy, under a captioning prompt drawn per "
            "picture; DaR rows score the description pass of describe-and-respond and the answers after it; 'true "
            "description' rows answer after the picture's true description (no description scored).",
            "",
            "Question accuracy by kind of question:",
            "",
            kinds_table(summaries),
            "",
            f"## Learning rates, chosen on the validation split (seed {result['seeds'][0]})",
            "",
            markdown_table(
                [
                    "training",
                    "learning rate",
                    "chosen by",
                    "validation F1",
                    "validation CHAIR-i",
                    "validation question acc.",
                    "chosen",
                ],
                [
                    [
                        row["training"],
                        f"{row['learning_rate']:g}",
                        row["selected_by"],
                        _f(row["f1"]),
                        _f(row["chair_i"]),
                        _f(row["questions"]),
                        "yes" if row["chosen"] else "",
                    ]
                    for row in result["sweep"]
                ],
            ),
            "",
            "![paired differences](report.png)",
            "",
            "![training curves](training_curves.png)",
        ]
    (root / "report.md").write_text("\n".join(lines) + "\n")


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"
