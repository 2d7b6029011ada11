"""``stic-cli demo``: the whole STIC pipeline on a tiny model, on CPU, with nothing downloaded.

Run: ``stic-cli demo`` (or ``make demo``); ``stic-cli demo output_dir=/tmp/stic-demo images=16``.
It builds (or reuses) a tiny LLaVA-architecture model with random weights and sample images, then
runs the real commands, each in its own process, exactly as on a GPU machine:

    stic-cli pref      -> llamafactory-cli train (stage 1, stic_dpo)
    stic-cli infuse    -> llamafactory-cli train (stage 2, sft, continuing the stage-1 adapter)
    stic-cli dar

The recipes are the shipped ``recipes/llava-1.5-7b/*.yaml`` with tiny-model overrides, written to
``output_dir/recipes``. Everything, caches included, stays under ``output_dir``; a rerun starts every
step over. The model is random, so the texts are noise: the demo shows the plumbing.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..assets import recipes_dir
from ..fixtures import build_all
from .config import DemoConfig

RECIPE_MODEL = "llava-1.5-7b"


def _tiny_recipe(name: str, overrides: dict) -> dict:
    import yaml

    shipped = recipes_dir() / RECIPE_MODEL / f"{name}.yaml"
    values = yaml.safe_load(shipped.read_text()) if shipped.is_file() else {}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def _write_source_data(data_dir: Path, images: list[Path]) -> tuple[Path, Path]:
    """A small LLaVA-format instruction set (for infuse) and multiple-choice questions (for dar)."""
    colours = ["red", "blue", "green", "yellow"]
    sft = []
    for index, image in enumerate(images):
        sft.append(
            {
                "id": f"demo-{index}",
                "image": image.name,
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat do you see?"},
                    {"from": "gpt", "value": f"Coloured shapes; the largest one is {colours[index % 4]}."},
                    {"from": "human", "value": "Is it a photograph?"},
                    {"from": "gpt", "value": "No, it is a drawing."},
                ],
            }
        )
    sft.append(
        {
            "id": "demo-text",
            "conversations": [{"from": "human", "value": "Say hello."}, {"from": "gpt", "value": "Hello!"}],
        }
    )
    questions = [
        {
            "id": f"q-{index}",
            "image": image.name,
            "conversations": [
                {"from": "human", "value": "<image>\nIs this a drawing or a photograph?\nA. drawing\nB. photograph"},
                {"from": "gpt", "value": "A"},
            ],
        }
        for index, image in enumerate(images)
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "demo_llava.json").write_text(json.dumps(sft, indent=1))
    (data_dir / "demo_questions.json").write_text(json.dumps(questions, indent=1))
    return data_dir / "demo_llava.json", data_dir / "demo_questions.json"


def _run(step: str, command: list[str], logs: Path, env: dict) -> float:
    print(f"\n[{step}] {' '.join(command)}", flush=True)
    started = time.time()
    log_path = logs / f"{step}.log"
    with open(log_path, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.time() - started
    tail = log_path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(tail) if line.startswith("stic-cli ")]
    summary = (
        tail[starts[-1] :]
        if starts
        else [line for line in tail if line.strip().startswith(("train_loss", "train_runtime"))]
    )
    for line in summary[:8]:
        print(f"    {line.strip()}")
    if result.returncode != 0:
        print("\n".join(tail[-30:]), file=sys.stderr)
        raise SystemExit(f"[{step}] failed (exit {result.returncode}); full log: {log_path}")
    print(f"    done in {seconds:.0f} s (log: {log_path})", flush=True)
    return seconds


def run_demo(cfg: DemoConfig) -> int:
    import yaml

    out = Path(cfg.output_dir).absolute()
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HOME", str(out / ".cache" / "huggingface"))
    env.setdefault("MPLCONFIGDIR", str(out / ".cache" / "matplotlib"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    logs, recipes, data = out / "logs", out / "recipes", out / "data"
    for folder in (logs, recipes, data):
        folder.mkdir(parents=True, exist_ok=True)
    cli = shutil.which("stic-cli", path=env["PATH"]) or "stic-cli"
    trainer = shutil.which("llamafactory-cli", path=env["PATH"]) or "llamafactory-cli"

    started = time.time()
    print(f"[fixtures] tiny LLaVA-architecture model and {cfg.images} images -> {out / 'fixtures'}", flush=True)
    built = build_all(out / "fixtures", image_count=cfg.images)
    model, images = built["tiny-llava"], sorted(Path(built["images"]).glob("*.png"))[: cfg.images]
    sft_file, questions_file = _write_source_data(data, images)
    # overwrite: the demo's outputs are its own, so a rerun with other settings starts them over
    tiny = dict(
        model_name_or_path=model, template="llava", max_new_tokens=cfg.max_new_tokens, batch_size=4, overwrite=True
    )
    train = dict(
        model_name_or_path=model,
        template="llava",
        dataset_dir=str(data),
        cutoff_len=512,
        bf16=None,
        use_cpu=True,
        lora_rank=8,
        lora_alpha=16,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_steps=1000,
        num_train_epochs=2,
        preprocessing_num_workers=None,
        dataloader_num_workers=0,
    )
    stage1_dir, stage2_dir = out / "saves" / "stage1", out / "saves" / "stage2"
    recipe_values = {
        "pref": _tiny_recipe(
            "pref", dict(tiny, image_dir=str(Path(built["images"])), dataset_dir=str(data), max_samples=cfg.images)
        ),
        "stage1": _tiny_recipe("stage1", dict(train, output_dir=str(stage1_dir), learning_rate=1.0e-3)),
        "infuse": _tiny_recipe(
            "infuse",
            dict(
                tiny,
                adapter_name_or_path=str(stage1_dir),
                llava_file=str(sft_file),
                image_folder=str(Path(built["images"])),
                dataset_dir=str(data),
                num_samples=None,
            ),
        ),
        "stage2": _tiny_recipe(
            "stage2",
            dict(train, adapter_name_or_path=str(stage1_dir), output_dir=str(stage2_dir), learning_rate=1.0e-3),
        ),
        "dar": _tiny_recipe(
            "dar",
            dict(
                tiny,
                adapter_name_or_path=str(stage2_dir),
                dataset=None,
                llava_file=str(questions_file),
                image_folder=str(Path(built["images"])),
                dataset_dir=str(out / "predictions"),
                max_new_tokens=8,
                description_max_new_tokens=cfg.max_new_tokens,
            ),
        ),
    }
    for name, values in recipe_values.items():
        (recipes / f"{name}.yaml").write_text(yaml.safe_dump(values, sort_keys=False))

    timings = {}
    timings["pref"] = _run("pref", [cli, "pref", str(recipes / "pref.yaml")], logs, env)
    timings["stage1"] = _run("stage1", [trainer, "train", str(recipes / "stage1.yaml")], logs, env)
    timings["infuse"] = _run("infuse", [cli, "infuse", str(recipes / "infuse.yaml")], logs, env)
    timings["stage2"] = _run("stage2", [trainer, "train", str(recipes / "stage2.yaml")], logs, env)
    timings["dar"] = _run("dar", [cli, "dar", str(recipes / "dar.yaml")], logs, env)

    pref_stats = json.loads((data / "stic_pref.stats.json").read_text())
    sft_stats = json.loads((data / "stic_sft.stats.json").read_text())
    dar_stats = json.loads((out / "predictions" / "dar.stats.json").read_text())
    stage1_log = [json.loads(line) for line in (stage1_dir / "trainer_log.jsonl").read_text().splitlines()]
    stage1_steps = [line for line in stage1_log if "loss" in line]
    print(f"\nSTIC demo finished in {time.time() - started:.0f} s, everything under {out}")
    print(f"  stage 1 data   {pref_stats['pairs']} pairs {pref_stats['pairs_by_negative']}  ({data / 'stic_pref'})")
    print(
        f"  stage 1 train  loss {stage1_steps[0]['loss']:.4f} -> {stage1_steps[-1]['loss']:.4f}, "
        f"NLL(y_w) {stage1_steps[0]['stic/nll']:.1f} -> {stage1_steps[-1]['stic/nll']:.1f}  "
        f"(curve: {stage1_dir / 'training_loss.png'})"
    )
    print(f"  stage 2 data   {sft_stats['samples']} samples  ({data / 'stic_sft'})")
    print(f"  stage 2 train  adapter {stage2_dir}  (curve: {stage2_dir / 'training_loss.png'})")
    if dar_stats.get("counted"):
        print(
            f"  DaR            accuracy {dar_stats['accuracy']:.2f} ({dar_stats['correct']}/{dar_stats['counted']}) "
            "from a random model: noise, as expected"
        )
    print("  seconds        " + ", ".join(f"{step} {seconds:.0f}" for step, seconds in timings.items()))
    print(f"  recipes        {recipes}  (the shipped {RECIPE_MODEL} recipes with tiny-model overrides)")
    return 0
