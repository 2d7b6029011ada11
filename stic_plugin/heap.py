"""Python's cyclic garbage collector while a command starts.

Importing torch, transformers, LLaMA-Factory and vLLM and loading a model make a few million objects that live as
long as the process. While they are being made, the collector walks them again and again (its oldest generation
is collected each time it has grown by a quarter): a quarter of the CPU time of ``stic-cli pref`` on a tiny model
(19.5-20.5 s without this, 14.6-15.5 s with it, on 2 cores), a fifth of ``llamafactory-cli train``'s. So while a
process starts, the collector is off (``pause``); once the start is over (``start_is_over``: stic-cli's generator
is made, or a training process has imported LLaMA-Factory's tuner), every object that exists moves to the
permanent generation (``gc.freeze``), which later collections do not walk, and the collector is back on.

Around a stic-cli command (``command_start``), in a longer process (a notebook, a test), the objects that exist
when it starts are frozen too, so that the command's collections (vLLM makes several, explicitly) do not walk
them; at the command's end everything is unfrozen, so that what it loaded can be collected. Where the caller
turned the collector off or froze objects itself, nothing here changes it.

Importing this module costs nothing (it is read at interpreter start).
"""

import contextlib
import gc
import threading

_lock = threading.Lock()
_state = {"paused": False, "ours": False}


def pause() -> bool:
    """The collector off, and what exists frozen, until ``start_is_over`` or ``release``. False (and nothing
    changed) where the caller turned the collector off or froze objects."""
    with _lock:
        if not gc.isenabled() or gc.get_freeze_count():
            return False
        gc.disable()
        gc.freeze()
        _state.update(paused=True, ours=True)
        return True


def start_is_over() -> None:
    """What exists now lives as long as the process, out of the collector's way; the collector back on."""
    with _lock:
        if _state["paused"]:
            gc.freeze()
            gc.enable()
            _state["paused"] = False


def release() -> None:
    """Everything frozen since ``pause`` collectable again, and the collector on."""
    with _lock:
        if _state["ours"]:
            gc.unfreeze()
            gc.enable()
            _state.update(paused=False, ours=False)


@contextlib.contextmanager
def command_start():
    """Around a stic-cli command that loads a model."""
    if not pause():
        yield
        return
    try:
        yield
    finally:
        release()
