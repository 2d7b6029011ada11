"""Python's cyclic garbage collector while a process starts.

Importing torch, transformers, LLaMA-Factory and vLLM and loading a model make a few million objects that live as
long as the process. While they are being made, the collector walks them again and again (its oldest generation
is collected each time it has grown by a quarter): in ``stic-cli pref`` on a tiny model, 1,865 collections took
1.8-2.3 s of a 13-20 s run; with what follows, 161 take 0.65-0.7 s. So while a process starts, the collector is
off (``pause``). Once the start is over (``start_is_over``: stic-cli's
generator is made, or a training process has imported LLaMA-Factory's tuner), the garbage of the start is
collected once, every object left moves to the permanent generation (``gc.freeze``), which later collections do
not walk, and the collector is back on. A process forked while the collector is off (vLLM's engine processes, a
data loader's workers) starts with it on.

A stic-cli command that loads a model runs within ``command_start``: there, in a longer process (a notebook, a
test), the objects that exist when the command starts are frozen too, and at the command's end everything is
unfrozen, so that what the command loaded can be collected. A command that never makes a generator (nothing left
to do) runs to its end with the collector off. Where the caller turned the collector off or froze objects itself,
nothing here changes it.

Importing this module costs nothing (it is read at interpreter start).
"""

import contextlib
import gc
import os
import threading

_lock = threading.Lock()
_state = {"paused": False, "ours": False, "timer": None}


def pause(longest: float | None = None) -> bool:
    """The collector off, and what exists frozen, until ``start_is_over`` or ``release`` (or at the latest after
    ``longest`` seconds). False (and nothing changed) where the caller turned the collector off or froze objects."""
    with _lock:
        if not gc.isenabled() or gc.get_freeze_count():
            return False
        gc.disable()
        gc.freeze()
        _state.update(paused=True, ours=True)
        if longest is not None:
            _state["timer"] = threading.Timer(longest, start_is_over)
            _state["timer"].daemon = True
            _state["timer"].start()
        return True


def start_is_over() -> None:
    """The start's garbage collected, what is left frozen (out of the collector's way), the collector back on."""
    with _lock:
        if _state["timer"] is not None:
            _state["timer"].cancel()
            _state["timer"] = None
        if _state["paused"]:
            gc.collect()
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


def _forked() -> None:
    """In a child forked during the start: the collector on (vLLM's engine process never turns it on itself)."""
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    _state["timer"] = None  # the parent's thread: not in this process
    if _state["paused"]:
        _state.update(paused=False, ours=False)
        gc.enable()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
