"""``stic-cli``: STIC data generators that write LLaMA-Factory datasets.

stic-cli pref CONFIG.yaml [key=value ...]     stage-1 preference pairs from unlabeled images
stic-cli infuse CONFIG.yaml [key=value ...]   stage-2 description-infused instruction data
stic-cli dar CONFIG.yaml [key=value ...]      describe-and-respond answers, scored when answers are known
stic-cli pref2sft [key=value ...]             SFT data from a pref output's preferred descriptions (Table 3 ablation)
stic-cli demo [output_dir=demo_output]        the whole pipeline on a tiny model, on CPU, nothing downloaded
stic-cli bench [architecture=llava-1.5-7b]    speed of generation and training on this machine
stic-cli COMMAND --help                       every key, its default and what it does
"""

import argparse
import sys

from .config import (
    BenchConfig,
    DarConfig,
    DemoConfig,
    InfuseConfig,
    Pref2SftConfig,
    PrefConfig,
    describe_keys,
    load_config,
)

# name: (configuration, module that runs it, its function); the module is imported only when its command runs
COMMANDS = {
    "pref": (PrefConfig, "stic_plugin.commands.pref", "run_pref"),
    "infuse": (InfuseConfig, "stic_plugin.commands.infuse", "run_infuse"),
    "dar": (DarConfig, "stic_plugin.commands.dar", "run_dar"),
    "pref2sft": (Pref2SftConfig, "stic_plugin.commands.pref2sft", "run_pref2sft"),
    "demo": (DemoConfig, "stic_plugin.commands.demo", "run_demo"),
    "bench": (BenchConfig, "stic_plugin.commands.bench", "run_bench"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stic-cli", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (config_cls, _, _) in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=(config_cls.__doc__ or "").split(":", 1)[-1].strip(),
            description=config_cls.__doc__,
            epilog="keys (in the YAML file, or as key=value):\n" + describe_keys(config_cls),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("args", nargs="*", metavar="CONFIG.yaml|key=value", help="a YAML file, then overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config_cls, module_name, function_name = COMMANDS[args.command]
    config_path = args.args[0] if args.args and "=" not in args.args[0] else None
    overrides = args.args[1:] if config_path else args.args
    from ..data.output import release_locks
    from ..data.runs import ACTIVE_OUTPUTS, interrupted_message
    from ..generation.continuous import CacheTooLarge

    try:
        config = load_config(config_cls, config_path, overrides)
        import importlib

        from .console import console

        command_line = "stic-cli " + " ".join(sys.argv[1:] if argv is None else argv)
        with console(config, command_line) as log:
            code = getattr(importlib.import_module(module_name), function_name)(config)
        if log is not None and not getattr(config, "verbose", True):
            print(f"  full log:         {log}", flush=True)
        return code
    except (ValueError, OSError, CacheTooLarge) as err:  # configuration, data, model loading, memory: a message
        print(f"stic-cli {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: whole records are on disk, and a rerun resumes from them
        print(f"\nstic-cli {args.command}: {interrupted_message()}", file=sys.stderr)
        return 130
    finally:
        ACTIVE_OUTPUTS.clear()
        release_locks()


if __name__ == "__main__":
    sys.exit(main())
