"""The toy-world experiment: a base model that sees imperfectly, then STIC with the shipped commands.

Every step is a shipped command in its own process, as a user runs it:

    llamafactory-cli train  base.yaml             the base model, from scratch (stage sft, full, vision included);
                                                  shipped in the package, trained again with retrain_base=true
    stic-cli pref           on the unlabeled split (pictures only)
    llamafactory-cli train  stage1.yaml           stage: stic_dpo
    stic-cli infuse         on the instruction split, with the stage-1 adapter
    llamafactory-cli train  stage2.yaml           stage: sft, continuing the stage-1 adapter
    stic-cli dar            on the validation or test split: descriptions, and questions directly and with
                            describe-and-respond

The recipes are the shipped ``recipes/llava-1.5-7b/*.yaml`` with the toy scale's overrides (model, data,
learning rate, epochs, LoRA size, CPU), written to ``<output_dir>/recipes``. The method's own constants
(prompts, alpha, beta, corruption probabilities, the loss) are the recipes' own, never changed here.
The protocol of the comparison is ``docs/toy-world/protocol.md``.
"""

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...assets import dataset_entry, default_infusion_format_file
from . import scoring
from .data import WORLD_SEED, Prompts, Scale, read_truth, write_world
from .model import build_model, build_tokenizer
from .steps import Steps, offline_env, tool

# A base model's initial weights come from torch's global generator and a one-thread warm start: two seeds
# built side by side (on the step threads) would draw from each other's generator.
_BASE_INIT = threading.Lock()

RECIPE_MODEL = "llava-1.5-7b"
SEEDS = (0, 1, 2, 3, 4)
# Every trained row is trained at each of these learning rates on the first seed, and the rate that scores best
# on the validation split is used on the test split (docs/toy-world/protocol.md).
LEARNING_RATE_GRID = (3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3)
# The rates `stic-cli demo full=true` chose (report.json's "learning_rates"; a test keeps them equal): the demo
# alone uses these.
CHOSEN_LEARNING_RATES = {
    "stic": 1.0e-4,
    "alpha0": 1.0e-4,
    "corruption_only": 1.0e-4,
    "bad_prompt_only": 3.0e-5,
    "preferred_sft": 1.0e-3,
    "defect_no_image": 3.0e-5,
    "defect_no_corruption": 3.0e-5,
    "stage2": 3.0e-4,
    "stage2_control": 1.0e-4,
    "stage2_without_stage1": 3.0e-4,
}
# Toy-scale training settings, set once before any evaluation: everything else is the shipped recipes'.
LORA = {"lora_rank": 16, "lora_alpha": 32}
EPOCHS = 2
GENERATION = {"max_new_tokens": 64, "batch_size": 64}
EVAL_BATCH = 64


@dataclass(frozen=True)
class Training:
    """One trained row: its data (the ``pref`` keys of its own preference data, or the descriptions infused
    into the instruction data), its training keys, and what it continues."""

    name: str
    label: str
    stage: str  # "stage1" (on preference data) or "stage2" (on the instruction data)
    pref: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data: str = "pairs"  # stage1: pairs | pairs_without_image | preferred_only; stage2: infused | plain
    after: str | None = None  # stage2: the stage-1 training it continues (None: the base model)


STIC = Training("stic", "STIC stage 1", "stage1")
STAGE1 = (
    STIC,
    Training("alpha0", "alpha = 0 (plain DPO)", "stage1", train={"stic_alpha": 0.0}),
    Training("corruption_only", "corrupted-image negatives only", "stage1", pref={"corruption_prob": 1.0}),
    Training("bad_prompt_only", "hallucination-prompt negatives only", "stage1", pref={"corruption_prob": 0.0}),
    Training("preferred_sft", "SFT on the preferred descriptions", "stage1", data="preferred_only"),
    Training(
        "defect_no_image", "authors' defect: stored prompt without its image", "stage1", data="pairs_without_image"
    ),
    Training(
        "defect_no_corruption",
        "authors' defect: corruption not applied",
        "stage1",
        pref={"corruptions": {"color_jitter": 1.0}, "jitter_brightness": 0.0, "jitter_hue": 0.0},
    ),
)
STAGE2 = (
    Training("stage2", "STIC stage 1+2", "stage2", data="infused", after="stic"),
    Training("stage2_control", "stage 1 + stage-2 control (no descriptions)", "stage2", data="plain", after="stic"),
    Training("stage2_without_stage1", "stage 2 without stage 1", "stage2", data="infused"),
)
TRAININGS = {training.name: training for training in STAGE1 + STAGE2}


@dataclass(frozen=True)
class Row:
    """One row of the comparison: a model (the base, or a training) evaluated one way."""

    name: str
    label: str
    training: str | None
    mode: str = "direct"  # direct | dar | true (answers after the true description: DaR's upper bound)


ROWS = (
    Row("base", "base", None),
    Row("base_dar", "base + DaR", None, "dar"),
    Row("base_true", "base + true description", None, "true"),
    *(Row(t.name, t.label, t.name) for t in STAGE1),
    Row("stage2", "STIC stage 1+2", "stage2"),
    Row("stage2_dar", "STIC stage 1+2 + DaR", "stage2", "dar"),
    Row("stage2_true", "STIC stage 1+2 + true description", "stage2", "true"),
    Row("stage2_control", STAGE2[1].label, "stage2_control"),
    Row("stage2_without_stage1", STAGE2[2].label, "stage2_without_stage1"),
    Row("stage2_without_stage1_dar", "stage 2 without stage 1 + DaR", "stage2_without_stage1", "dar"),
)
DEMO_ROWS = ("base", "base_dar", "stic", "stage2", "stage2_dar")


def shipped_base_models() -> Path:
    """The base models trained by ``stic-cli demo retrain_base=true``, one folder per seed."""
    return Path(__file__).resolve().parent / "base_models"


@dataclass
class Experiment:
    """Paths and settings of one run of the toy world under ``root``."""

    root: Path
    scale: Scale
    seeds: tuple[int, ...] = (0,)
    learning_rates: dict = field(default_factory=lambda: dict(CHOSEN_LEARNING_RATES))
    retrain_base: bool = False
    workers: int = 2

    def __post_init__(self):
        self.root = Path(self.root).absolute()
        self.world_dir = self.root / "world"
        self.recipes = self.root / "recipes"
        self.steps = Steps(self.root, offline_env(self.root), self.workers)
        self.cli, self.trainer = tool("stic-cli"), tool("llamafactory-cli")
        self.infusion_format = Path(default_infusion_format_file()).read_text(encoding="utf-8").rstrip("\n")

    # ---- the world and the base model ----
    def trains_base(self, seed: int) -> bool:
        return self.retrain_base or not (shipped_base_models() / f"seed{seed}" / "model.safetensors").is_file()

    def build_world(self) -> None:
        pretraining = any(self.trains_base(seed) for seed in self.seeds)
        inputs = {
            "scale": vars(self.scale),
            "world_seed": WORLD_SEED,
            "prompts": Prompts.shipped().all(),
            "infusion_format": self.infusion_format,
            "pretraining": pretraining,
        }
        if self.steps.done("world", inputs):
            return
        pictures = "" if pretraining else "no pretraining pictures (the base models are shipped), "
        print(
            f"  world: {pictures}{self.scale.unlabeled_images} unlabeled pictures, {self.scale.test_images} test "
            f"-> {self.world_dir}",
            flush=True,
        )
        write_world(self.world_dir, self.scale, Prompts.shipped(), self.infusion_format, pretraining)
        self.steps.mark_done("world", inputs, 0.0)

    def base_dir(self, seed: int) -> Path:
        return self.root / f"seed{seed}" / "base"

    def base_model(self, seed: int) -> str:
        if not self.trains_base(seed):
            return str(shipped_base_models() / f"seed{seed}")
        return str(self.base_dir(seed) / "model")

    def train_base(self, seed: int) -> None:
        """The base model of one seed, trained from scratch: its own initial weights and order of the
        pretraining data (the world and the tokenizer are the same for every seed). Training it again on
        another machine, or with another number of threads, gives another model (3000 steps amplify the
        smallest numerical difference): the demo therefore uses the shipped ones."""
        if not self.trains_base(seed):
            return
        init = self.base_dir(seed) / "init"
        prompts = Prompts.shipped()
        init_inputs = {"prompts": prompts.all(), "seed": seed}
        with _BASE_INIT:
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
            "freeze_vision_tower": True,  # the warm-started tower keeps what it sees; the rest learns to read it
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

        from ...assets import recipes_dir

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

    def data_dir(self, seed: int, name: str) -> Path:
        """The folder of one dataset (its own ``dataset_info.json``): steps that run side by side never write
        the same file."""
        return self.root / f"seed{seed}" / "data" / name

    @staticmethod
    def pref_name(training: Training) -> str:
        return f"pref_{training.name}" if training.pref else "pref_stic"

    def pref(self, seed: int, training: Training) -> tuple[Path, str]:
        """``stic-cli pref`` with a stage-1 training's ``pref`` keys: (dataset_dir, dataset name)."""
        name = self.pref_name(training)
        recipe = self._shipped(
            "pref",
            {
                "model_name_or_path": self.base_model(seed),
                "image_dir": str(self.world_dir / "images" / "unlabeled"),
                "dataset_dir": str(self.data_dir(seed, name)),
                "dataset_name": name,
                "max_samples": None,
                "seed": seed,
                "overwrite": True,
                **GENERATION,
                **training.pref,
            },
        )
        self._cli(f"seed{seed}/{name}", "pref", recipe)
        return self.data_dir(seed, name), name

    def preferred_only(self, seed: int, pairs: tuple[Path, str]) -> tuple[Path, str]:
        """``stic-cli pref2sft``: the preferred descriptions of a pref output as SFT data (paper Table 3)."""
        folder, name = pairs
        sft_name = f"{name}_preferred"
        self._cli(
            f"seed{seed}/{sft_name}",
            "pref2sft",
            {"dataset_dir": str(folder), "pref_dataset": name, "dataset_name": sft_name, "overwrite": True},
        )
        return folder, sft_name

    def without_image(self, seed: int, pairs: tuple[Path, str]) -> tuple[Path, str]:
        folder, name = pairs
        copy = f"{name}_without_image"
        return without_image(folder / name, self.data_dir(seed, copy), copy), copy

    def infuse(self, seed: int, describer: Path | None) -> tuple[Path, str]:
        """The instruction split with the descriptions of the base model (``describer`` None) or of a stage-1
        adapter infused: (dataset_dir, dataset name)."""
        name = "infused_by_base" if describer is None else f"infused_by_{describer.name}"
        recipe = self._shipped(
            "infuse",
            {
                "model_name_or_path": self.base_model(seed),
                "adapter_name_or_path": str(describer) if describer else None,
                "llava_file": str(self.world_dir / "instruct.json"),
                "image_folder": str(self.world_dir),
                "dataset_dir": str(self.data_dir(seed, name)),
                "dataset_name": name,
                "num_samples": None,
                "seed": seed,
                "overwrite": True,
                **GENERATION,
            },
        )
        self._cli(f"seed{seed}/{name}", "infuse", recipe)
        return self.data_dir(seed, name), name

    def instructions(self, seed: int) -> tuple[Path, str]:
        """The instruction split as it is, read by the plugin's ``llava`` formatter (the stage-2 control's
        data): (dataset_dir, dataset name)."""
        folder = self.data_dir(seed, "instructions")
        write_dataset_info(
            folder, {"instructions": {"file_name": str(self.world_dir / "instruct.json"), "formatting": "llava"}}
        )
        return folder, "instructions"

    def train(
        self, seed: int, training: Training, data: tuple[Path, str], learning_rate: float, after: Path | None = None
    ) -> Path:
        """Train one row on ``data`` (continuing the adapter ``after``); returns its adapter folder."""
        folder, dataset = data
        output = self.root / f"seed{seed}" / f"{training.name}-lr{learning_rate:g}"
        common = {
            **self._training_overrides(seed, output, folder),
            "dataset": dataset,
            "learning_rate": learning_rate,
            "num_train_epochs": EPOCHS,
            "gradient_accumulation_steps": 1,
            **training.train,
        }
        if training.stage == "stage1" and training.data != "preferred_only":
            recipe = self._shipped("stage1", {**common, "per_device_train_batch_size": 8})
        else:
            recipe = self._shipped(
                "stage2",
                {
                    **common,
                    "adapter_name_or_path": str(after) if after else None,
                    "per_device_train_batch_size": 8 if training.stage == "stage1" else 16,
                },
            )
            if training.data == "plain":  # LLaVA's records, whose image paths start at the world's folder
                recipe["media_dir"] = str(self.world_dir)
        self._train(f"seed{seed}/{output.name}", recipe, output)
        return output

    # ---- evaluation ----
    def predictions(self, name: str, split: str, mode: str) -> Path:
        return self.root / "evaluations" / f"{name.replace('/', '-')}-{split}-{mode}"

    def evaluate(self, seed: int, name: str, adapter: Path | None, split: str = "test", mode: str = "direct") -> dict:
        """``stic-cli dar`` with the base model of ``seed`` (and ``adapter``) on a split (greedy): descriptions
        and questions (``direct``), with describe-and-respond (``dar``), or the questions after their true
        description (``true``); scored against the ground truth."""
        predictions = self.predictions(name, split, mode)
        questions = f"{split}_true_descriptions.json" if mode == "true" else f"{split}.json"
        recipe = self._shipped(
            "dar",
            {
                "model_name_or_path": self.base_model(seed),
                "adapter_name_or_path": str(adapter) if adapter else None,
                "dataset": None,
                "llava_file": str(self.world_dir / questions),
                "image_folder": str(self.world_dir),
                "dataset_dir": str(predictions.parent),
                "predictions_name": predictions.name,
                "dar": mode == "dar",
                "metric": "none",
                "max_new_tokens": GENERATION["max_new_tokens"],
                "description_max_new_tokens": GENERATION["max_new_tokens"],
                "batch_size": EVAL_BATCH,
                "overwrite": True,
            },
        )
        self._cli(f"eval/{predictions.name}", "dar", recipe)
        return scoring.score_predictions(
            read_records(predictions), read_truth(self.world_dir, split), dar=mode == "dar"
        )


def read_records(folder: Path) -> list[dict]:
    """The records of a generated dataset or predictions folder (its part files)."""
    return [json.loads(line) for part in sorted(folder.glob("*.jsonl")) for line in part.read_text().splitlines()]


def write_dataset_info(folder: Path, entries: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_info.json").write_text(json.dumps(entries, indent=2) + "\n")


def without_image(pairs: Path, folder: Path, name: str) -> Path:
    """A copy of the pairs in ``pairs`` (a pref output's folder) as the authors' released data was used in
    training: the stored prompt without its image placeholder, so no image reaches the model (their first
    data defect). Written to ``folder`` as the dataset ``name``."""
    lines = []
    for record in read_records(pairs):
        messages = [{**m, "content": m["content"].replace("<image>", "").lstrip("\n")} for m in record["messages"]]
        lines.append(json.dumps({"messages": messages, "chosen": record["chosen"], "rejected": record["rejected"]}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    entry = dataset_entry("stic_pref")
    entry["columns"] = {key: column for key, column in entry["columns"].items() if key != "images"}
    write_dataset_info(folder, {name: {**entry, "file_name": f"{name}.jsonl"}})
    return folder
