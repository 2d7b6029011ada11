"""The STIC data tab's command from its form and the top bar, without a browser (tests/webui/test_chromium.py
drives the tab itself)."""

import os
from types import SimpleNamespace

import pytest

from stic_plugin.webui.command_line import ACTION_FIELDS, ACTIONS, PSEUDO_FIELDS, SHARED_FIELDS, default_of
from stic_plugin.webui.data_tab import DataTab, advanced_keys_markdown
from stic_plugin.webui.locales import field_element


class Manager:
    """LLaMA-Factory's element registry, reduced to what the tab asks of it."""

    def __init__(self):
        self.elems = {}

    def get_elem_by_id(self, elem_id):
        return self.elems.setdefault(elem_id, object())


def tab_and_form(action: str, top: dict, fields: dict, advanced: str = ""):
    """A tab whose elements are placeholders, and the values of a click on one of its buttons."""
    tab = DataTab(SimpleNamespace(manager=Manager(), runner=SimpleNamespace(running=False)))
    for owner in [*ACTIONS, None]:
        for field in ACTION_FIELDS[owner] if owner else SHARED_FIELDS:
            name = field_element(owner, field)
            tab.elems[name], tab.fields[name] = object(), (owner, field)
    tab.elems["stic_action"], tab.elems["stic_advanced"] = object(), object()
    data = {tab.engine.manager.get_elem_by_id(f"top.{key}"): value for key, value in top.items()}
    data[tab.elems["stic_action"]], data[tab.elems["stic_advanced"]] = action, advanced
    for name, (owner, field) in tab.fields.items():
        default = "" if field in PSEUDO_FIELDS else default_of(owner or action, field)  # as the form starts
        data[tab.elems[name]] = fields.get(field, default) if owner in (None, action) else "not this action's"
    return tab, data


TOP = dict(lang="en", model_name="LLaVA-1.5-7B-Chat", model_path="/models/llava", template="llava")


def test_the_adapters_come_from_the_top_bars_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the dataset folder of the command (data/), checked for a conflicting output
    llava = tmp_path / "llava.json"
    llava.write_text("[]")
    top = dict(TOP, finetuning_type="lora", checkpoint_path=["stage1", "extra"])
    tab, data = tab_and_form("infuse", top, {"source": str(llava), "batch_size": 2, "num_samples": "4"})
    action, args, config = tab.command(data)
    saves = os.path.join("saves", "LLaVA-1.5-7B-Chat", "lora")
    assert action == "infuse" and config.adapter_name_or_path == f"{saves}/stage1,{saves}/extra"
    assert args[:4] == [
        "model_name_or_path=/models/llava",
        f"adapter_name_or_path={saves}/stage1,{saves}/extra",
        "template=llava",
        f"llava_file={llava}",
    ]
    assert "not this action's" not in " ".join(args) and config.num_samples == 4
    full = dict(TOP, finetuning_type="full", checkpoint_path="run1")
    tab, data = tab_and_form("pref", full, {"images": str(tmp_path)})
    assert tab.command(data)[2].model_name_or_path == os.path.join("saves", "LLaVA-1.5-7B-Chat", "full", "run1")


def test_without_a_model_name_or_path_it_says_so_as_the_other_tabs_do():
    from llamafactory.webui.locales import ALERTS

    for missing in ("model_name", "model_path"):
        tab, data = tab_and_form("pref", dict(TOP, finetuning_type="lora", checkpoint_path=[], **{missing: ""}), {})
        expected = ALERTS["err_no_model" if missing == "model_name" else "err_no_path"]["en"]
        with pytest.raises(ValueError, match=expected):
            tab.command(data)


def test_the_advanced_keys_are_listed_with_their_defaults_and_help():
    text = advanced_keys_markdown("pref", "en")
    assert text.startswith("Keys of `stic-cli pref` for the box above")
    assert "- `corruption_prob` (0.5): Probability that the dispreferred response" in text
    assert "- `image_max_pixels` (589824):" in text and "`batch_size`" not in text
    assert advanced_keys_markdown("dar", "zh").startswith("上方输入框可用的 `stic-cli dar` 参数")


def test_a_command_that_runs_the_model_folder_s_code_starts_only_once_confirmed(tmp_path):
    """trust_remote_code=true (in "Advanced") runs code from the model folder: a checkbox, shown then, confirms it."""
    outcomes = []
    for confirmed in (False, True):
        top = dict(TOP, finetuning_type="lora", checkpoint_path=[])
        tab, data = tab_and_form(
            "pref", top, {"images": str(tmp_path), "dataset_dir": str(tmp_path)}, "trust_remote_code=true"
        )
        for name in ("stic_trust_code", "stic_output_box", "stic_summary", "stic_plot", "stic_records"):
            tab.elems[name] = object()
        tab.elems["stic_handover_btn"] = object()
        data[tab.elems["stic_trust_code"]] = confirmed
        started = []
        tab.run = SimpleNamespace(running=False, start=lambda *args, started=started: started.append(args))
        tab.monitor = lambda lang: iter(())
        first = next(tab.start(data))
        box = tab.elems["stic_trust_code"]
        outcomes.append((len(started), first[box].visible, first[box].value, first[tab.elems["stic_output_box"]]))
    (refused, shown, ticked, text), (ran, shown_after, ticked_after, _) = outcomes
    assert refused == 0 and shown is True and ticked is False
    assert text.startswith("Not started: trust_remote_code=true runs the code shipped in /models/llava")
    assert ran == 1 and shown_after is False and ticked_after is False  # the next run asks again
