"""The hand-over of "Train on this dataset" sets the Train tab's stage and dataset whatever order the browser's events
arrive in (tests/webui/test_chromium.py clicks it in a browser)."""

from types import SimpleNamespace

from stic_plugin.webui.data_tab import DataTab
from stic_plugin.webui.handover import keeping_handed_over_dataset, leave_for_stage_change


def host_change_stage(training_stage):
    """LLaMA-Factory's answer to a stage change (0.9.5): no dataset, and packing for pre-training."""
    return [], training_stage == "Pre-Training"


def session(name: str):
    return SimpleNamespace(session_hash=name)


def test_a_stage_change_made_by_a_hand_over_keeps_its_dataset_until_the_stage_changes_again_in_its_session():
    change_stage = keeping_handed_over_dataset(host_change_stage)
    leave_for_stage_change(session("a"), "STIC DPO", "stic_pref")
    assert change_stage("STIC DPO", session("b")) == ([], False)  # another browser's stage change
    # gradio may send the event of one change twice, the second after the first's answer
    assert change_stage("STIC DPO", session("a")) == (["stic_pref"], False)
    assert change_stage("STIC DPO", session("a")) == (["stic_pref"], False)
    assert change_stage("Pre-Training", session("a")) == ([], True)  # the user's own change: as the host
    assert change_stage("STIC DPO", session("a")) == ([], False)  # and back: the hand-over has ended


def test_gradio_hands_the_browser_session_to_the_stage_change():
    import gradio as gr
    from gradio import helpers

    change_stage = keeping_handed_over_dataset(host_change_stage)
    leave_for_stage_change(session("s1"), "Supervised Fine-Tuning", "stic_sft")
    request = gr.Request(session_hash="s1")
    inputs, _, _ = helpers.special_args(change_stage, ["Supervised Fine-Tuning"], request=request)
    assert inputs == ["Supervised Fine-Tuning", request]
    assert change_stage(*inputs) == (["stic_sft"], False)


def test_the_patched_host_wires_the_wrapped_stage_change():
    from llamafactory.webui import control
    from llamafactory.webui.components import train

    assert train.change_stage.host_change_stage is control.change_stage
    leave_for_stage_change(session("s2"), "STIC DPO", "stic_pref")
    assert train.change_stage("STIC DPO", session("s2")) == (["stic_pref"], False)


def test_the_hand_over_leaves_its_dataset_only_when_it_changes_the_stage(tmp_path):
    tab = DataTab(SimpleNamespace(manager=None, runner=None))
    tab.run = SimpleNamespace(action="pref", location=(str(tmp_path), "stic_pref"))
    change_stage = keeping_handed_over_dataset(host_change_stage)
    for current, handed_over in (("STIC DPO", []), ("Supervised Fine-Tuning", ["stic_pref"])):
        stage, folder, dataset, text = tab.handover("en", current, session(f"from {current}"))
        assert (stage, folder, dataset["value"]) == ("STIC DPO", str(tmp_path), ["stic_pref"])
        assert "stic_pref" in text
        # the stage's event fires only when the stage changed; it answers with the dataset then
        assert change_stage("STIC DPO", session(f"from {current}"))[0] == handed_over
    tab.run = SimpleNamespace(action="dar", location=(str(tmp_path), "dar"))  # predictions: nothing to hand over
    assert tab.handover("en", "STIC DPO", session("dar"))[2] == {"__type__": "update"}
