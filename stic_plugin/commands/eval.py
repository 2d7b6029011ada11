"""``stic-cli eval``: the paper's benchmarks (Table 1) through lmms-eval, and the table that compares runs.

Run (after ``pip install 'stic-plugin[eval]'``)::

    stic-cli eval recipes/llava-v1.6-mistral-7b/eval.yaml                  # the STIC model, direct answers
    stic-cli eval recipes/llava-v1.6-mistral-7b/eval.yaml dar=true         # ... describe-and-respond
    stic-cli eval --compare eval_output/llava-v1.6-mistral-7b-hf eval_output/llava-v1.6-mistral-7b-hf+stage2-dar

A run loads the model through lmms-eval's registry (the ``stic`` model this package registers), runs each task
with lmms-eval's evaluator, writes lmms-eval's own files into ``output_dir/NAME/`` and prints one row of the
paper's table. Tasks scored by an API judge are skipped, naming the missing variable, when it is not set.
"""

import importlib.util
import os

from ..evaluation import MODEL_ID
from ..evaluation.benchmarks import missing_judge
from .config import EvalConfig

MODEL_KEYS = (  # EvalConfig keys that the model takes as they are
    "model_name_or_path",
    "template",
    "adapter_name_or_path",
    "dar",
    "description_prompt",
    "description_max_new_tokens",
    "image_placement",
    "infusion_format_file",
    "batch_size",
    "engine",
    "compile_decoding",
    "infer_dtype",
    "image_max_pixels",
    "trust_remote_code",
    "seed",
)


def model_kwargs(cfg: EvalConfig) -> dict:
    kwargs = {key: getattr(cfg, key) for key in MODEL_KEYS}
    if cfg.dar:
        kwargs["descriptions_file"] = str(cfg.run_dir / "descriptions.jsonl")
    return kwargs


def model_args(kwargs: dict) -> str:
    """The same model as lmms-eval's --model_args (recorded in the results file; a list of adapters quoted)."""
    return ",".join(f'{key}="{value}"' if "," in str(value) else f"{key}={value}" for key, value in kwargs.items())


def run_eval(cfg: EvalConfig) -> int:
    if importlib.util.find_spec("lmms_eval") is None:
        raise ValueError("lmms-eval is not installed: pip install 'stic-plugin[eval]' (it pins lmms-eval 0.7.3)")
    from lmms_eval.models import get_model

    from ..evaluation.harness import evaluate, hub_unreachable, managers_for, output_type

    skipped = {task: why for task in cfg.tasks if (why := missing_judge(task, os.environ))}
    runnable = [task for task in cfg.tasks if task not in skipped]
    managers = managers_for(runnable, cfg.task_dir) if runnable else {}
    for task in list(managers):
        kind = output_type(managers[task], task)
        if kind not in (None, "generate_until"):
            skipped[task] = (
                f"its output_type is {kind}: it needs log-likelihoods, which the {MODEL_ID} model does not compute"
            )
            del managers[task]
    for task, why in skipped.items():
        print(f"stic-cli eval: {task} skipped: {why}", flush=True)
    if not managers:
        raise ValueError("no task left to run (see above)")

    kwargs = model_kwargs(cfg)
    model = get_model(MODEL_ID)(**kwargs)  # through lmms-eval's registry: the entry point this package declares
    model.generator  # noqa: B018 - load now: a wrong path or template stops the run before any task
    mode = "describe-and-respond" if cfg.dar else "direct"
    run_info = {"run_name": cfg.name, "mode": mode, "adapter_name_or_path": cfg.adapter_name_or_path}
    outcome = evaluate(
        model, model_args(kwargs), managers, cfg.limit, cfg.run_dir, {**run_info, "skipped": skipped}, cfg.verbose
    )

    from ..evaluation.table import load_run, table

    lines = [f"stic-cli eval: {cfg.name} ({mode}), {len(outcome.results.get('results', {}))} task(s) in {cfg.run_dir}"]
    if outcome.results_file is not None:
        lines += ["", table([load_run(outcome.results_file)]), "", f"  results:      {outcome.results_file}"]
        lines.append(f"  samples:      {outcome.results_file.parent}/*_samples_*.jsonl")
        if cfg.dar:
            lines.append(f"  descriptions: {kwargs['descriptions_file']}")
    if cfg.limit is not None:
        lines.append(f"  limit={cfg.limit}: a trial run, the scores are not the benchmarks'")
    for task, why in skipped.items():
        lines.append(f"  skipped: {task}: {why}")
    for task, why in outcome.failed.items():
        lines.append(f"  failed: {task}: {why}")
    offline = hub_unreachable() if outcome.failed else None
    if offline:
        lines.append(
            f"  the tasks' data comes from the Hugging Face hub, and {offline}: run once where the hub can be "
            "reached (the data stays in the cache, HF_HOME), or give local copies in `task_dir` "
            "(docs/evaluation.md, 'Without the hub')"
        )
    print("\n".join(lines), flush=True)
    return 1 if outcome.failed or outcome.results_file is None else 0


def run_compare(paths: list[str]) -> int:
    """``stic-cli eval --compare A B ...``: results files (or run folders) side by side, with the differences."""
    from ..evaluation.table import load_run, table

    print(table([load_run(path) for path in paths]), flush=True)
    return 0
