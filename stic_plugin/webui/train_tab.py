"""The Train tab's "STIC" accordion: ``stic_alpha`` and ``stic_nll_reduction`` as fields, shown when the stage
is STIC DPO.

The fields join the tab's inputs (``create_train_tab``), so LLaMA-Factory's own events carry their values:
"Preview command" and "Start" (``training_arguments``), "Save arguments" and "Load arguments", and the
configuration restored from an output folder. A value in "Extra arguments" wins over its field, as it does
for LLaMA-Factory's own keys; ``check`` refuses a value out of range, or a mistyped ``stic_*`` key there,
with the option's own message before anything starts.
"""

import dataclasses
import json

from ..constants import STAGE
from ..train.options import SticArguments, SticConfigError, check_stic_keys

TAB = "train"
OPTIONS = tuple(f.name for f in dataclasses.fields(SticArguments))


def is_stic_stage(display_name) -> bool:
    from llamafactory.extras.constants import TRAINING_STAGES

    return TRAINING_STAGES.get(display_name) == STAGE


def create_fields() -> dict:
    """The option fields, not placed yet: they exist before the tab's events are made, which take them."""
    import gradio as gr

    from ..train.options import NLL_REDUCTIONS
    from .locales import english_texts

    defaults, english = {f.name: f.default for f in dataclasses.fields(SticArguments)}, english_texts()
    return {
        "stic_alpha": gr.Number(value=defaults["stic_alpha"], render=False, **english["stic_alpha"]),
        "stic_nll_reduction": gr.Dropdown(
            choices=list(NLL_REDUCTIONS),
            value=defaults["stic_nll_reduction"],
            render=False,
            **english["stic_nll_reduction"],
        ),
    }


def create_train_tab(original, engine) -> dict:
    """LLaMA-Factory's Train tab, with the STIC accordion after its RLHF one."""
    import gradio as gr

    fields = create_fields()
    manager = engine.manager
    # create_train_tab starts its inputs from the manager's base elements: this call adds the STIC fields.
    manager.get_base_elems = lambda: type(manager).get_base_elems(manager) | set(fields.values())
    try:
        elems = original(engine)
    finally:
        del manager.get_base_elems

    from .locales import english_texts

    with gr.Accordion(open=True, visible=False, **english_texts()["stic_tab"]) as stic_tab:
        with gr.Row():
            for field in fields.values():
                field.render()
    place_after(stic_tab, elems.get("rlhf_tab"))
    stage = elems["training_stage"]
    stage.change(lambda name: gr.Accordion(visible=is_stic_stage(name)), [stage], [stic_tab], queue=False)
    return {**elems, "stic_tab": stic_tab, **fields}


def place_after(block, anchor) -> None:
    """Move ``block`` right after ``anchor`` among their parent's children (it stays last otherwise)."""
    siblings = getattr(block.parent, "children", None)
    if anchor is None or siblings is None or anchor not in siblings:
        return
    siblings.remove(block)
    siblings.insert(siblings.index(anchor) + 1, block)


def _field_values(get) -> dict | None:
    """The fields' values, or None when this Train tab has no STIC fields."""
    try:
        return {name: get(f"{TAB}.{name}") for name in OPTIONS}
    except KeyError:
        return None


def _stage(get) -> str | None:
    from llamafactory.extras.constants import TRAINING_STAGES

    return TRAINING_STAGES.get(get(f"{TAB}.training_stage"))


def training_arguments(args: dict, get) -> dict:
    """The STIC options of a stic_dpo run, from the fields; keys from "Extra arguments" stay as they are."""
    if args.get("stage") == STAGE:
        for name, value in (_field_values(get) or {}).items():
            args.setdefault(name, value)
    return args


def check(get) -> str:
    """The option's own message for a STIC value it refuses (fields or "Extra arguments"), else ""."""
    fields = _field_values(get)
    try:
        extra = json.loads(get(f"{TAB}.extra_args"))
    except (KeyError, TypeError, ValueError):
        return ""  # LLaMA-Factory's own check reports malformed JSON
    if _stage(get) != STAGE:
        return ""
    extra = extra if isinstance(extra, dict) else {}
    try:
        check_stic_keys(extra)
        values = {name: extra.get(name, (fields or {}).get(name)) for name in OPTIONS if name in extra or fields}
        SticArguments(**values).check_stic_arguments()
    except (ValueError, SticConfigError) as err:  # SticConfigError ends llamafactory-cli: here it is a message
        return str(err)
    return ""
