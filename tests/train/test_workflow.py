"""`llamafactory-cli train` with `stage: stic_dpo` (run_stic_dpo, through the patched tuner), in a subprocess,
the way users run it: a recipe (Qwen2-VL, the authors' record format), the same keys on the command line (LLaVA),
and under torchrun; a configuration error through the same entry point in this process (run_exp). (A recipe on
LLaVA with the records stic-cli pref wrote: tests/commands/test_pref.py.)"""

import json
from pathlib import Path

import pytest
import yaml

from helpers import run_cli


def _recipe(tmp_path: Path, model: str, template: str, dataset_dir: Path, dataset: str, **extra) -> Path:
    config = {
        "model_name_or_path": model,
        "template": template,
        "stage": "stic_dpo",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "lora_rank": 8,
        "stic_alpha": 0.0009765625,
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "cutoff_len": 256,
        "output_dir": str(tmp_path / "out"),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1.0e-3,
        "report_to": "none",
        "use_cpu": True,
        "plot_loss": True,
    }
    config.update(extra)
    path = tmp_path / "stage1.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _assert_trained(output_dir: Path, alpha: float = 0.0009765625) -> list[dict]:
    from safetensors.torch import load_file

    weights = load_file(output_dir / "adapter_model.safetensors")
    lora_b = {name: tensor for name, tensor in weights.items() if "lora_B" in name}
    assert lora_b, "no LoRA weights saved"
    # LoRA's B matrices start at zero: a non-zero one means the optimiser moved the adapter.
    assert any(tensor.abs().sum() > 0 for tensor in lora_b.values())

    lines = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "loss" in line]
    assert len(steps) == 2
    for line in steps:
        assert line["stic/nll"] > 0
        assert line["loss"] == pytest.approx(line["stic/dpo_loss"] + alpha * line["stic/nll"], rel=1e-5)
    assert (output_dir / "training_stic_nll.png").is_file()
    return steps


@pytest.mark.slow
def test_stic_dpo_trains_tiny_qwen2vl_on_the_authors_record_format(tiny, tmp_path):
    """The STIC authors' released preference records (no image placeholder), read by `formatting: stic`."""
    data = tmp_path / "data"
    data.mkdir()
    images = sorted(Path(tiny["images"]).glob("*.png"))
    records = [
        {
            "image": image.name,
            "image_corruption": False,
            "hallu_prompt": "",
            "chosen": [
                {"role": "user", "content": "Interpret the scene shown in the image."},
                {"role": "assistant", "content": f"red and blue shapes, number {i}"},
            ],
            "rejected": [
                {"role": "user", "content": "Interpret the scene shown in the image."},
                {"role": "assistant", "content": "a cat"},
            ],
        }
        for i, image in enumerate(images)
    ]
    (data / "authors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    info = {"authors": {"file_name": "authors.jsonl", "formatting": "stic", "ranking": True}}
    (data / "dataset_info.json").write_text(json.dumps(info))
    recipe = _recipe(tmp_path, tiny["tiny-qwen2vl"], "qwen2_vl", data, "authors", media_dir=tiny["images"])
    result = run_cli(["llamafactory-cli", "train", str(recipe)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    _assert_trained(tmp_path / "out")


def test_dataset_without_ranking_is_a_clear_error(tiny, pref_dataset_dir, tmp_path):
    info = json.loads((pref_dataset_dir / "dataset_info.json").read_text())
    data = tmp_path / "data"
    data.mkdir()
    (data / "stic_pref.jsonl").write_text((pref_dataset_dir / "stic_pref.jsonl").read_text())
    (data / "dataset_info.json").write_text(json.dumps({"plain": {**info["stic_pref"], "ranking": False}}))
    recipe = _recipe(tmp_path, tiny["tiny-llava"], "llava", data, "plain")
    from llamafactory.train.tuner import run_exp  # what llamafactory-cli train runs with the recipe

    with pytest.raises(SystemExit) as failed:  # the message alone, without a traceback
        run_exp(yaml.safe_load(recipe.read_text()))
    assert "`stage: stic_dpo` trains on preference pairs, but dataset `plain` is not one" in str(failed.value)
    assert '"ranking": true' in str(failed.value)


def test_a_dataset_name_not_in_dataset_info_names_the_folder_and_the_closest_name(tiny, pref_dataset_dir, tmp_path):
    """Before: a 25-line traceback ending with `Undefined dataset stic_prefs in dataset_info.json.`"""
    from llamafactory.train.tuner import run_exp

    recipe = _recipe(tmp_path, tiny["tiny-llava"], "llava", pref_dataset_dir, "stic_prefs")
    with pytest.raises(SystemExit) as failed:
        run_exp(yaml.safe_load(recipe.read_text()))
    message = str(failed.value)
    assert f"dataset `stic_prefs` is not in {pref_dataset_dir.absolute() / 'dataset_info.json'}" in message
    assert "Did you mean `stic_pref`?" in message and "Preference datasets there: `stic_pref`." in message
    assert failed.value.code == f"stic_plugin: error: {message}"


@pytest.mark.parametrize("stage", ["stic_dpo", "sft"])
def test_a_template_that_does_not_fit_the_model_stops_before_the_weights_load(tiny, pref_dataset_dir, tmp_path, stage):
    """Before: a LLaVA-1.5 trained with llava_next_mistral ended a 315-line log with `KeyError: 'image_sizes'`."""
    from llamafactory.train.tuner import run_exp

    recipe = yaml.safe_load(
        _recipe(tmp_path, tiny["tiny-llava"], "llava_next_mistral", pref_dataset_dir, "stic_pref").read_text()
    )
    if stage == "sft":
        recipe.update(stage="sft", stic_alpha=None)
        recipe = {key: value for key, value in recipe.items() if value is not None}
    with pytest.raises(SystemExit) as failed:
        run_exp(recipe)
    message = str(failed.value)
    assert "template `llava_next_mistral` does not fit" in message and "model type llava" in message
    assert "llava for llava-1.5-*-hf" in message  # which template to use
    assert not (tmp_path / "out").exists()  # stopped before anything was trained or saved


def test_a_model_not_found_offline_says_where_it_was_looked_for(tiny, pref_dataset_dir, tmp_path, monkeypatch):
    from llamafactory.train.tuner import run_exp

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = yaml.safe_load(
        _recipe(tmp_path, "my-org/no-such-model", "llava", pref_dataset_dir, "stic_pref").read_text()
    )
    with pytest.raises(SystemExit) as failed:
        run_exp(recipe)
    message = str(failed.value)
    assert "cannot load the model 'my-org/no-such-model': looked up on the Hugging Face hub" in message
    assert "HF_HUB_OFFLINE is set" in message and "local folder" in message


@pytest.mark.slow
def test_configuration_mistakes_end_with_one_message_not_a_traceback(tiny, pref_dataset_dir, tmp_path):
    """As users see them, through llamafactory-cli, with keys given on its command line: a misspelled key (found
    as the arguments are parsed) and a template that does not fit the model (found once the model's configuration
    is read). The tests above raise the others in this process, each as the SystemExit that prints its message."""
    recipe = _recipe(tmp_path, tiny["tiny-llava"], "llava", pref_dataset_dir, "stic_pref")
    for overrides, message in (
        (["stic_alpah=0.1"], "Unknown STIC option `stic_alpah`. Did you mean `stic_alpha`?"),
        (["template=llava_next_mistral"], "template `llava_next_mistral` does not fit"),
    ):
        result = run_cli(["llamafactory-cli", "train", str(recipe), *overrides], cwd=tmp_path)
        assert result.returncode == 1
        assert f"stic_plugin: error: {message}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_stic_dpo_under_torchrun_two_processes(tiny, pref_dataset_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny["tiny-llava"], "llava", pref_dataset_dir, "stic_pref")
    result = run_cli(
        ["llamafactory-cli", "train", str(recipe)],
        cwd=tmp_path,
        FORCE_TORCHRUN="1",
        NPROC_PER_NODE="2",
        MASTER_PORT="29533",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Process rank: 0, world size: 2" in output and "Process rank: 1, world size: 2" in output
    _assert_trained(tmp_path / "out")


@pytest.mark.slow
def test_argv_form_dispatches_to_stic_dpo(tiny, pref_dataset_dir, tmp_path):
    args = [
        "llamafactory-cli",
        "train",
        "--model_name_or_path",
        tiny["tiny-llava"],
        "--template",
        "llava",
        "--stage",
        "stic_dpo",
        "--do_train",
        "--finetuning_type",
        "lora",
        "--lora_target",
        "all",
        "--dataset",
        "stic_pref",
        "--dataset_dir",
        str(pref_dataset_dir),
        "--cutoff_len",
        "256",
        "--output_dir",
        str(tmp_path / "out"),
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "2",
        "--logging_steps",
        "1",
        "--report_to",
        "none",
        "--use_cpu",
        "--stic_alpha",
        "0.5",
        "--plot_loss",
    ]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    _assert_trained(tmp_path / "out", alpha=0.5)
