"""`stic-cli eval` end to end, as users run it: the shipped recipe with key=value overrides, lmms-eval's real
evaluator and its own task YAMLs (``scienceqa_img``, ``textvqa_val``) on tiny local copies of their data, the
tiny LLaVA and Qwen2-VL with and without an adapter, direct and describe-and-respond."""

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stic_plugin.constants import DAR_DESCRIPTION_PROMPT

from helpers import (
    REPO,
    TEXTVQA_A_COUNTS,
    letter_model,
    lmms_eval_samples,
    random_lora_adapter,
    run_cli,
)

pytestmark = pytest.mark.xdist_group("lmms_eval")  # lmms-eval's import and task index, once per test process

MODELS = {"llava": ("tiny-llava", "llava"), "qwen2vl": ("tiny-qwen2vl", "qwen2_vl")}
TASKS = ["scienceqa_img", "textvqa_val"]


def eval_args(model_dir, template, eval_tasks, output_dir, **keys) -> list[str]:
    """``stic-cli eval recipes/eval.yaml`` on a tiny model and the local tasks; ``keys`` override."""
    values = dict(
        model_name_or_path=model_dir,
        template=template,
        adapter_name_or_path="null",
        task_dir=eval_tasks,
        tasks=f"[{','.join(TASKS)},mmvet]",  # mmvet: an API judge's task, skipped without its credentials
        output_dir=output_dir,
        description_max_new_tokens=8,
        batch_size=3,
    )
    values.update(keys)
    return ["eval", str(REPO / "recipes" / "eval.yaml"), *(f"{key}={value}" for key, value in values.items())]


def finished(run_dir: Path) -> SimpleNamespace:
    from stic_plugin.evaluation.table import find_results

    results_file = find_results(run_dir)
    return SimpleNamespace(
        dir=run_dir,
        results=json.loads(results_file.read_text()),
        samples=lmms_eval_samples(results_file),
        descriptions=[json.loads(line) for line in (run_dir / "descriptions.jsonl").read_text().splitlines()]
        if (run_dir / "descriptions.jsonl").exists()
        else [],
    )


@pytest.fixture(scope="module")
def runs(tiny, eval_tasks, tmp_path_factory):
    """Every model x {base, adapter} x {direct, dar}, with each run's generation requests recorded."""
    from stic_plugin.commands import cli
    from stic_plugin.generation.transformers_engine import ContinuousGenerator

    out = tmp_path_factory.mktemp("eval_runs")
    recorded: dict[str, list] = {}
    current = [""]
    original = ContinuousGenerator.generate_stream

    def recording(self, requests, *args, **kwargs):
        requests = list(requests)
        recorded.setdefault(current[0], []).extend(requests)
        yield from original(self, requests, *args, **kwargs)

    done = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ContinuousGenerator, "generate_stream", recording)
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.delenv("API_TYPE", raising=False)
        for name, (model, template) in MODELS.items():
            adapter = random_lora_adapter(tiny[model], out / f"adapter-{name}")
            for with_adapter in (False, True):
                for dar in (False, True):
                    run = f"{name}{'-adapter' if with_adapter else ''}{'-dar' if dar else ''}"
                    current[0] = run
                    keys = dict(run_name=run, dar=str(dar).lower())
                    if with_adapter:
                        keys["adapter_name_or_path"] = adapter
                    code = cli.main(eval_args(tiny[model], template, eval_tasks, out, **keys))
                    assert code == 0, run
                    done[run] = finished(out / run)
                    done[run].requests = recorded.get(run, [])
    return done


def scienceqa_hand_count(samples: list[dict]) -> float:
    """ScienceQA's rule, by hand: the letter alone, or the letter and a period first ("B. square")."""
    right = 0
    for sample in samples:
        answer, target = sample["filtered_resps"].strip(), sample["target"]
        right += answer.lower() == target.lower() or (len(answer) >= 2 and answer[0] == target and answer[1] == ".")
    return right / len(samples)


def textvqa_hand_count(samples: list[dict]) -> float:
    """VQA accuracy by hand: each of the ten answers left out in turn, min(1, matches among the other nine / 3)."""
    scores = []
    for sample in samples:
        count = TEXTVQA_A_COUNTS[sample["doc_id"]]
        answers = ["a"] * count + ["b"] * (10 - count)
        said = sample["filtered_resps"].strip().strip(".").lower()
        scores.append(
            statistics.mean(min(1, sum(a == said for a in answers[:i] + answers[i + 1 :]) / 3) for i in range(10))
        )
    return statistics.mean(scores)


def check_scores_against_hand_counts(run) -> tuple[float, float]:
    results = run.results["results"]
    assert {len(run.samples[task]) for task in TASKS} == {4}
    science, textvqa = (
        scienceqa_hand_count(run.samples["scienceqa_img"]),
        textvqa_hand_count(run.samples["textvqa_val"]),
    )
    assert results["scienceqa_img"]["exact_match,none"] == pytest.approx(science)
    assert results["textvqa_val"]["exact_match,none"] == pytest.approx(textvqa)
    return science, textvqa


def test_every_run_scores_what_a_hand_count_of_its_logged_samples_gives(runs):
    for name, run in runs.items():
        check_scores_against_hand_counts(run)
        # mmvet needs an API judge: skipped, named, and the run still wrote the other tasks
        assert "OPENAI_API_KEY is not set" in run.results["stic"]["skipped"]["mmvet"], name
        assert run.results["stic"]["failed"] == {} and set(run.results["results"]) == set(TASKS)
        assert run.results["stic"]["mode"] == ("describe-and-respond" if name.endswith("-dar") else "direct")


def test_scores_that_are_neither_all_right_nor_all_wrong_match_the_hand_count(tiny, eval_tasks, tmp_path, stic):
    """A tiny LLaVA that answers "A." to everything: ScienceQA 2 of 4 (targets A, B, C, A); TextVQA 0.625."""
    model = letter_model(tiny["tiny-llava"], tmp_path / "letter-llava")
    result = stic(*eval_args(model, "llava", eval_tasks, tmp_path / "out", run_name="letter"))
    assert result.returncode == 0, result.stderr[-3000:]
    run = finished(tmp_path / "out" / "letter")
    assert {s["filtered_resps"] for task in TASKS for s in run.samples[task]} == {"A."}
    assert check_scores_against_hand_counts(run) == (0.5, pytest.approx(0.625))
    # the printed row: the paper's columns in percent, mmvet not scored, the average of the two scored
    row = next(line for line in result.stdout.splitlines() if line.startswith("letter "))
    assert row.split() == ["letter", "50.0", "62.5", "-", "56.2"]
    assert "skipped: mmvet: its API judge scores every answer, and OPENAI_API_KEY is not set" in result.stdout


@pytest.mark.parametrize("name", list(MODELS))
def test_the_adapter_changes_the_answers(runs, name):
    for mode in ("", "-dar"):
        base, tuned = runs[f"{name}{mode}"], runs[f"{name}-adapter{mode}"]
        for task in TASKS:
            answers = [[s["filtered_resps"] for s in run.samples[task]] for run in (base, tuned)]
            assert answers[0] != answers[1], (name, mode, task)
        assert tuned.results["stic"]["adapter_name_or_path"] and not base.results["stic"]["adapter_name_or_path"]


def doc_images(eval_tasks: Path) -> dict[str, list]:
    import datasets

    data = eval_tasks.parent / "data"
    return {
        "scienceqa_img": [
            np.asarray(row["image"]) for row in datasets.load_from_disk(str(data / "scienceqa_img"))["test"]
        ],
        "textvqa_val": [
            np.asarray(row["image"]) for row in datasets.load_from_disk(str(data / "textvqa_val"))["validation"]
        ],
    }


@pytest.mark.parametrize("name", [f"{m}{a}" for m in MODELS for a in ("", "-adapter")])
def test_dar_describes_each_image_with_the_image_then_answers_with_the_description_infused(runs, eval_tasks, name):
    images = doc_images(eval_tasks)
    every_image = [image for task in TASKS for image in images[task]]
    run = runs[f"{name}-dar"]
    described = [r for r in run.requests if r.key.startswith("describe:")]
    # the first pass: each question's image (its pixels, as the task's doc_to_visual gives them), once each
    assert len(described) == len(every_image) == 8
    for request in described:
        assert request.messages == [{"role": "user", "content": f"<image>\n{DAR_DESCRIPTION_PROMPT}"}]
        (image,) = request.images
        assert sum(np.array_equal(np.asarray(image), other) for other in every_image) == 1
    # the second pass: the image first, then the description as stage 2 infuses it, then lmms-eval's prompt
    answered = {r.key: r for r in run.requests if r.key.startswith("answer:")}
    descriptions = {(d["task"], d["doc_id"]): d["descriptions"] for d in run.descriptions}
    for task in TASKS:
        split = "test" if task == "scienceqa_img" else "validation"
        for sample in run.samples[task]:
            request = answered[f"answer:{task}:{split}:{sample['doc_id']}"]
            (description,) = descriptions[(task, sample["doc_id"])]
            expected = f"<image>\nImage description:\n{description}\n\n{sample['input']}"
            assert request.messages == [{"role": "user", "content": expected}]
            (image,) = request.images
            assert np.array_equal(np.asarray(image), images[task][sample["doc_id"]])
    # direct answers: no first pass, the image first, then lmms-eval's prompt
    direct = runs[name]
    assert not [r for r in direct.requests if r.key.startswith("describe:")] and direct.descriptions == []
    for request in direct.requests:
        assert request.messages[0]["content"].startswith("<image>\n") and "Image description" not in str(
            request.messages
        )


def test_compare_puts_runs_side_by_side_with_the_difference(runs, stic):
    base, tuned = runs["llava"], runs["llava-adapter-dar"]
    result = stic("eval", "--compare", str(base.dir), str(tuned.dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # mmvet was skipped in both (no judge): its column shows no score, the average covers the two scored tasks
    assert lines[0].split() == ["run", "ScienceQA", "TextVQA", "MM-Vet", "Avg(2)"]
    percents = {
        label: [run.results["results"][task]["exact_match,none"] * 100 for task in TASKS]
        for label, run in (("llava", base), ("llava-adapter-dar", tuned))
    }
    for label, values in percents.items():
        row = next(line.split() for line in lines if line.split()[0] == label)
        assert row[1:] == [f"{v:.1f}" for v in values] + ["-", f"{statistics.mean(values):.1f}"]
    difference = next(line for line in lines if line.startswith("llava-adapter-dar - llava"))
    wanted = [b - a for a, b in zip(percents["llava"], percents["llava-adapter-dar"])]
    assert difference.split()[3:] == [f"{v:+.1f}" for v in wanted] + ["-", f"{statistics.mean(wanted):+.1f}"]


def test_a_task_that_fails_is_named_and_the_others_are_written(tiny, eval_tasks, tmp_path, stic, monkeypatch):
    """A task whose data cannot be read; a task that needs log-likelihoods; a limit of 2 questions."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for path in eval_tasks.glob("*.yaml"):
        (tasks / path.name).write_text(path.read_text())
    (tasks / "broken.yaml").write_text(
        f"include: {eval_tasks / 'scienceqa_img.yaml'}\ntask: broken\ndataset_path: {tmp_path / 'missing'}\n"
    )
    (tasks / "likelihood.yaml").write_text(
        f"include: {eval_tasks / 'scienceqa_img.yaml'}\ntask: likelihood\noutput_type: loglikelihood\n"
    )
    keys = dict(tasks="[broken,scienceqa_img,likelihood]", task_dir=tasks, limit=2, run_name="partial")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = stic(*eval_args(tiny["tiny-llava"], "llava", eval_tasks, tmp_path / "out", **keys))
    assert result.returncode == 1  # a task failed: not a clean run, though the others are written
    assert "likelihood skipped: its output_type is loglikelihood: it needs log-likelihoods" in result.stdout
    assert "failed: broken: " in result.stdout
    assert "the tasks' data comes from the Hugging Face hub, and HF_HUB_OFFLINE is set" in result.stdout
    assert "`task_dir`" in result.stdout  # the way to run on local copies
    run = finished(tmp_path / "out" / "partial")
    assert set(run.results["results"]) == {"scienceqa_img"} and len(run.samples["scienceqa_img"]) == 2
    assert "broken" in run.results["stic"]["failed"] and "likelihood" in run.results["stic"]["skipped"]


def test_what_stops_a_run_before_it_starts(tiny, eval_tasks, tmp_path, stic, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("API_TYPE", raising=False)
    args = eval_args(tiny["tiny-llava"], "llava", eval_tasks, tmp_path, tasks="[mmvet,llava_in_the_wild]")
    result = stic(*args)
    assert result.returncode == 2 and "no task left to run" in result.stderr
    assert (
        "llava_in_the_wild skipped: its API judge scores every answer, and OPENAI_API_KEY is not set" in result.stdout
    )
    monkeypatch.setenv("API_TYPE", "azure")
    result = stic(*args)
    assert "AZURE_API_KEY and AZURE_ENDPOINT are not set (API_TYPE=azure)" in result.stdout
    result = stic(*eval_args(tiny["tiny-llava"], "llava", eval_tasks, tmp_path, tasks="[scienceqa_imgg]"))
    assert result.returncode == 2 and "unknown lmms-eval task(s)" in result.stderr and "scienceqa_img" in result.stderr
    result = stic(*eval_args(tiny["tiny-llava"], "qwen2_vl", eval_tasks, tmp_path, tasks="[scienceqa_img]"))
    assert result.returncode == 2 and "template `qwen2_vl` does not fit" in result.stderr  # before any task runs
    assert not list(tmp_path.rglob("*_results.json"))


def test_without_lmms_eval_it_says_how_to_install_it(stic, monkeypatch, tmp_path):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lmms_eval" else find_spec(name, *a)
    )
    result = stic("eval", "model_name_or_path=m", "template=llava", f"output_dir={tmp_path}")
    assert result.returncode == 2 and "pip install 'stic-plugin[eval]'" in result.stderr


def test_importing_the_package_and_the_help_leave_lmms_eval_unloaded():
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "import stic_plugin, stic_plugin.evaluation, stic_plugin.evaluation.benchmarks\n"
        "import stic_plugin.evaluation.harness, stic_plugin.evaluation.table\n"
        "from stic_plugin.commands import cli, eval\n"
        "for argv in (['--help'], ['eval', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        cli.main(argv)\n"
        "print(sorted(m for m in sys.modules if m.startswith('lmms_eval')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_lmms_evals_own_command_line_finds_the_registered_model(tiny, eval_tasks, tmp_path):
    """``lmms-eval --model stic``: found through the entry point (no fork, no LMMS_EVAL_PLUGINS), with an
    adapter list quoted in --model_args as lmms-eval needs; a task file of its own (lmms-eval's --include_path
    keeps its own task of the same name)."""
    adapter = random_lora_adapter(tiny["tiny-qwen2vl"], tmp_path / "adapter")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_scienceqa.yaml").write_text(
        f"include: {eval_tasks / 'scienceqa_img.yaml'}\ntask: tiny_scienceqa_img\n"
    )
    model_args = (
        f"model_name_or_path={tiny['tiny-qwen2vl']},template=qwen2_vl,"
        f'adapter_name_or_path="{adapter},{adapter}",dar=true,description_max_new_tokens=4'
    )
    result = run_cli(
        [
            "lmms-eval",
            "--model",
            "stic",
            "--model_args",
            model_args,
            "--tasks",
            "tiny_scienceqa_img",
            "--include_path",
            str(tasks),
            "--limit",
            "2",
            "--output_path",
            str(tmp_path / "out"),
            "--log_samples",
        ],
        cwd=tmp_path,
        LMMS_EVAL_PLUGINS="",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (results_file,) = (tmp_path / "out").rglob("*_results.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["model_backend"] == "stic_plugin.evaluation.model.SticModel (simple)"
    assert results["n-samples"]["tiny_scienceqa_img"]["effective"] == 2


def test_the_hub_is_unreachable_when_offline_is_set_or_no_connection_opens(monkeypatch):
    import socket

    from stic_plugin.evaluation.harness import hub_unreachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    tried = []

    def refused(address, timeout):
        tried.append(address)
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refused)
    assert hub_unreachable() == "mirror.example cannot be reached from this machine (Name or service not known)"
    assert tried == [("mirror.example", 8080)]

    class Opened:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Opened())
    assert hub_unreachable() is None
