"""The smallest end-to-end STIC stage-1 run, on CPU, with nothing downloaded.

Run: ``python -m stic_plugin.demo --output-dir demo_output`` (or ``make demo``). It builds a tiny
LLaVA-architecture model and sample images, writes a small preference dataset in the format the
generator writes, trains it with ``llamafactory-cli train`` and ``stage: stic_dpo`` (LoRA), and prints
a summary. Everything it writes stays under ``--output-dir``; running it again reuses the tiny model.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .fixtures import build_all

PREF_ENTRY = {
    "formatting": "sharegpt",
    "ranking": True,
    "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def write_demo_preferences(dataset_dir: Path, images: list[Path]) -> str:
    """Hand-written pairs (a faithful description against an invented one) for each sample image."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    with open(dataset_dir / "demo_pref.jsonl", "w", encoding="utf-8") as out:
        for index, image in enumerate(images):
            record = {
                "messages": [{"role": "user", "content": "<image>Illustrate the details of the picture."}],
                "chosen": {"role": "assistant", "content": f"coloured shapes on a plain background, image {index}"},
                "rejected": {"role": "assistant", "content": "a dog walking on a busy street with many people"},
                "images": [os.path.relpath(image, dataset_dir)],
            }
            out.write(json.dumps(record) + "\n")
    (dataset_dir / "dataset_info.json").write_text(json.dumps({"demo_pref": {"file_name": "demo_pref.jsonl", **PREF_ENTRY}}, indent=2))
    return "demo_pref"


def stage1_recipe(model: str, dataset_dir: Path, dataset: str, output_dir: Path) -> dict:
    return {
        "model_name_or_path": model,
        "template": "llava",
        "stage": "stic_dpo",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "lora_rank": 8,
        "pref_beta": 0.1,
        "stic_alpha": 1 / 1024,
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "cutoff_len": 256,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 2,
        "num_train_epochs": 2,
        "logging_steps": 1,
        "learning_rate": 1.0e-3,
        "plot_loss": True,
        "report_to": "none",
        "use_cpu": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stic_plugin.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="demo_output", help="everything is written here (default demo_output)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLCONFIGDIR", str(Path(args.output_dir, ".cache", "matplotlib").absolute()))
    os.environ.setdefault("HF_HOME", str(Path(args.output_dir, ".cache", "huggingface").absolute()))

    out = Path(args.output_dir).absolute()
    started = time.time()
    print(f"[1/3] tiny model and images -> {out / 'fixtures'}")
    built = build_all(out / "fixtures")
    images = sorted(Path(built["images"]).glob("*.png"))

    print("[2/3] preference data (stage 1)")
    dataset_dir = out / "data"
    dataset = write_demo_preferences(dataset_dir, images)

    print("[3/3] llamafactory-cli train, stage stic_dpo")
    import yaml

    train_dir = out / "stage1"
    recipe = out / "stage1.yaml"
    recipe.write_text(yaml.safe_dump(stage1_recipe(built["tiny-llava"], dataset_dir, dataset, train_dir)))
    cli = shutil.which("llamafactory-cli") or str(Path(sys.executable).parent / "llamafactory-cli")
    log_path = out / "stage1.log"
    with open(log_path, "w") as log:
        result = subprocess.run([cli, "train", str(recipe)], stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        print(f"training failed (exit {result.returncode}); see {log_path}", file=sys.stderr)
        return result.returncode

    steps = [json.loads(line) for line in (train_dir / "trainer_log.jsonl").read_text().splitlines()]
    steps = [step for step in steps if "loss" in step]
    print(f"\nSTIC stage 1 on {len(images)} images: {len(steps)} steps in {time.time() - started:.0f} s")
    print(f"  loss      {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}")
    print(f"  NLL(y_w)  {steps[0]['stic/nll']:.2f} -> {steps[-1]['stic/nll']:.2f}")
    print(f"  adapter   {train_dir}")
    print(f"  loss plot {train_dir / 'training_loss.png'}")
    print(f"  recipe    {recipe}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
