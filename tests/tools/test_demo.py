"""`stic-cli demo`: the toy world end to end at a reduced size (every stage of the pipeline, a few pictures and
steps), run once, the way a user runs it; the report's numbers are checked against the files the run wrote."""

import json

import pytest
import yaml

from stic_plugin.tools.toyworld.data import SMOKE, read_truth
from stic_plugin.tools.toyworld.experiment import CHOSEN_LEARNING_RATES, DEMO_ROWS, read_records
from stic_plugin.tools.toyworld.scoring import score_predictions

from helpers import run_cli

# One worker runs the module (and the gpu_check smoke test): the demo fixture (conftest.py) then runs once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]

# The demo's trainings are named by their learning rate (the rates the full comparison chose)
STIC = f"stic-lr{CHOSEN_LEARNING_RATES['stic']:g}"
STAGE2 = f"stage2-lr{CHOSEN_LEARNING_RATES['stage2']:g}"


def test_every_stage_ran_with_the_shipped_commands(demo):
    out, result = demo
    steps = (
        "seed0/base:",
        "seed0/pref_stic:",
        f"seed0/{STIC}:",
        f"seed0/infused_by_{STIC}:",
        f"seed0/{STAGE2}:",
        "eval/seed0-base-test-dar:",
        "eval/seed0-stage2-test-dar:",
    )
    for step in steps:
        assert step in result.stdout
    assert (out / "seed0" / "base" / "model" / "model.safetensors").is_file()  # trained in full, from scratch
    base = yaml.safe_load((out / "recipes" / "seed0-base.yaml").read_text())
    assert base["finetuning_type"] == "full" and base["freeze_vision_tower"] is True  # the warm-started tower
    assert base["max_steps"] == SMOKE.base_steps and base["seed"] == 0
    for recipe in (
        "seed0-pref_stic",
        f"seed0-{STIC}",
        f"seed0-infused_by_{STIC}",
        f"seed0-{STAGE2}",
        "eval-seed0-stage2-test-dar",
    ):  # all on seed 0's base
        assert (
            yaml.safe_load((out / "recipes" / f"{recipe}.yaml").read_text())["model_name_or_path"] == base["output_dir"]
        )

    pairs = read_records(out / "seed0" / "data" / "pref_stic" / "pref_stic")
    assert 0 < len(pairs) <= SMOKE.unlabeled_images
    assert all(p["messages"][0]["content"].count("<image>") == 1 for p in pairs)
    stage1 = yaml.safe_load((out / "recipes" / f"seed0-{STIC}.yaml").read_text())
    assert stage1["stage"] == "stic_dpo" and stage1["stic_alpha"] == 1 / 1024 and stage1["pref_beta"] == 0.1
    assert stage1["learning_rate"] == CHOSEN_LEARNING_RATES["stic"]
    assert (out / "seed0" / STIC / "adapter_model.safetensors").is_file()
    log = [json.loads(line) for line in (out / "seed0" / STIC / "trainer_log.jsonl").read_text().splitlines()]
    assert log  # the trainer logged its steps

    infused = read_records(out / "seed0" / "data" / f"infused_by_{STIC}" / f"infused_by_{STIC}")
    assert infused and all("Image description:" in r["messages"][0]["content"] for r in infused)
    stage2 = yaml.safe_load((out / "recipes" / f"seed0-{STAGE2}.yaml").read_text())
    assert stage2["adapter_name_or_path"] == str(out / "seed0" / STIC)  # stage 2 continues stage 1
    assert (out / "seed0" / STAGE2 / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # nothing written outside output_dir


def test_the_report_holds_the_scores_of_the_predictions_written(demo):
    out, result = demo
    report = json.loads((out / "report.json").read_text())
    assert set(report["rows"]) == set(DEMO_ROWS)
    truth = read_truth(out / "world", "test")
    for row, folder, dar in (
        ("base", "seed0-base-test-direct", False),
        ("stic", "seed0-stic-test-direct", False),
        ("stage2_dar", "seed0-stage2-test-dar", True),
    ):
        records = read_records(out / "evaluations" / folder)
        assert len(records) == SMOKE.test_images * (1 + SMOKE.questions_per_image)
        scores = {k: v for k, v in score_predictions(records, truth, dar=dar).items() if k != "per_picture"}
        assert report["rows"][row] == [json.loads(json.dumps(scores))]
    assert (out / "report.md").stat().st_size > 0
    # the plots are of the full comparison's seeds and ablations, which the demo does not run
    assert not (out / "report.png").exists() and not (out / "training_curves.png").exists()
    printed = result.stdout[result.stdout.index("STIC stage 1+2 + DaR") :].splitlines()[0]
    assert printed in (out / "report.md").read_text()  # the table the demo printed, in its report


def test_a_rerun_reuses_the_finished_steps(demo):
    out, _ = demo
    again = run_cli(["stic-cli", "demo", f"output_dir={out}", "scale=smoke"], cwd=out.parent, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "done in" not in again.stdout  # nothing ran again
    assert json.loads((out / "report.json").read_text())["seeds"] == [0]
