"""Table 1 from lmms-eval results files: percent columns in the paper's order, averages, differences."""

import json
import os

import pytest

from stic_plugin.evaluation.table import find_results, load_run, table


def results_file(path, results, **stic):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results, "config": {"model": "stic"}, "stic": stic}))
    return path


def test_columns_in_the_papers_order_in_percent_with_the_difference(tmp_path):
    base = results_file(
        tmp_path / "base" / "a_results.json",
        {
            "textvqa_val": {"exact_match,none": 0.603, "exact_match_stderr,none": 0.01},
            "scienceqa_img": {"exact_match,none": 0.689},
            "mmvet": {"gpt_eval_score,none": 42.2},  # lmms-eval reports this one in percent already
        },
        run_name="base",
    )
    stic = results_file(
        tmp_path / "stic" / "b_results.json",
        {"scienceqa_img": {"exact_match,none": 0.753}, "textvqa_val": {"exact_match,none": 0.652}},
        run_name="stic",
        skipped={"mmvet": "OPENAI_API_KEY is not set"},
    )
    lines = table([load_run(base), load_run(stic)]).splitlines()
    assert [line.split() for line in lines] == [
        ["run", "ScienceQA", "TextVQA", "MM-Vet", "Avg(2)"],
        ["base", "68.9", "60.3", "42.2", "64.6"],
        ["stic", "75.3", "65.2", "-", "70.2"],
        ["stic", "-", "base", "+6.4", "+4.9", "-", "+5.7"],
    ]


def test_other_tasks_follow_the_papers_with_their_first_metric_outside_the_average(tmp_path):
    run = results_file(
        tmp_path / "r_results.json",
        {"my_task": {"acc_stderr,none": 0.1, "acc,none": 0.25}, "chartqa": {"relaxed_overall,none": 0.5}},
    )
    loaded = load_run(run)
    assert loaded.label == f"stic ({tmp_path.name})"  # no run name: lmms-eval's model and the folder
    header, row = (line.split() for line in table([loaded]).splitlines())
    assert header == ["run", "ChartQA", "my_task", "Avg(1)"] and row[-3:] == ["50.0", "0.2", "50.0"]


def test_a_folder_gives_its_newest_results_file(tmp_path):
    old = results_file(tmp_path / "run" / "model" / "1_results.json", {})
    new = results_file(tmp_path / "run" / "model" / "2_results.json", {})
    os.utime(old, (1, 1))
    assert find_results(tmp_path / "run") == new
    with pytest.raises(ValueError, match="no lmms-eval results file"):
        find_results(tmp_path / "empty")
    (tmp_path / "x_results.json").write_text("[]")
    with pytest.raises(ValueError, match="not an lmms-eval results file"):
        load_run(tmp_path / "x_results.json")
