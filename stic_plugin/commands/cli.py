"""``stic-cli``: STIC data generators that write LLaMA-Factory datasets.

stic-cli pref CONFIG.yaml [key=value ...]     stage-1 preference pairs from unlabeled images
stic-cli infuse CONFIG.yaml [key=value ...]   stage-2 description-infused instruction data
stic-cli dar CONFIG.yaml [key=value ...]      describe-and-respond answers, scored when answers are known
stic-cli pref2sft [key=value ...]             SFT data from a pref output's preferred descriptions (Table 3 ablation)
stic-cli demo [full=true]                     STIC in a toy world where a tiny model sees: base against STIC, on CPU
stic-cli bench [architecture=llava-1.5-7b]    speed of generation and training on this machine
stic-cli eval CONFIG.yaml [key=value ...]     the paper's benchmarks through lmms-eval (stic-plugin[eval])
stic-cli eval --compare RESULTS ...           lmms-eval results side by side, with the differences
stic-cli recipes DIR                          a copy of the shipped recipes and data templates in DIR
stic-cli single-view DIR                      a LLaVA-1.6 copy that trains on one padded view, as the authors' scripts
stic-cli COMMAND --help                       every key, its default and what it does
"""

import sys
from pathlib import Path

# name: (module with its configuration, the configuration's class, module that runs it, its function); the modules
# are imported when needed. demo and bench are the project's tools (stic_plugin.tools), apart from the method.
COMMANDS = {
    "pref": ("stic_plugin.commands.config", "PrefConfig", "stic_plugin.commands.pref", "run_pref"),
    "infuse": ("stic_plugin.commands.config", "InfuseConfig", "stic_plugin.commands.infuse", "run_infuse"),
    "dar": ("stic_plugin.commands.config", "DarConfig", "stic_plugin.commands.dar", "run_dar"),
    "pref2sft": ("stic_plugin.commands.config", "Pref2SftConfig", "stic_plugin.commands.pref2sft", "run_pref2sft"),
    "demo": ("stic_plugin.tools.demo", "DemoConfig", "stic_plugin.tools.demo", "run_demo"),
    "bench": ("stic_plugin.tools.bench", "BenchConfig", "stic_plugin.tools.bench", "run_bench"),
    "eval": ("stic_plugin.commands.config", "EvalConfig", "stic_plugin.commands.eval", "run_eval"),
    "recipes": ("stic_plugin.commands.config", "RecipesConfig", "stic_plugin.commands.recipes", "run_recipes"),
    "single-view": (
        "stic_plugin.commands.config",
        "SingleViewConfig",
        "stic_plugin.commands.single_view",
        "run_single_view",
    ),
}


def config_class(command: str):
    """The configuration class of a command."""
    import importlib

    module, name, _, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), name)


# Commands whose model is loaded by the one factory: they start with Python's collector off until it is made
# (stic_plugin/heap.py). Not bench: it loads its models itself, and times them as pref runs them.
LOADS_A_MODEL = {"pref", "infuse", "dar", "eval"}

# What each command needs besides its defaults, and example command lines (checked by tests/commands/test_cli.py).
NEEDS = {
    "pref": "Needs model_name_or_path, template, and one of image_dir (a folder, searched recursively) or "
    "image_list (a file of image paths).",
    "infuse": "Needs model_name_or_path, template (with adapter_name_or_path: the stage-1 adapter), and one of "
    "dataset (a name in source_dataset_dir/dataset_info.json) or llava_file (a LLaVA JSON file).",
    "dar": "Needs model_name_or_path, template, and one of dataset (a name in source_dataset_dir/dataset_info.json) "
    "or llava_file (a LLaVA JSON file of questions).",
    "pref2sft": "Needs a pref output in dataset_dir (pref_dataset names it).",
    "demo": "Needs nothing: it draws its own world and trains its own base model, on the CPU.",
    "bench": "Needs a GPU for the 7B architectures; architecture=tiny runs on a CPU.",
    "recipes": "Needs the folder to copy into.",
    "single-view": "Needs the folder of the copy, and the LLaVA-1.6 model (a local folder, or from the Hugging Face "
    "hub: its weights are then downloaded to the hub's cache, and linked from there).",
    "eval": "Needs model_name_or_path, template and lmms-eval (pip install 'stic-plugin[eval]'); the benchmarks' data "
    "from the Hugging Face hub (or task_dir), and for judge-scored tasks the judge's credentials (OPENAI_API_KEY).",
}
EXAMPLES = {
    "pref": [
        "stic-cli pref recipes/pref.yaml image_dir=/data/coco/train2014",
        "stic-cli pref model_name_or_path=llava-hf/llava-1.5-7b-hf template=llava image_dir=images max_samples=100",
        "torchrun --nproc-per-node 8 $(which stic-cli) pref recipes/pref.yaml",
    ],
    "infuse": [
        "stic-cli infuse recipes/infuse.yaml llava_file=/data/llava_v1_5_mix665k.json image_folder=/data",
        "stic-cli infuse recipes/infuse.yaml num_samples=1000 keep_text_only=true",
    ],
    "dar": [
        "stic-cli dar recipes/dar.yaml dataset=my_benchmark metric=choice",
        "stic-cli dar recipes/dar.yaml dataset=my_benchmark metric=choice dar=false predictions_name=direct",
    ],
    "pref2sft": ["stic-cli pref2sft dataset_dir=data pref_dataset=stic_pref"],
    "demo": ["stic-cli demo", "stic-cli demo full=true output_dir=toyworld_full"],
    "bench": ["stic-cli bench", "stic-cli bench architecture=tiny batch_sizes=[1,4] engines=[continuous]"],
    "recipes": ["stic-cli recipes my_stic", "stic-cli recipes output_dir=my_stic overwrite=true"],
    "single-view": [
        "stic-cli single-view models/llava-v1.6-mistral-7b-single-view",
        "stic-cli single-view models/v16-single-view model_name_or_path=/models/llava-v1.6-mistral-7b-hf",
    ],
    "eval": [
        "stic-cli eval recipes/eval.yaml",
        "stic-cli eval recipes/eval.yaml dar=true",
        "stic-cli eval recipes/eval.yaml adapter_name_or_path=null tasks=[scienceqa_img,textvqa_val] limit=100",
        "stic-cli eval --compare eval_output/llava-v1.6-mistral-7b-hf eval_output/llava-v1.6-mistral-7b-hf+stage2-dar",
    ],
}


def split_arguments(command: str, args: list[str]) -> tuple[str | None, list[str]]:
    """(the YAML file, the key=value overrides) of a command line: a first argument without "=" is the YAML
    file, or for a command with a positional key (stic-cli recipes DIR) that key's value."""
    config_path = args[0] if args and "=" not in args[0] else None
    overrides = args[1:] if config_path else list(args)
    positional = getattr(config_class(command), "positional", None)
    if positional and config_path is not None:
        return None, [f"{positional}={config_path}", *overrides]
    return config_path, overrides


def plain(text: str) -> str:
    """Help text without the docstrings' RST markup (``literal`` and `name`)."""
    return text.replace("``", "").replace("`", "")


def _parser():
    import argparse

    from .config import describe_keys

    parser = argparse.ArgumentParser(
        prog="stic-cli", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        config_cls = config_class(name)
        summary = plain(" ".join((config_cls.__doc__ or "").split()))
        examples = "\n".join(f"  {line}" for line in EXAMPLES[name])
        keys = plain(describe_keys(config_cls))
        sub = commands.add_parser(
            name,
            help=summary.split(":", 1)[-1].strip(),
            description=f"{summary}\n\n{NEEDS[name]}",
            epilog=f"examples:\n{examples}\n\nkeys (in the YAML file, or as key=value):\n{keys}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("args", nargs="*", metavar="CONFIG.yaml|key=value", help="a YAML file, then overrides")
        if name == "eval":
            sub.add_argument(
                "--compare",
                nargs="+",
                metavar="RESULTS",
                help="lmms-eval results files (or run folders: their newest) side by side, with the differences",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Ctrl-C at any point is one line and exit status 130: until here (the interpreter's start, this module's
    imports) the start-up hook's handler says it (``_autoload``), from here on this function, and once it has
    said its line a second Ctrl-C ends the process at once (``lifetime.exit_on_ctrl_c``)."""
    import signal

    from ..lifetime import ctrl_c_ignored, exit_on_ctrl_c, running_stic_cli

    name = "stic-cli"
    try:
        if running_stic_cli() and not ctrl_c_ignored():
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt, caught below
        args = _parser().parse_args(argv)
        name = f"stic-cli {args.command}"
        return _run(args, argv)
    except KeyboardInterrupt:  # Ctrl-C: whole records are on disk, and a rerun resumes from them
        if running_stic_cli():
            exit_on_ctrl_c(None)
        from ..pipeline.run import interrupted_message

        print(f"\n{name}: {interrupted_message()}", file=sys.stderr)
        return 130
    except Exception as err:
        from ..generation.continuous import CacheTooLarge

        if not isinstance(err, (ValueError, OSError, CacheTooLarge)):
            raise
        # configuration, data, model loading, memory: a message
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    finally:
        from ..data.output import release_locks
        from ..pipeline.run import ACTIVE_OUTPUTS

        ACTIVE_OUTPUTS.clear()
        release_locks()


def _run(args, argv: list[str] | None) -> int:
    import contextlib

    from ..heap import command_start

    if getattr(args, "compare", None):
        from .eval import run_compare

        return run_compare(args.compare + args.args)
    with command_start() if args.command in LOADS_A_MODEL else contextlib.nullcontext():
        return _run_command(args, argv)


def _run_command(args, argv: list[str] | None) -> int:
    import importlib

    from .config import load_config
    from .console import console

    _, _, module_name, function_name = COMMANDS[args.command]
    config = load_config(config_class(args.command), *split_arguments(args.command, args.args))
    module = importlib.import_module(module_name)
    if hasattr(module, "preflight"):  # a missing input or a conflicting output: said at once
        module.preflight(config)
    command_line = "stic-cli " + " ".join(sys.argv[1:] if argv is None else argv)
    with console(config, command_line) as log:
        code = getattr(module, function_name)(config)
    if log is not None and not getattr(config, "verbose", True):
        print(f"  full log:         {Path(log).absolute()}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
