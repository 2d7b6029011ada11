"""The toy-world experiment: a base model that sees imperfectly, then STIC with the shipped commands.

Every step is a shipped command in its own process, as a user runs it:

    llamafactory-cli train  base.yaml             the base model, from scratch (stage sft, full, vision included)
    stic-cli pref           on the unlabeled split (pictures only)
    llamafactory-cli train  stage1.yaml           stage: stic_dpo
    stic-cli infuse         on the instruction split, with the stage-1 adapter
    llamafactory-cli train  stage2.yaml           stage: sft, continuing the stage-1 adapter
    stic-cli dar            on the test split: descriptions, and questions directly and with describe-and-respond

The recipes are the shipped ``recipes/llava-1.5-7b/*.yaml`` with the toy scale's overrides (model, data,
learning rate, epochs, LoRA size, CPU), written to ``<output_dir>/recipes``. The method's own constants
(prompts, alpha, beta, corruption probabilities, the loss) are the recipes' own, never changed here.
"""

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..assets import dataset_entry
from . import scoring
from .data import Prompts, Scale, read_truth, write_world
from .model import build_model, build_tokenizer
from .steps import Steps, offline_env, tool

RECIPE_MODEL = "llava-1.5-7b"
WORLD_SEED = 0

# Toy-scale training settings: everything else is the shipped recipes'. The learning rates are those
# `stic-cli demo full=true` chose on the validation split (docs/toy-world/report.md lists the sweep);
# epochs and LoRA size were set once, before any evaluation.
STAGE1_LEARNING_RATE = 3.0e-4
STAGE2_LEARNING_RATE = 1.0e-3
PREFERRED_SFT_LEARNING_RATE = 1.0e-3
LEARNING_RATE_GRID = (1.0e-4, 3.0e-4, 1.0e-3)
LORA = {"lora_rank": 16, "lora_alpha": 32}
STAGE1_EPOCHS = 2
STAGE2_EPOCHS = 2
GENERATION = {"max_new_tokens": 64, "batch_size": 64}
EVAL_BATCH = 64


@dataclass(frozen=True)
class Variant:
    """One stage-1 training of the comparison: its own preference data (``pref`` keys), its training
    keys, and an optional change of the data (the authors' defects, or SFT on the preferred side)."""

    name: str
    label: str
    pref: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data: str = "pairs"  # pairs | pairs_without_image | preferred_only


STIC = Variant("stic", "STIC stage 1")
ABLATIONS = (
    Variant("alpha0", "alpha = 0 (plain DPO)", train={"stic_alpha": 0.0}),
    Variant("bad_prompt_only", "only bad-prompt negatives (corruption_prob 0)", pref={"corruption_prob": 0.0}),
    Variant("corruption_only", "only corrupted-image negatives (corruption_prob 1)", pref={"corruption_prob": 1.0}),
    Variant("preferred_sft", "SFT on the preferred descriptions only", data="preferred_only"),
    Variant("defect_no_image", "authors' defect: stored prompt without its image", data="pairs_without_image"),
    Variant(
        "defect_no_corruption",
        "authors' defect: corruption not applied",
        pref={"corruptions": {"color_jitter": 1.0}, "jitter_brightness": 0.0, "jitter_hue": 0.0},
    ),
)


@dataclass
class Experiment:
    """Paths and settings of one run of the toy world under ``root``."""

    root: Path
    scale: Scale
    seeds: tuple[int, ...] = (0,)
    learning_rates: dict = field(
        default_factory=lambda: {
            "stage1": STAGE1_LEARNING_RATE,
            "stage2": STAGE2_LEARNING_RATE,
            "preferred_sft": PREFERRED_SFT_LEARNING_RATE,
        }
    )

    def __post_init__(self):
        self.root = Path(self.root).absolute()
        self.world_dir = self.root / "world"
        self.recipes = self.root / "recipes"
        self.steps = Steps(self.root, offline_env(self.root))
        self.cli, self.trainer = tool("stic-cli"), tool("llamafactory-cli")

    # ---- the world and the base model ----
    def build_world(self) -> None:
        inputs = {"scale": vars(self.scale), "world_seed": WORLD_SEED, "prompts": Prompts.shipped().all()}
        if self.steps.done("world", inputs):
            return
        print(
            f"  world: {self.scale.pretrain_images} pretraining pictures, {self.scale.unlabeled_images} unlabeled, "
            f"{self.scale.test_images} test -> {self.world_dir}",
            flush=True,
        )
        write_world(self.world_dir, WORLD_SEED, self.scale, Prompts.shipped())
        self.steps.mark_done("world", inputs, 0.0)

    def base_dir(self, seed: int) -> Path:
        return self.root / f"seed{seed}" / "base"

    def base_model(self, seed: int) -> str:
        return str(self.base_dir(seed) / "model")

    def train_base(self, seed: int) -> None:
        """The base model of one seed: its own initial weights and order of the pretraining data (the world and
        the tokenizer are the same for every seed). Each seed has its own base model because 3000 steps amplify
        the smallest numerical difference, and training on a CPU is not bit for bit the same from run to run:
        three runs of the same code and seed on one machine gave twice the same base model (26% of its object
        mentions hallucinated) and once another (33%), on which STIC had another effect."""
        init = self.base_dir(seed) / "init"
        prompts = Prompts.shipped()
        init_inputs = {"prompts": prompts.all(), "seed": seed}
        if not self.steps.done(f"seed{seed}/base-init", init_inputs):
            tokenizer = build_tokenizer(prompts.all(), WORLD_SEED)
            build_model(init, tokenizer, seed=seed)
            self.steps.mark_done(f"seed{seed}/base-init", init_inputs, 0.0)
        recipe = {
            "model_name_or_path": str(init),
            "template": "llava",
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "full",
            "freeze_vision_tower": False,
            "freeze_multi_modal_projector": False,
            "dataset": "toy_pretrain",
            "dataset_dir": str(self.world_dir),
            "cutoff_len": 256,
            "output_dir": self.base_model(seed),
            "overwrite_output_dir": True,
            "save_strategy": "no",
            "logging_steps": 25,
            "plot_loss": True,
            "report_to": "none",
            "per_device_train_batch_size": 32,
            "gradient_accumulation_steps": 1,
            "learning_rate": 1.0e-3,
            "max_steps": self.scale.base_steps,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.05,
            "weight_decay": 0.0,
            "use_cpu": True,
            "seed": seed,
            "dataloader_num_workers": 0,
            "disable_gradient_checkpointing": True,  # a model this small trains faster without recomputation
        }
        self._train(f"seed{seed}/base", recipe, Path(self.base_model(seed)))

    # ---- the shipped commands ----
    def _write_recipe(self, name: str, values: dict) -> Path:
        import yaml

        self.recipes.mkdir(parents=True, exist_ok=True)
        path = self.recipes / f"{name.replace('/', '-')}.yaml"
        path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}, sort_keys=False))
        return path

    def _shipped(self, name: str, overrides: dict) -> dict:
        import yaml

        from ..assets import recipes_dir

        values = yaml.safe_load((recipes_dir() / RECIPE_MODEL / f"{name}.yaml").read_text())
        values.update(overrides)
        return values

    def _train(self, name: str, recipe: dict, output_dir: Path) -> None:
        path = self._write_recipe(name, recipe)
        self.steps.run(name, [self.trainer, "train", str(path)], inputs=recipe, outputs=[output_dir])

    def _cli(self, name: str, command: str, recipe: dict, outputs=()) -> None:
        path = self._write_recipe(name, recipe)
        self.steps.run(name, [self.cli, command, str(path)], inputs=recipe, outputs=list(outputs))

    def _training_overrides(self, seed: int, output_dir: Path, dataset_dir: Path) -> dict:
        return {
            "model_name_or_path": self.base_model(seed),
            "dataset_dir": str(dataset_dir),
            "output_dir": str(output_dir),
            "cutoff_len": 256,
            "bf16": None,
            "use_cpu": True,
            "preprocessing_num_workers": None,
            "dataloader_num_workers": 0,
            "logging_steps": 5,
            "save_steps": 100000,
            "disable_gradient_checkpointing": True,
            "seed": seed,
            **LORA,
        }

    def pref(self, seed: int, variant: Variant) -> tuple[Path, str]:
        """The preference data a variant trains on: (dataset_dir, dataset name)."""
        data = self.root / f"seed{seed}" / "data"
        keys = {k: v for k, v in variant.pref.items()}
        own = bool(keys)
        name = f"pref_{variant.name}" if own else "pref_stic"
        recipe = self._shipped(
            "pref",
            {
                "model_name_or_path": self.base_model(seed),
                "image_dir": str(self.world_dir / "images" / "unlabeled"),
                "dataset_dir": str(data),
                "dataset_name": name,
                "max_samples": None,
                "seed": seed,
                "overwrite": True,
                **GENERATION,
                **keys,
            },
        )
        self._cli(f"seed{seed}/{name}", "pref", recipe)
        return data, name

    def stage1(self, seed: int, variant: Variant, learning_rate: float | None = None) -> Path:
        """Train one stage-1 variant; returns its adapter folder."""
        data, name = self.pref(seed, variant)
        tag = variant.name if learning_rate is None else f"{variant.name}-lr{learning_rate:g}"
        output = self.root / f"seed{seed}" / tag
        if variant.data == "preferred_only":
            sft_name = f"{name}_preferred"
            self._cli(
                f"seed{seed}/{sft_name}",
                "pref2sft",
                {"dataset_dir": str(data), "pref_dataset": name, "dataset_name": sft_name, "overwrite": True},
            )
            recipe = self._shipped(
                "stage2",
                {
                    **self._training_overrides(seed, output, data),
                    "adapter_name_or_path": None,
                    "dataset": sft_name,
                    "learning_rate": learning_rate or self.learning_rates["preferred_sft"],
                    "num_train_epochs": STAGE1_EPOCHS,
                    "per_device_train_batch_size": 8,
                    "gradient_accumulation_steps": 1,
                },
            )
        else:
            if variant.data == "pairs_without_image":
                name = without_image(data, name)
            recipe = self._shipped(
                "stage1",
                {
                    **self._training_overrides(seed, output, data),
                    "dataset": name,
                    "learning_rate": learning_rate or self.learning_rates["stage1"],
                    "num_train_epochs": STAGE1_EPOCHS,
                    "per_device_train_batch_size": 8,
                    "gradient_accumulation_steps": 1,
                    **variant.train,
                },
            )
        self._train(f"seed{seed}/{tag}", recipe, output)
        return output

    def stage2(self, seed: int, stage1_adapter: Path, learning_rate: float | None = None) -> Path:
        data = self.root / f"seed{seed}" / "data"
        tag = "stage2" if learning_rate is None else f"stage2-lr{learning_rate:g}"
        sft_name = "stic_sft"
        infuse = self._shipped(
            "infuse",
            {
                "model_name_or_path": self.base_model(seed),
                "adapter_name_or_path": str(stage1_adapter),
                "llava_file": str(self.world_dir / "instruct.json"),
                "image_folder": str(self.world_dir),
                "dataset_dir": str(data),
                "dataset_name": sft_name,
                "num_samples": None,
                "seed": seed,
                "overwrite": True,
                **GENERATION,
            },
        )
        self._cli(f"seed{seed}/infuse", "infuse", infuse)
        output = self.root / f"seed{seed}" / tag
        recipe = self._shipped(
            "stage2",
            {
                **self._training_overrides(seed, output, data),
                "adapter_name_or_path": str(stage1_adapter),
                "dataset": sft_name,
                "learning_rate": learning_rate or self.learning_rates["stage2"],
                "num_train_epochs": STAGE2_EPOCHS,
                "per_device_train_batch_size": 16,
                "gradient_accumulation_steps": 1,
            },
        )
        self._train(f"seed{seed}/{tag}", recipe, output)
        return output

    # ---- evaluation ----
    def predictions(self, name: str, split: str = "test", dar: bool = False) -> Path:
        return self.root / "evaluations" / f"{name.replace('/', '-')}-{split}-{'dar' if dar else 'direct'}"

    def evaluate(self, seed: int, name: str, adapter: Path | None, split: str = "test", dar: bool = False) -> dict:
        """``stic-cli dar`` with the base model of ``seed`` (and ``adapter``) on a split's descriptions and
        questions (greedy); scored against the ground truth."""
        folder = self.predictions(name, split, dar).parent
        predictions = self.predictions(name, split, dar).name
        recipe = self._shipped(
            "dar",
            {
                "model_name_or_path": self.base_model(seed),
                "adapter_name_or_path": str(adapter) if adapter else None,
                "dataset": None,
                "llava_file": str(self.world_dir / f"{split}.json"),
                "image_folder": str(self.world_dir),
                "dataset_dir": str(folder),
                "predictions_name": predictions,
                "dar": dar,
                "metric": "none",
                "max_new_tokens": GENERATION["max_new_tokens"],
                "description_max_new_tokens": GENERATION["max_new_tokens"],
                "batch_size": EVAL_BATCH,
                "overwrite": True,
            },
        )
        self._cli(f"eval/{predictions}", "dar", recipe)
        return scoring.score_predictions(read_records(folder / predictions), read_truth(self.world_dir, split), dar=dar)


def read_records(folder: Path) -> list[dict]:
    """The records of a generated dataset or predictions folder (its part files)."""
    return [json.loads(line) for part in sorted(folder.glob("*.jsonl")) for line in part.read_text().splitlines()]


def without_image(dataset_dir: Path, name: str) -> str:
    """A copy of a pref dataset as the authors' released data was used in training: the stored prompt
    without its image placeholder, so no image reaches the model (their first data defect)."""
    copy = f"{name}_without_image"
    lines = []
    for record in read_records(dataset_dir / name):
        messages = [{**m, "content": m["content"].replace("<image>", "").lstrip("\n")} for m in record["messages"]]
        lines.append(json.dumps({"messages": messages, "chosen": record["chosen"], "rejected": record["rejected"]}))
    (dataset_dir / f"{copy}.jsonl").write_text("".join(line + "\n" for line in lines))
    info_path = dataset_dir / "dataset_info.json"
    info = json.loads(info_path.read_text())
    entry = dataset_entry("stic_pref")
    entry["columns"] = {key: column for key, column in entry["columns"].items() if key != "images"}
    info[copy] = {"file_name": f"{copy}.jsonl", **entry}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return copy


# ---- the comparison ----
def sweep(experiment: Experiment) -> dict:
    """Learning rates chosen on the validation split (the first seed), before any test-split evaluation:
    stage 1 and SFT on the preferred side by validation CHAIR-i (then recall), stage 2 by the
    validation accuracy of describe-and-respond answers."""
    chosen, table = {}, []
    first = experiment.seeds[0]

    def best(rows, key):
        return min(rows, key=key)

    for what, variant in (("stage1", STIC), ("preferred_sft", ABLATIONS[3])):
        rows = []
        for rate in LEARNING_RATE_GRID:
            adapter = experiment.stage1(first, variant, learning_rate=rate)
            metrics = experiment.evaluate(first, f"sweep-{variant.name}-lr{rate:g}", adapter, "validation")
            d = metrics["descriptions"]
            rows.append(
                {
                    "what": what,
                    "learning_rate": rate,
                    "chair_i": d["chair_i"],
                    "recall": d["recall"],
                    "questions": metrics["questions"],
                }
            )
        chosen[what] = best(rows, key=lambda r: (r["chair_i"], -r["recall"]))["learning_rate"]
        table += rows
    stage1_adapter = experiment.stage1(first, STIC, learning_rate=chosen["stage1"])
    rows = []
    for rate in LEARNING_RATE_GRID:
        adapter = experiment.stage2(first, stage1_adapter, learning_rate=rate)
        metrics = experiment.evaluate(first, f"sweep-stage2-lr{rate:g}", adapter, "validation", dar=True)
        rows.append({"what": "stage2", "learning_rate": rate, "questions_dar": metrics["questions"]})
    chosen["stage2"] = best(rows, key=lambda r: -r["questions_dar"])["learning_rate"]
    table += rows
    return {"chosen": chosen, "table": table}


def run_comparison(experiment: Experiment, ablations: bool) -> dict:
    """Every row on the test split: {row name: {"label", "per_seed": [metrics, ...]}}."""
    rows: dict[str, dict] = {}

    def add(name: str, label: str, metrics: dict) -> None:
        rows.setdefault(name, {"label": label, "per_seed": []})["per_seed"].append(metrics)

    for seed in experiment.seeds:
        experiment.train_base(seed)
        add("base", "base", experiment.evaluate(seed, f"seed{seed}-base", None))
        add("base_dar", "base + DaR", experiment.evaluate(seed, f"seed{seed}-base", None, dar=True))
        stage1 = experiment.stage1(seed, STIC)
        add("stic_stage1", "STIC stage 1", experiment.evaluate(seed, f"seed{seed}-stic", stage1))
        stage2 = experiment.stage2(seed, stage1)
        add("stic_stage12", "STIC stage 1+2", experiment.evaluate(seed, f"seed{seed}-stage2", stage2))
        add("stic_dar", "STIC stage 1+2 + DaR", experiment.evaluate(seed, f"seed{seed}-stage2", stage2, dar=True))
        if ablations:
            for variant in ABLATIONS:
                adapter = experiment.stage1(seed, variant)
                add(variant.name, variant.label, experiment.evaluate(seed, f"seed{seed}-{variant.name}", adapter))
    return rows


METRICS = (  # (key in a row's summary, label, where it comes from)
    ("chair_i", "CHAIR-i", "descriptions"),
    ("chair_s", "CHAIR-s", "descriptions"),
    ("recall", "recall", "descriptions"),
    ("colour_accuracy", "colour acc.", "descriptions"),
    ("questions", "questions", None),
)


def summarize(rows: dict) -> dict:
    """Mean and standard deviation over seeds of every metric of every row."""
    out = {}
    for name, row in rows.items():
        dar = name.endswith("dar")
        values: dict[str, list] = {}
        for metrics in row["per_seed"]:
            descriptions = metrics["dar_descriptions"] if dar else metrics["descriptions"]
            for key, _, source in METRICS:
                value = metrics[key] if source is None else (descriptions or {}).get(key)
                if value is not None:
                    values.setdefault(key, []).append(value)
            for kind, value in metrics["questions_by_kind"].items():
                values.setdefault(f"questions_{kind}", []).append(value)
        out[name] = {
            "label": row["label"],
            "seeds": len(row["per_seed"]),
            "mean": {k: statistics.fmean(v) for k, v in values.items()},
            "sd": {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in values.items()},
        }
    return out
