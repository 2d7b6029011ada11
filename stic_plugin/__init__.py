"""STIC (Self-Training on Image Comprehension) for LLaMA-Factory.

Installed with pip, the plugin loads itself in every Python process of the environment (see
``_autoload``): ``llamafactory-cli train`` accepts ``stage: stic_dpo`` and the ``stic_*`` options,
the web UI lists "STIC DPO", and the ``llava`` and ``stic`` dataset formatters are registered.
From Python, ``stic_plugin.apply()`` and ``stic_plugin.revert()`` do the same by hand.

Importing this package is cheap: torch and LLaMA-Factory are imported only when used.
"""

__version__ = "0.1.0"
__all__ = ["apply", "revert", "applied", "__version__"]


def apply() -> None:
    """Patch LLaMA-Factory now (modules already imported) and on import (the rest). Idempotent."""
    from . import patches

    patches.apply()


def revert() -> None:
    """Restore every patched LLaMA-Factory object to its original."""
    from . import patches

    patches.revert()


def applied() -> list[str]:
    """The patches in force."""
    from . import patches

    return patches.applied()
