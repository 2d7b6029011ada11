"""The paper's seven benchmarks (Table 1) as lmms-eval 0.7.3 tasks, and which tasks need an API judge.

Each benchmark names the metric of lmms-eval's results file that the paper's column shows, and the factor
that turns it into the paper's percent (lmms-eval reports some scores as fractions, others in percent).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    task: str  # lmms-eval's task name
    column: str  # the paper's column
    metric: str  # the key in the results file's "results"[task]: "metric,filter"
    scale: float  # metric x scale = the paper's percent


PAPER_BENCHMARKS = (
    Benchmark("scienceqa_img", "ScienceQA", "exact_match,none", 100),
    Benchmark("textvqa_val", "TextVQA", "exact_match,none", 100),
    Benchmark("chartqa", "ChartQA", "relaxed_overall,none", 100),
    Benchmark("llava_in_the_wild", "LLaVA-Bench", "gpt_eval_llava_all,none", 1),
    Benchmark("mmbench_en_dev", "MMBench", "gpt_eval_score,none", 1),
    Benchmark("mmvet", "MM-Vet", "gpt_eval_score,none", 1),
    # lmms-eval 0.7.3's `mathvista_testmini` is a group of three prompt styles (three times the generation);
    # `_format` is the format prompt that its earlier single `mathvista_testmini` task used.
    Benchmark("mathvista_testmini_format", "MathVista", "llm_as_judge_eval,none", 1),
)
PAPER_TASKS = [benchmark.task for benchmark in PAPER_BENCHMARKS]
BY_TASK = {benchmark.task: benchmark for benchmark in PAPER_BENCHMARKS}

# Task families whose scoring calls an API judge (lmms-eval reads API_TYPE, then the provider's variables;
# MODEL_VERSION names the judge model), and what the judge does there.
JUDGED = {
    "llava_in_the_wild": "scores every answer",
    "mmvet": "scores every answer",
    "mathvista": "extracts the answer from every response that is not a bare number or option",
    "mmbench": "reads the option of every answer without a clear letter (mmbench_en_dev_static reads them by rule)",
}
# API_TYPE -> the variables its provider needs; other types (local, bedrock, dummy) bring their own settings.
JUDGE_VARIABLES = {
    "openai": ("OPENAI_API_KEY",),
    "async_openai": ("OPENAI_API_KEY",),
    "azure": ("AZURE_API_KEY", "AZURE_ENDPOINT"),
    "async_azure": ("AZURE_API_KEY", "AZURE_ENDPOINT"),
}


def judge_of(task: str) -> str | None:
    """What an API judge does for this task; None for tasks scored by rule alone."""
    if task.endswith("_static"):  # mmbench_*_static: letters read by rule, no judge
        return None
    return next((what for family, what in JUDGED.items() if task.startswith(family)), None)


def missing_judge(task: str, environ) -> str | None:
    """Why this task cannot be scored with this environment (naming the missing variable), or None."""
    what = judge_of(task)
    if what is None:
        return None
    api_type = environ.get("API_TYPE", "openai").lower()
    if task.startswith("mmbench") and api_type not in ("openai", "azure"):
        return f"its API judge {what}, and MMBench's judge reaches only API_TYPE=openai or azure (API_TYPE={api_type})"
    missing = [name for name in JUDGE_VARIABLES.get(api_type, ()) if not environ.get(name)]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"its API judge {what}, and {' and '.join(missing)} {verb} not set (API_TYPE={api_type})"
