"""``scripts/gpu_check.sh``: its report (one JSON with every figure and the targets, a summary of at most 40 lines)
on the records of a whole GPU run, and the script itself in its CPU smoke mode, with one step made to fail."""

import json
import subprocess
import tarfile

import pytest

from stic_plugin.tools import gpu_check

from helpers import REPO, subprocess_env

GEOMETRIES = ("llava-1.5-7b", "llava-v1.6-mistral-7b")
BATCHES = (1, 64, 128)


def generation_figures(engine: str, speed: float, bound: float) -> dict:
    """What ``stic-cli bench parts=[generation]`` writes, reduced to the figures the report reads."""
    rows = []
    for run in (gpu_check.EQUAL, gpu_check.SPREAD):
        for batch in BATCHES:
            row = {"run": run, "engine": engine, "batch_size": batch, "tokens_per_second": speed * batch}
            if run == gpu_check.EQUAL:
                row["decode_bound_tokens_per_second"] = bound * batch
                row["fraction_of_bound"] = round(speed / bound, 4)
            rows.append(row)
    config = {"batch_sizes": list(BATCHES), "engines": [engine], "parts": ["generation"]}
    return {"memory_bandwidth_gb_per_s": 4300.0, "config": config, "generation": rows, "training": []}


def training_figures(dpo_seconds: float, stic_seconds: float) -> dict:
    stages = [
        {"stage": stage, "step_seconds": seconds, "mfu": 0.4, "peak_memory_gib": 60.0}
        for stage, seconds in (("dpo", dpo_seconds), ("stic_dpo", stic_seconds))
    ]
    ratio = {"stage": "stic_dpo vs dpo", "step_time_ratio": round(stic_seconds / dpo_seconds, 4)}
    return {
        "memory_bandwidth_gb_per_s": None,
        "config": {"parts": ["training"]},
        "generation": [],
        "training": [*stages, ratio],
    }


def write_work(work, steps: list[tuple[str, str, str]], figures: dict, logs: dict, demo: bool = True):
    """A work folder as the script leaves it: steps.tsv lines (name, status, note), figures, logs, the demo's report."""
    (work / "logs").mkdir(parents=True)
    (work / "figures").mkdir()
    lines = [f"{name}\t{status}\t12\t120\t{note}\tstic-cli bench architecture=x" for name, status, note in steps]
    (work / "steps.tsv").write_text("\n".join(lines) + "\n")
    for name, values in figures.items():
        (work / "figures" / f"{name}.json").write_text(json.dumps(values))
    for name, text in logs.items():
        (work / "logs" / f"{name}.log").write_text(text)
    if demo:
        (work / "demo").mkdir()
        report = {"wall_seconds": 291.5, "step_seconds": {"seed0/base": 20.0}, "machine": {"system": "x86_64"}}
        (work / "demo" / "report.json").write_text(json.dumps(report))
        (work / "logs" / "demo.log").write_text("table\nThese are the seed-0 rows of the committed report.\n")
    return work


def full_run(work):
    """The records of a GPU run: every step of both geometries, vLLM skipped, each geometry's training."""
    steps, figures = [("install", "ok", "")], {}
    for geometry, (dpo, stic) in zip(GEOMETRIES, ((1.00, 1.03), (1.00, 1.08))):
        steps += [(f"{geometry}.{part}", "ok", "") for part in ("continuous", "training", "plain")]
        steps.append((f"{geometry}.vllm", "skipped", "vLLM is not installed here"))
        figures[f"{geometry}.continuous"] = generation_figures("continuous", 51.0, 65.0)
        figures[f"{geometry}.plain"] = generation_figures("plain", 20.0, 65.0)
        figures[f"{geometry}.training"] = training_figures(dpo, stic)
    steps.append(("demo", "ok", ""))
    return write_work(work, steps, figures, {})


def test_the_report_gathers_every_figure_and_compares_with_the_targets(tmp_path):
    result = gpu_check.report(full_run(tmp_path), 500, smoke=False)
    assert [step["name"] for step in result["steps"]][:3] == [
        "install",
        "llava-1.5-7b.continuous",
        "llava-1.5-7b.training",
    ]
    assert len(result["generation"]) == 2 * 2 * 2 * 3  # geometries x engines x runs x batch sizes
    assert {row["geometry"] for row in result["generation"]} == set(GEOMETRIES)
    continuous = result["steps"][1]
    assert "figures" not in continuous and continuous["config"]["engines"] == ["continuous"]  # rows only once
    assert [row["step_time_ratio"] for row in result["training"]] == [1.03, 1.08]

    speed, vllm, *training = result["targets"]
    assert speed["value"] == 51.0 * 128 and speed["met"] is True  # 6,528 tokens/s >= 6,000
    assert speed["fraction_of_bound"] == round(51.0 / 65.0, 4)
    assert vllm["value"] is None  # skipped: nothing to compare
    assert [(t["value"], t["met"]) for t in training] == [(1.03, True), (1.08, False)]
    assert result["demo"]["wall_seconds"] == 291.5 and result["demo"]["reproduced_committed_table"] is True


def test_a_target_whose_run_ran_out_of_memory_is_not_measured(tmp_path):
    figures = generation_figures("continuous", 51.0, 65.0)
    figures["generation"] = [row for row in figures["generation"] if row["batch_size"] != 128]
    figures["generation"].append({"run": gpu_check.EQUAL, "engine": "continuous", "batch_size": 128, "error": "oom"})
    write_work(tmp_path, [("llava-1.5-7b.continuous", "ok", "")], {"llava-1.5-7b.continuous": figures}, {}, demo=False)
    speed = gpu_check.report(tmp_path, 100, smoke=False)["targets"][0]
    assert speed["value"] is None and speed["met"] is None and "batch 128" in speed["what"]


def test_a_step_that_did_not_finish_keeps_the_end_of_its_log_and_fails_the_run(tmp_path, capsys):
    log = "".join(f"line {i}\n" for i in range(100)) + "RuntimeError: CUDA error: out of memory\n\n"
    steps = [("tiny.continuous", "failed", ""), ("tiny.plain", "timed out", "stopped after 120 s"), ("demo", "ok", "")]
    write_work(tmp_path / "work", steps, {}, {"tiny.continuous": log, "tiny.plain": log})
    assert gpu_check.main([str(tmp_path / "work"), str(tmp_path / "out"), "--seconds", "60"]) == 1
    (written,) = (tmp_path / "out").glob("gpu_check-*.json")
    failed, timed_out, _ = json.loads(written.read_text())["steps"]
    assert failed["note"] == "RuntimeError: CUDA error: out of memory"  # the log's last line
    assert len(failed["log_tail"]) == gpu_check.LOG_TAIL_LINES and failed["log_tail"][0] == "line 71"
    assert timed_out["note"] == "stopped after 120 s" and timed_out["log_tail"]
    assert "RuntimeError: CUDA error: out of memory" in capsys.readouterr().out


def test_a_run_whose_steps_all_ran_or_were_skipped_succeeds(tmp_path):
    full_run(tmp_path / "work")
    assert gpu_check.main([str(tmp_path / "work"), str(tmp_path / "out"), "--seconds", "60"]) == 0


def test_the_summary_of_a_whole_gpu_run_fits_40_lines(tmp_path):
    result = gpu_check.report(full_run(tmp_path), 500, smoke=False)
    lines = gpu_check.summary(result, tmp_path / "x.json")
    assert len(lines) <= gpu_check.SUMMARY_LINES
    assert lines[-1].startswith("demo: 4.9 min")  # nothing was cut to fit
    for step in result["steps"]:
        assert any(line.startswith(step["name"] + " ") for line in lines)
    (continuous,) = [line for line in lines if line.startswith("llava-1.5-7b continuous ")]
    assert "6,528" in continuous and "78.5%" in continuous  # batch 128's tokens/s and its share of the bound


def test_the_file_is_named_with_the_date_and_the_device():
    result = {"device": "NVIDIA H100 80GB HBM3", "date": "2026-12-06T10:00:00+00:00"}
    assert gpu_check.file_name(result) == "gpu_check-2026-12-06-nvidia-h100-80gb-hbm3.json"


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_the_smoke_run_measures_every_step_and_reports_one_that_fails(tmp_path, demo):
    """The demo step resumes the demo fixture's finished run (GPU_CHECK_DEMO_DIR): tests/tools/test_demo.py checks
    the demo itself, this test the script's steps around it."""
    out = tmp_path / "out"
    env = subprocess_env(
        OUT=str(out), TMPDIR=str(tmp_path), GPU_CHECK_FAIL="tiny.continuous", GPU_CHECK_DEMO_DIR=str(demo[0])
    )
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--smoke"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 1, (result.stdout + result.stderr)[-4000:]  # one step failed
    (written,) = out.glob("gpu_check-*.json")
    assert (out / "gpu_check-logs.tar.gz").is_file()
    figures = json.loads(written.read_text())
    steps = {step["name"]: step for step in figures["steps"]}
    assert set(steps) == {"install", "tiny.continuous", "tiny.training", "tiny.vllm", "tiny.plain", "demo"}
    assert steps["install"]["status"] == "skipped" and steps["install"]["note"]
    failed = steps["tiny.continuous"]
    assert failed["status"] == "failed" and "GPU_CHECK_FAIL" in failed["note"] and failed["log_tail"]
    vllm_installed = steps["tiny.vllm"]["status"] == "ok"
    if not vllm_installed:  # no vLLM here: skipped, with the reason
        assert steps["tiny.vllm"]["status"] == "skipped" and "not installed" in steps["tiny.vllm"]["note"]
    # the steps after the failing one ran
    assert steps["tiny.training"]["status"] == steps["tiny.plain"]["status"] == steps["demo"]["status"] == "ok"

    engines = {"plain", "vllm"} if vllm_installed else {"plain"}
    runs = {(row["engine"], row["run"], row["batch_size"]) for row in figures["generation"]}
    assert runs == {(e, run, b) for e in engines for run in (gpu_check.EQUAL, gpu_check.SPREAD) for b in (1, 3)}
    for row in figures["generation"]:
        assert row["tokens_per_second"] > 0 and row["useful_tokens"] == row["forced_tokens"]
        if row["run"] == gpu_check.EQUAL:
            assert row["decode_bound_tokens_per_second"] > 0 and row["fraction_of_bound"] > 0
    (training,) = figures["training"]
    assert training["dpo"]["step_seconds"] > 0 and training["stic_dpo"]["step_seconds"] > 0
    speed, vllm, ratio = figures["targets"]
    assert speed["value"] is None and speed["met"] is None  # the continuous engine's step failed
    assert (vllm["value"] is not None) == vllm_installed
    assert ratio["value"] == training["step_time_ratio"] and isinstance(ratio["met"], bool)
    demo_report = json.loads((demo[0] / "report.json").read_text())  # as the resumed run rewrote it
    assert figures["demo"]["wall_seconds"] == demo_report["wall_seconds"] and figures["versions"]["torch"]
    assert figures["demo"]["step_seconds"] == demo_report["step_seconds"]
    with tarfile.open(out / "gpu_check-logs.tar.gz") as logs:
        demo_log = logs.extractfile("logs/demo.log").read().decode()
    assert "STIC in the toy world" in demo_log and "done in" not in demo_log  # resumed: no step ran again
    assert figures["device"].startswith("CPU") and figures["smoke"] is True

    summary = result.stdout.splitlines()
    assert len(summary) <= gpu_check.SUMMARY_LINES
    assert any(line.startswith("tiny.continuous") and "failed" in line for line in summary)


def test_an_unknown_option_is_refused_with_the_usage():
    result = subprocess.run(["bash", "scripts/gpu_check.sh", "--fast"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "usage: bash scripts/gpu_check.sh [--smoke | --prepare]" in result.stderr
