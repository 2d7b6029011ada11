"""Every ``stic-cli`` command's keys: YAML keys, overridable as ``key=value`` on the command line.

One module per command (``pref``, ``infuse``, ``dar``, ``pref2sft``, ``eval``; the tools' own, ``demo`` and
``bench``, beside them in ``stic_plugin.tools``), each key with its help text; the keys several commands share
are declared once, in ``groups``; ``keys`` reads and shows them (``load_config``, ``describe_keys``).
"""

from .dar import DarConfig
from .eval import EvalConfig
from .infuse import InfuseConfig
from .keys import RENAMED, check_plain_name, describe_keys, load_config, option, parse_override
from .pref import PrefConfig
from .pref2sft import Pref2SftConfig
from .recipes import RecipesConfig
from .single_view import SingleViewConfig

__all__ = [
    "DarConfig",
    "EvalConfig",
    "InfuseConfig",
    "Pref2SftConfig",
    "PrefConfig",
    "RENAMED",
    "RecipesConfig",
    "SingleViewConfig",
    "check_plain_name",
    "describe_keys",
    "load_config",
    "option",
    "parse_override",
]
