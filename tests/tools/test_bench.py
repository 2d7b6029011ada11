"""`stic-cli bench` in its tiny CPU mode: it runs and reports every figure (a smoke test, not a speed test),
refuses a 7B architecture without a GPU, and records a batch size that runs out of memory."""

import json
import random

import pytest

from stic_plugin.tools.bench import spread_lengths

from helpers import VLLM_ENV, VLLM_EXPECTED, run_cli


def test_spread_lengths_are_clipped_and_centred():
    lengths = spread_lengths(5000, 100, 1000, 400, random.Random(0))
    assert min(lengths) >= 100 and max(lengths) <= 1000
    assert 350 < sum(lengths) / len(lengths) < 450
    assert len(set(lengths)) > 300  # a real spread, not one value


def tiny_bench(tmp_path, engines: list[str]):
    """``stic-cli bench`` in its CPU smoke mode: (its figures, the finished process)."""
    out = tmp_path / "bench.json"
    result = run_cli(
        [
            "stic-cli",
            "bench",
            "architecture=tiny",
            f"engines=[{','.join(engines)}]",
            "batch_sizes=[1,3]",
            "new_tokens=6",
            "spread_min=2",
            "spread_max=12",
            "spread_mean=5",
            "train_pairs=2",
            "train_response_tokens=12",
            "train_steps=1",
            "warmup_steps=1",
            f"output_json={out}",
        ],
        cwd=tmp_path,
        **VLLM_ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result


@pytest.mark.slow
def test_bench_tiny_cpu_mode_reports_every_figure(tmp_path):
    engines = ["continuous", "plain"] + (["vllm"] if VLLM_EXPECTED else [])
    figures, result = tiny_bench(tmp_path, engines)
    assert figures["device"].startswith("CPU")
    runs = {(row["run"], row["engine"], row["batch_size"]) for row in figures["generation"]}
    for engine in engines:
        for batch in (1, 3):
            assert {("pref, equal lengths", engine, batch), ("pref, spread of lengths", engine, batch)} <= runs
    for row in figures["generation"]:
        # every request wrote exactly its forced length, on every engine
        assert row["useful_tokens"] == row["forced_tokens"] and row["tokens_per_second"] > 0
        if row["run"] == "pref, equal lengths":
            assert row["forced_tokens"] == 6 * row["requests"]
        if row["engine"] == "continuous":
            assert 0 < row["slot_occupancy"] <= 1
            if row["run"] == "pref, spread of lengths":  # half the pairs share their image, as in pref
                assert row["shared_prefix_runs"] == row["requests"] // 4
    stages = [row["stage"] for row in figures["training"]]
    assert stages == ["dpo", "stic_dpo", "stic_dpo vs dpo"]
    assert figures["projection_paper_workload"]["total_hours"] > 0
    assert "stic_dpo / dpo step time" in result.stdout and "paper workload" in result.stdout


def test_bench_refuses_a_7b_architecture_without_a_gpu(stic):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    result = stic("bench")
    assert result.returncode == 2 and "no GPU here" in result.stderr and "architecture=tiny" in result.stderr


def test_a_batch_size_that_runs_out_of_memory_is_recorded_and_the_rest_measured(tiny, monkeypatch):
    from stic_plugin.generation.base import Generator, GeneratorSettings
    from stic_plugin.generation.continuous import CacheTooLarge
    from stic_plugin.generation.transformers_engine import TransformersModel
    from stic_plugin.tools.bench import BenchConfig, BenchEngines, bench_generation, generation_lines, measured

    loaded = TransformersModel.load(GeneratorSettings(tiny["tiny-llava"], "llava", infer_dtype="float32"))
    real_generate = Generator.generate

    def generate(self, requests, *args, slots=None, **kwargs):
        if slots == 3:
            raise CacheTooLarge("the key/value cache for 3 sequences needs 9.0 GiB and 1.0 GiB are free")
        return real_generate(self, requests, *args, slots=slots, **kwargs)

    monkeypatch.setattr(Generator, "generate", generate)
    cfg = BenchConfig(architecture="tiny", batch_sizes=[1, 3], warmup_steps=1)
    engines = BenchEngines(loaded, cfg)
    rows = bench_generation(engines, cfg, ["Describe the image."], lambda n: [4] * n, "pref, equal lengths", 1)
    assert [(row["engine"], row["batch_size"], "error" in row) for row in rows] == [
        ("continuous", 1, False),
        ("plain", 1, False),
        ("continuous", 3, True),
        ("plain", 3, True),
    ]
    assert all(row["useful_tokens"] == 4 for row in measured(rows))
    assert "\n".join(generation_lines(rows)).count("out of memory") == 2


def test_bench_measures_only_the_parts_asked_for_with_the_decode_bound_on_a_cpu_too(tiny, stic, tmp_path):
    out = tmp_path / "bench.json"
    keys = dict(parts="[generation]", engines="[plain]", batch_sizes="[1]", new_tokens=3, spread_min=2, spread_max=4)
    result = stic(
        "bench",
        f"model_name_or_path={tiny['tiny-llava']}",
        "template=llava",
        *[f"{k}={v}" for k, v in keys.items()],
        "spread_mean=3",
        f"output_json={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["training"] == [] and figures["projection_paper_workload"] is None
    assert [row["run"] for row in figures["generation"]] == ["pref, equal lengths", "pref, spread of lengths"]
    equal = figures["generation"][0]
    assert figures["memory_bandwidth_gb_per_s"] > 0 and equal["decode_bound_tokens_per_second"] > 0
    assert equal["fraction_of_bound"] == round(equal["tokens_per_second"] / equal["decode_bound_tokens_per_second"], 4)
    assert all(row["warmup_seconds"] >= 0 for row in figures["generation"])
    # a line as each run ends; no training table
    assert "pref, equal lengths, plain, batch 1:" in result.stdout and "training step" not in result.stdout


@pytest.mark.parametrize(
    "parts, message",
    [(["descriptions"], "need generation too"), (["generation", "speed"], "`parts` must list"), ([], "`parts` must")],
)
def test_bench_refuses_parts_it_cannot_measure(parts, message):
    from stic_plugin.tools.bench import BenchConfig

    with pytest.raises(ValueError, match=message):
        BenchConfig(architecture="tiny", parts=parts)
