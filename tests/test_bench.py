"""`stic-cli bench` in its tiny CPU mode: it runs and reports every figure (a smoke test, not a speed test)."""

import json
import random

import pytest

from conftest import run_cli
from stic_plugin.bench import ForcedLengths, spread_lengths

pytestmark = pytest.mark.slow


def test_spread_lengths_are_clipped_and_centred():
    lengths = spread_lengths(5000, 100, 1000, 400, random.Random(0))
    assert min(lengths) >= 100 and max(lengths) <= 1000
    assert 350 < sum(lengths) / len(lengths) < 450
    assert len(set(lengths)) > 300  # a real spread, not one value


def test_forced_lengths_processor():
    import torch

    processor = ForcedLengths([1, 3], prompt_width=2, stop_id=0, allowed_vocab=5)
    scores = processor(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 8))  # one token generated so far
    assert scores[0].argmax().item() == 0 and torch.isinf(scores[0, 1:]).all()  # row 0: must stop now
    assert torch.isinf(scores[1, 0]) and torch.isinf(scores[1, 5:]).all() and not torch.isinf(scores[1, 1:5]).any()


def test_bench_tiny_cpu_mode_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli(["stic-cli", "bench", "architecture=tiny", "batch_sizes=[1,3]", "new_tokens=6", "spread_min=2",
                      "spread_max=12", "spread_mean=5", "train_pairs=2", "train_response_tokens=12", "train_steps=1",
                      "warmup_steps=1", f"output_json={out}"], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["device"].startswith("CPU")
    runs = {(row["run"], row["batch_size"]) for row in figures["generation"]}
    assert {("pref, equal lengths", 1), ("pref, equal lengths", 3), ("pref, spread of lengths", 3)} <= runs
    for row in figures["generation"]:
        assert row["tokens_written"] == row["useful_tokens"] and row["tokens_per_second"] > 0
    stages = [row["stage"] for row in figures["training"]]
    assert stages == ["dpo", "stic_dpo", "stic_dpo vs dpo"]
    assert figures["projection_paper_workload"]["total_hours"] > 0
    assert "stic_dpo / dpo step time" in result.stdout and "paper workload" in result.stdout


def test_bench_refuses_a_7b_architecture_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    result = run_cli(["stic-cli", "bench"], cwd=tmp_path)
    assert result.returncode == 2 and "no GPU here" in result.stderr and "architecture=tiny" in result.stderr
