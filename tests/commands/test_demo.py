"""`stic-cli demo`, the project's main job: the whole pipeline on a tiny model, run once (minutes)."""

import json

import pytest
import yaml

from helpers import run_cli


@pytest.mark.slow
def test_demo_runs_end_to_end_with_recipes_that_rerun_from_scratch(tmp_path):
    out = tmp_path / "demo"
    first = run_cli(["stic-cli", "demo", f"output_dir={out}", "images=4"], cwd=tmp_path, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    for step in ("[pref]", "[stage1]", "[infuse]", "[stage2]", "[dar]"):
        assert step in first.stdout
    assert "STIC demo finished" in first.stdout
    assert (out / "saves" / "stage1" / "adapter_model.safetensors").is_file()
    assert (out / "saves" / "stage2" / "adapter_model.safetensors").is_file()
    assert (out / "saves" / "stage1" / "training_loss.png").is_file()
    stage1 = [json.loads(line) for line in (out / "saves" / "stage1" / "trainer_log.jsonl").read_text().splitlines()]
    assert any("stic/nll" in line for line in stage1)
    stage2_args = (out / "recipes" / "stage2.yaml").read_text()
    assert f"adapter_name_or_path: {out / 'saves' / 'stage1'}" in stage2_args  # stage 2 continues stage 1
    predictions = (out / "predictions" / "dar").glob("*.jsonl")
    assert sum(len(p.read_text().splitlines()) for p in predictions) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # nothing written outside output_dir

    # A rerun starts every step over, never stopping at the first run's outputs: each recipe says so. (The
    # demo is not run a second time here: that would double the slowest test of the suite.)
    recipes = {
        name: yaml.safe_load((out / "recipes" / f"{name}.yaml").read_text())
        for name in ("pref", "stage1", "infuse", "stage2", "dar")
    }
    assert all(recipes[name]["overwrite"] is True for name in ("pref", "infuse", "dar"))
    assert all(recipes[name]["overwrite_output_dir"] is True for name in ("stage1", "stage2"))
