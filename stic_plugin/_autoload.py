"""``main()`` runs at interpreter start: from ``stic_plugin.pth``, or ``stic_plugin.start`` on Python 3.15+.

Installs the post-import hook only: no torch or LLaMA-Factory import here, so every Python process
of the environment (llamafactory-cli, its torchrun workers, the web UI and the training process it
starts) loads the plugin for a few milliseconds. Set ``STIC_PLUGIN_AUTOLOAD=0`` to turn it off.
In stic-cli, it makes Ctrl-C one line from the start; in the processes that vLLM's engine starts by spawning a
new interpreter, it makes them end with their parent (``lifetime``); in a training process, it turns Python's
collector off until LLaMA-Factory's tuner is imported (``heap``).
"""

import os
import sys

AUTOLOAD_ENV = "STIC_PLUGIN_AUTOLOAD"


def autoload_enabled(environ=os.environ) -> bool:
    return environ.get(AUTOLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# The longest a training process's start runs with the collector off: the imports take seconds. A path that never
# imports the tuner (the command that only starts torchrun, and waits for it) gets it back on after this.
LONGEST_START_SECONDS = 120.0


def training_process(argv: list[str], environ=os.environ) -> bool:
    """``llamafactory-cli train`` (the web UI's runs are that command too), or a torchrun worker of it; not with
    ``USE_V1``, whose trainers do not go through the tuner."""
    if environ.get("USE_V1", "0").strip().lower() in ("1", "true", "y"):
        return False
    name = os.path.basename(argv[0])
    return (name in ("llamafactory-cli", "lmf") and argv[1:2] == ["train"]) or argv[0].endswith(
        os.path.join("llamafactory", "launcher.py")
    )


def main() -> None:
    if os.path.basename((getattr(sys, "argv", None) or [""])[0]) == "stic-cli":
        from .lifetime import exit_on_ctrl_c

        exit_on_ctrl_c("stic-cli: interrupted")  # until the command takes Ctrl-C over (commands/cli.py)
    if os.environ.get("STIC_FOLLOW_PARENT"):  # a process started by an engine of stic-cli (lifetime.py)
        from .lifetime import follow_if_asked

        follow_if_asked()
    if not autoload_enabled():
        return
    step = "importing stic_plugin.patches"
    try:
        from . import patches

        step = "stic_plugin.patches.apply()"
        patches.apply()
        if training_process(getattr(sys, "argv", None) or [""]):
            from .heap import pause

            pause(LONGEST_START_SECONDS)  # until LLaMA-Factory's tuner is imported (patches.py): imports uncollected
    except Exception as err:  # never break an unrelated interpreter start; say what failed, on one line
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        print(
            f"stic_plugin: auto-loading failed in {step} ({detail}); set {AUTOLOAD_ENV}=0 to silence.", file=sys.stderr
        )
