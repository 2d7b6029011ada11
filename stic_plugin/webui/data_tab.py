"""The "STIC data" tab: ``stic-cli pref``, ``infuse`` and ``dar`` from the web UI.

The model, template and adapters come from the top bar and its checkpoint selector, as in the other tabs
(for ``infuse``, pick the stage-1 adapter there). The form sets the keys users change; the "Advanced" box
takes any other key of the command as ``key=value``. "Preview command" shows the exact command line,
"Start" runs it in a child process (the progress bar is the command's own, the log is kept whole, in the
output's ``NAME.stic/webui.log`` too; a command with ``trust_remote_code=true`` only once a checkbox, shown
then, confirms it, run by run), "Abort" stops it, and the same "Start" then goes on from where it
stopped. After a run: its summary, its lengths plot and a preview of its first records; "Train on this
dataset" sets the Train tab to it (its dataset list, read from dataset_info.json when opened, has it anyway).
"""

import json
from pathlib import Path

from ..data.output import ShardedOutput
from . import command_line
from .command_line import ACTION_FIELDS, ACTIONS, SHARED_FIELDS
from .locales import english_texts, field_element, message
from .process import DataRun, error_line, last_progress, readable_log
from .recipe_values import (
    FORM_FIELDS,
    RECIPE_FOLDER_OF_TEMPLATE,
    describe,
    merged_extra_arguments,
    recipe_path,
    recipe_values,
)
from .results import lengths_plot, records_html, summary
from .train_tab import place_after

TAB = "stic"
TOP = ("top.lang", "top.model_name", "top.model_path", "top.finetuning_type", "top.checkpoint_path", "top.template")
POLL_SECONDS = 1.0
LOG_FILE = "webui.log"
# the Train tab's stage for a dataset each action writes
TRAIN_STAGE = {"pref": "stic_dpo", "infuse": "sft"}


def _component(action: str, field: str, **texts):
    """The form's component for a key of ``stic-cli ACTION`` (or a field standing for one of two keys)."""
    import gradio as gr

    kind = command_line.kind_of(action, field)
    default = None if field in command_line.PSEUDO_FIELDS else command_line.default_of(action, field)
    if kind == "choice":
        return gr.Dropdown(choices=list(command_line.choices_of(action, field)), value=default, **texts)
    if kind == "bool":
        return gr.Checkbox(value=bool(default), **texts)
    if kind in ("int", "float"):
        return gr.Number(value=default, precision=0 if kind == "int" else None, **texts)
    return gr.Textbox(value="" if default is None else str(default), **texts)


def advanced_keys_markdown(action: str, lang: str | None) -> str:
    """The keys only the "Advanced" box sets, with their defaults and help, read from the command's class."""
    lines = [message("advanced_keys", lang, action=action), ""]
    for key in command_line.advanced_keys(action):
        default = command_line.default_of(action, key)
        lines.append(f"- `{key}` ({command_line.format_value(default)}): {command_line.help_of(action, key)}")
    return "\n".join(lines)


class DataTab:
    """The tab's components and what its buttons do; ``run`` is the one child process of this web UI."""

    def __init__(self, engine, train_tab_label: str | None = None) -> None:
        self.engine = engine
        self.train_tab_label = train_tab_label
        self.run = DataRun()
        self.elems: dict = {}
        self.fields: dict = {}  # element name -> (action or None, field)

    # ---- layout -------------------------------------------------------------------------------------------
    def create(self) -> dict:
        import gradio as gr

        elems, english = self.elems, english_texts()
        self._english = english
        elems["stic_action"] = gr.Radio(value=ACTIONS[0], **english["stic_action"])
        groups = {}
        for action in ACTIONS:
            with gr.Row(visible=action == ACTIONS[0], elem_id=f"stic_{action}_fields") as groups[action]:
                for field in ACTION_FIELDS[action]:
                    self._add_field(action, field)
        with gr.Row():
            for field in SHARED_FIELDS:
                self._add_field(None, field)
        with gr.Accordion(open=False, **english["stic_advanced_tab"]) as elems["stic_advanced_tab"]:
            elems["stic_advanced"] = gr.Textbox(lines=3, max_lines=20, **english["stic_advanced"])
            elems["stic_advanced_keys"] = gr.Markdown(advanced_keys_markdown(ACTIONS[0], "en"))
        with gr.Row():
            for name, variant in (("stic_preview_btn", "secondary"), ("stic_start_btn", "primary")):
                elems[name] = gr.Button(variant=variant, **english[name])
            elems["stic_abort_btn"] = gr.Button(variant="stop", **english["stic_abort_btn"])
            elems["stic_handover_btn"] = gr.Button(visible=False, **english["stic_handover_btn"])
        elems["stic_trust_code"] = gr.Checkbox(value=False, visible=False, **english["stic_trust_code"])
        elems["stic_progress"] = gr.Slider(visible=False, interactive=False)
        elems["stic_output_box"] = gr.Markdown(**english["stic_output_box"])
        elems["stic_log"] = gr.Textbox(lines=8, max_lines=16, interactive=False, autoscroll=True, **english["stic_log"])
        with gr.Row():
            elems["stic_summary"] = gr.JSON(visible=False, **english["stic_summary"])
            elems["stic_plot"] = gr.Image(type="pil", interactive=False, visible=False, **english["stic_plot"])
        elems["stic_records"] = gr.HTML()
        self._events(groups)
        return elems

    def _add_field(self, action: str | None, field: str) -> None:
        name = field_element(action, field)
        self.elems[name] = _component(action or ACTIONS[0], field, **self._english.get(name, {}))
        self.fields[name] = (action, field)

    def _events(self, groups: dict) -> None:
        import gradio as gr

        manager, elems = self.engine.manager, self.elems
        lang = manager.get_elem_by_id("top.lang")
        action = elems["stic_action"]
        inputs = {manager.get_elem_by_id(elem_id) for elem_id in TOP} | {action, elems["stic_advanced"]}
        inputs |= {elems[name] for name in self.fields} | {elems["stic_trust_code"]}
        outputs = [elems[name] for name in ("stic_output_box", "stic_progress", "stic_log")]
        outputs += [elems[name] for name in ("stic_summary", "stic_plot", "stic_records", "stic_handover_btn")]
        outputs += [elems["stic_trust_code"]]

        def switch(chosen, language):
            return [gr.Row(visible=chosen == one) for one in ACTIONS] + [
                advanced_keys_markdown(chosen, language),
                gr.Button(visible=False),
            ]

        action.change(
            switch,
            [action, lang],
            [groups[one] for one in ACTIONS] + [elems["stic_advanced_keys"], elems["stic_handover_btn"]],
            queue=False,
        )
        lang.change(advanced_keys_markdown, [action, lang], [elems["stic_advanced_keys"]])
        elems["stic_preview_btn"].click(self.preview, inputs, [elems["stic_output_box"]], concurrency_limit=None)
        elems["stic_start_btn"].click(self.start, inputs, outputs)
        elems["stic_abort_btn"].click(self.abort, [lang], [elems["stic_output_box"]], queue=False)
        train = {name: manager.get_elem_by_id(f"train.{name}") for name in ("training_stage", "dataset_dir", "dataset")}
        form = [manager.get_elem_by_id(f"train.{element}") for element, _, _ in FORM_FIELDS]
        extra_arguments = manager.get_elem_by_id("train.extra_args")
        template = manager.get_elem_by_id("top.template")

        def handover(lang: str, current_stage: str, request: gr.Request):  # gradio fills in the browser session
            return self.handover(lang, current_stage, request)

        elems["stic_handover_btn"].click(
            handover,
            [lang, train["training_stage"]],
            [train["training_stage"], train["dataset_dir"], train["dataset"], elems["stic_output_box"]],
        ).then(
            self.handover_recipe, [lang, template, extra_arguments], [*form, extra_arguments, elems["stic_output_box"]]
        ).then(None, js=_show_tab_js(self.train_tab_label))

    # ---- the command --------------------------------------------------------------------------------------
    def _getter(self, data: dict):
        manager = self.engine.manager

        def get(name: str):
            if "." in name:
                return data[manager.get_elem_by_id(name)]
            return data[self.elems[name]]

        return get

    def model_keys(self, get) -> dict:
        """model_name_or_path, template and adapters from the top bar, as LLaMA-Factory's tabs read them."""
        from llamafactory.extras.constants import PEFT_METHODS
        from llamafactory.webui.common import get_save_dir

        model_name, finetuning_type = get("top.model_name"), get("top.finetuning_type")
        keys = {"model_name_or_path": get("top.model_path"), "template": get("top.template")}
        checkpoints = get("top.checkpoint_path")
        if checkpoints:
            if finetuning_type in PEFT_METHODS:
                keys["adapter_name_or_path"] = ",".join(
                    get_save_dir(model_name, finetuning_type, checkpoint) for checkpoint in checkpoints
                )
            else:
                keys["model_name_or_path"] = get_save_dir(model_name, finetuning_type, checkpoints)
        return keys

    def command(self, data: dict):
        """(action, args, configuration) of the form; ValueError with the message that refuses it."""
        from llamafactory.webui.locales import ALERTS

        get = self._getter(data)
        lang = get("top.lang") or "en"
        if not get("top.model_name"):
            raise ValueError(ALERTS["err_no_model"][lang])
        if not get("top.model_path"):
            raise ValueError(ALERTS["err_no_path"][lang])
        action = get("stic_action")
        fields = {
            field: data[self.elems[name]] for name, (owner, field) in self.fields.items() if owner in (None, action)
        }
        args = command_line.overrides(action, self.model_keys(get), fields, get("stic_advanced"))
        return action, args, command_line.check(action, args)

    # ---- buttons ------------------------------------------------------------------------------------------
    def preview(self, data: dict):
        import gradio as gr

        lang = self._getter(data)("top.lang") or "en"
        box = self.elems["stic_output_box"]
        try:
            action, args, _ = self.command(data)
        except ValueError as err:
            gr.Warning(message("refused", lang, error=err))
            return {box: message("refused", lang, error=err)}
        return {box: f"```bash\n{command_line.preview('stic-cli', action, args)}\n```"}

    def start(self, data: dict):
        import gradio as gr
        from llamafactory.webui.locales import ALERTS

        lang = self._getter(data)("top.lang") or "en"
        box = self.elems["stic_output_box"]
        if self.run.running or self.engine.runner.running:
            gr.Warning(ALERTS["err_conflict"][lang])
            yield {box: ALERTS["err_conflict"][lang]}
            if self.run.running:  # this page was reloaded, or opened twice: show the run in progress
                yield from self.monitor(lang)
            return
        try:
            action, args, config = self.command(data)
        except ValueError as err:
            gr.Warning(message("refused", lang, error=err))
            yield {box: message("refused", lang, error=err)}
            return
        trust = self.elems["stic_trust_code"]
        if getattr(config, "trust_remote_code", False) and not data.get(trust):
            # Code from the model folder runs with the web UI's rights: only once the user says so, run by run.
            text = message("confirm_code", lang, model=config.model_name_or_path)
            gr.Warning(text)
            yield {box: text, trust: gr.Checkbox(value=False, visible=True)}
            return
        folder, name = command_line.output_location(config)
        try:
            self.run.start(action, args, (folder, name), log_path(folder, name))
        except OSError as err:  # the log's folder cannot be made, or stic-cli cannot be run
            gr.Warning(message("refused", lang, error=err))
            yield {box: message("refused", lang, error=err)}
            return
        yield {
            box: message("starting", lang),
            self.elems["stic_summary"]: gr.JSON(visible=False),
            self.elems["stic_plot"]: gr.Image(value=None, visible=False),
            self.elems["stic_records"]: "",
            self.elems["stic_handover_btn"]: gr.Button(visible=False),
            trust: gr.Checkbox(value=False, visible=False),  # the next run asks again
        }
        yield from self.monitor(lang)

    def monitor(self, lang: str):
        """Progress and log every second while the command runs; its outcome and results when it ends."""
        import gradio as gr

        run, elems = self.run, self.elems
        box, log, bar = elems["stic_output_box"], elems["stic_log"], elems["stic_progress"]
        command = " ".join(["stic-cli", run.action, *run.args])
        while True:
            code = run.wait(POLL_SECONDS)
            raw = run.raw_log()
            progress = last_progress(raw)
            shown = _progress_bar(progress)
            if code is not None:
                break
            if run.aborted:
                status = message("aborting", lang)
            else:
                status = message("running", lang, command=command) if progress else message("starting", lang)
            yield {box: status, log: readable_log(raw), bar: shown}
        folder, name = run.location
        final = {log: readable_log(raw), bar: shown}
        if run.aborted:
            gr.Info(message("aborted", lang))
            final[box] = message("aborted", lang)
            yield final
            return
        if code != 0:
            error = error_line(raw, run.action) or message("failed_see_log", lang)
            gr.Warning(message("failed", lang, code=code, error=error))
            final[box] = message("failed", lang, code=code, error=error)
            yield final
            return
        gr.Info(message("finished", lang, name=name, folder=folder))
        stats, plot = summary(folder, name), lengths_plot(folder, name)
        final.update(
            {
                box: message("finished", lang, name=name, folder=folder),
                elems["stic_summary"]: gr.JSON(value=stats, visible=stats is not None),
                elems["stic_plot"]: gr.Image(value=plot, visible=plot is not None),
                elems["stic_records"]: records_html(run.action, folder, name, lang),
                elems["stic_handover_btn"]: gr.Button(visible=run.action in TRAIN_STAGE),
            }
        )
        yield final

    def abort(self, lang: str):
        import gradio as gr

        if not self.run.running:
            return gr.update()
        self.run.abort()
        return message("aborting", lang)

    def handover(self, lang: str, current_stage: str, request):
        """The Train tab set to the dataset of the last run: its stage, its folder and the dataset. A stage change
        empties the dataset list in an event of its own (LLaMA-Factory's), which then keeps this dataset
        (``webui.handover``)."""
        import gradio as gr
        from llamafactory.extras.constants import TRAINING_STAGES

        from .handover import leave_for_stage_change

        if self.run.action not in TRAIN_STAGE or self.run.location is None:
            return gr.update(), gr.update(), gr.update(), message("no_handover", lang)
        stage = TRAIN_STAGE[self.run.action]
        display = next(name for name, value in TRAINING_STAGES.items() if value == stage)
        folder, name = self.run.location
        if display != current_stage:
            leave_for_stage_change(request, display, name)
        handed = message("handover", lang, stage=display, name=name, folder=folder)
        return display, folder, gr.update(value=[name]), handed

    def handover_recipe(self, lang: str, template: str, extra_arguments: str):
        """The Train tab's settings from the shipped recipe of the run's stage and the template's model family
        (learning rate, epochs, LoRA, cutoff, batch, beta, alpha...), and a message that says what was set, or
        that no recipe matches (the form then keeps its values)."""
        import gradio as gr

        unchanged = [gr.update() for _ in FORM_FIELDS] + [gr.update()]
        if self.run.action not in TRAIN_STAGE or self.run.location is None:
            return [*unchanged, gr.update()]
        stage, name, folder = TRAIN_STAGE[self.run.action], self.run.location[1], self.run.location[0]
        handed = message("handover", lang, stage=stage, name=name, folder=folder)
        path = recipe_path(template, self.run.action)
        if path is None:
            known = ", ".join(RECIPE_FOLDER_OF_TEMPLATE)
            return [*unchanged, f"{handed} {message('no_recipe', lang, template=template, known=known)}"]
        fields, extra = recipe_values(path)
        updates = [
            gr.update(value=fields[element]) if element in fields else gr.update() for element, _, _ in FORM_FIELDS
        ]
        return [*updates, merged_extra_arguments(extra_arguments, extra), f"{handed} {describe(path, fields, extra)}"]


def _show_tab_js(label: str | None) -> str | None:
    """Browser code that opens the tab of this label (the Train tab, after "Train on this dataset")."""
    if not label:
        return None
    return (
        "() => { const tab = [...document.querySelectorAll('button[role=\"tab\"]')]"
        f".find((button) => button.textContent.trim() === {json.dumps(str(label))}); if (tab) tab.click(); }}"
    )


def _progress_bar(progress: dict | None):
    import gradio as gr

    if progress is None:
        return gr.Slider(visible=False)
    return gr.Slider(label=progress["text"], value=progress["percent"], visible=True)


def create_data_tab_after(engine, train_tab) -> DataTab:
    """The "STIC data" tab, made in the web UI's Blocks and placed after its Train tab (``train_tab``), its
    elements registered with the engine's manager as ``stic.*``."""
    import gradio as gr

    english = english_texts()
    with gr.Tab(**english["stic_data_tab"]) as tab_item:
        tab = DataTab(engine, getattr(train_tab, "label", None))
        elems = tab.create()
    engine.manager.add_elems(TAB, {"stic_data_tab": tab_item, **elems})
    place_after(tab_item, train_tab)
    return tab


def log_path(folder: str, name: str) -> Path:
    """Where the tab keeps the whole log of the runs that write ``folder/name`` (appended, run after run)."""
    return ShardedOutput(folder, name).meta_dir / LOG_FILE
