"""Python's cyclic garbage collector while a command starts.

Importing torch, transformers, LLaMA-Factory and vLLM and loading a model make a few million objects that live as
long as the command. While they are being made, the collector walks them again and again (its oldest generation
is collected each time it has grown by a quarter): a quarter of the CPU time of ``stic-cli pref`` on a tiny model
(19.5-20.5 s without this, 14.6-15.5 s with it). So a command that loads a model starts with the collector off
(``command_start``); once its generator is made (``generator_made``, called by the one factory), every object that
exists moves to the permanent generation (``gc.freeze``), which later collections, during generation, do not walk,
and the collector is back on.

In a longer process (a notebook, a test) the objects that exist when the command starts are frozen too, so that
the command's collections (vLLM makes several, explicitly) do not walk them; at the command's end everything is
unfrozen, so that what it loaded can be collected. Where the caller turned the collector off or froze objects
itself, nothing here changes it.

Importing this module costs nothing.
"""

import contextlib
import gc
import threading

_lock = threading.Lock()
_state = {"starting": False}


@contextlib.contextmanager
def command_start():
    """Around a command that loads a model: the collector off until ``generator_made`` or the command's end."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    with _lock:
        gc.disable()
        gc.freeze()
        _state["starting"] = True
    try:
        yield
    finally:
        with _lock:
            _state["starting"] = False
            gc.unfreeze()
            gc.enable()


def generator_made() -> None:
    """The start is over: what exists now lives as long as the command, out of the collector's way."""
    with _lock:
        if _state["starting"]:
            gc.freeze()
            gc.enable()
            _state["starting"] = False
