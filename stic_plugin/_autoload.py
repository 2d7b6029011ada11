"""``main()`` runs at interpreter start: from ``stic_plugin.pth``, or ``stic_plugin.start`` on Python 3.15+.

Installs the post-import hook only: no torch or LLaMA-Factory import here, so every Python process
of the environment (llamafactory-cli, its torchrun workers, the web UI and the training process it
starts) loads the plugin for a few milliseconds. Set ``STIC_PLUGIN_AUTOLOAD=0`` to turn it off.
"""

import os

AUTOLOAD_ENV = "STIC_PLUGIN_AUTOLOAD"


def autoload_enabled(environ=os.environ) -> bool:
    return environ.get(AUTOLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def main() -> None:
    if not autoload_enabled():
        return
    try:
        from . import patches

        patches.apply()
    except Exception as err:  # never break an unrelated interpreter start
        import sys

        print(f"stic_plugin: auto-loading failed ({err!r}); set {AUTOLOAD_ENV}=0 to silence.", file=sys.stderr)
