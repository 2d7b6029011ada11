"""Which of the paper's tasks need an API judge, and the message that names the missing variable."""

import pytest

from stic_plugin.evaluation.benchmarks import BY_TASK, PAPER_TASKS, judge_of, missing_judge


def test_the_paper_seven_in_table_1s_order():
    assert [BY_TASK[task].column for task in PAPER_TASKS] == [
        "ScienceQA",
        "TextVQA",
        "ChartQA",
        "LLaVA-Bench",
        "MMBench",
        "MM-Vet",
        "MathVista",
    ]


def test_tasks_scored_by_rule_need_nothing():
    for task in ("scienceqa_img", "textvqa_val", "chartqa", "mmbench_en_dev_static"):
        assert judge_of(task) is None and missing_judge(task, {}) is None


@pytest.mark.parametrize("task", ["llava_in_the_wild", "mmvet", "mathvista_testmini_format", "mmbench_en_dev"])
def test_judged_tasks_name_the_missing_variable(task):
    assert missing_judge(task, {}).endswith("OPENAI_API_KEY is not set (API_TYPE=openai)")
    assert missing_judge(task, {"OPENAI_API_KEY": "k"}) is None
    azure = missing_judge(task, {"API_TYPE": "azure", "AZURE_ENDPOINT": "https://x"})
    assert azure.endswith("AZURE_API_KEY is not set (API_TYPE=azure)")
    assert missing_judge(task, {"API_TYPE": "azure", "AZURE_ENDPOINT": "e", "AZURE_API_KEY": "k"}) is None


def test_mmbenchs_judge_reaches_only_openai_and_azure():
    assert "only API_TYPE=openai or azure (API_TYPE=bedrock)" in missing_judge(
        "mmbench_en_dev", {"API_TYPE": "bedrock"}
    )
    assert missing_judge("mmvet", {"API_TYPE": "bedrock"}) is None  # that provider brings its own settings
