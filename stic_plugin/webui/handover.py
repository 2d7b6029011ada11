"""The hand-over of "Train on this dataset": the Train tab's stage and dataset set together, in whatever order the
browser's events arrive.

LLaMA-Factory answers a change of the Train tab's stage by emptying its dataset list (``change_stage``, an
event of its own that the browser sends once the new stage has arrived). A hand-over that set the stage and
then the dataset could see its dataset emptied by that event when it came last. So a hand-over that changes the
stage leaves its dataset here first, and the stage's event (``change_stage``, wrapped in ``stic_plugin.patches``)
answers with it instead of an empty list: both then set the same dataset, in either order. The browser may send
that event more than once for one change (gradio 5.50 does), so the dataset stays until the stage changes again.
"""

import threading

_lock = threading.Lock()
_pending: dict[str, tuple[str, str]] = {}  # browser session -> (the stage being set, its dataset)


def _session(request) -> str:
    return getattr(request, "session_hash", None) or ""


def leave_for_stage_change(request, stage: str, dataset: str) -> None:
    """Before a hand-over's answer sets ``stage`` (a display name that differs from the current one), in the
    browser session of ``request`` (a ``gr.Request``)."""
    with _lock:
        _pending[_session(request)] = (stage, dataset)


def keeping_handed_over_dataset(change_stage):
    """``change_stage`` of LLaMA-Factory's Train tab, answering the stage change that a hand-over made (each time
    its event arrives) with the hand-over's dataset; any other stage change as before, and it ends the hand-over."""
    import gradio as gr  # gradio hands the browser session to a parameter annotated gr.Request

    def change_stage_keeping_handover(training_stage, request: gr.Request):
        datasets, *others = change_stage(training_stage)
        with _lock:
            pending = _pending.get(_session(request))
            if pending is not None and pending[0] != training_stage:
                del _pending[_session(request)]
        if pending is not None and pending[0] == training_stage:
            datasets = [pending[1]]
        return (datasets, *others)

    # not __wrapped__: gradio would read the host's signature through it and never pass the request
    change_stage_keeping_handover.host_change_stage = change_stage
    return change_stage_keeping_handover
