"""Labels and help texts of the STIC elements: English and Chinese, English for the web UI's other languages."""

import pytest

from stic_plugin.train.options import SticArguments
from stic_plugin.webui.command_line import ACTION_FIELDS, SHARED_FIELDS, help_of
from stic_plugin.webui.locales import LANGUAGES, MESSAGES, field_element, locale_entries, message

HOST = {
    "cmd_preview_btn": {lang: {"value": f"preview ({lang})"} for lang in LANGUAGES},
    "start_btn": {lang: {"value": "Start"} for lang in LANGUAGES},
    "stop_btn": {lang: {"value": "Abort"} for lang in LANGUAGES},
    "output_box": {lang: {"value": "Ready."} for lang in LANGUAGES},
}


@pytest.fixture(scope="module")
def entries():
    return locale_entries(HOST)


def test_every_element_has_every_language_of_the_web_ui(entries):
    elements = {field_element(action, field) for action, fields in ACTION_FIELDS.items() for field in fields}
    elements |= {field_element(None, field) for field in SHARED_FIELDS}
    elements |= {"stic_tab", "stic_alpha", "stic_nll_reduction", "stic_data_tab", "stic_action", "stic_start_btn"}
    assert elements <= set(entries)
    for name, texts in entries.items():
        assert set(texts) == set(LANGUAGES), name
        assert all(texts[lang] for lang in LANGUAGES), name


def test_english_and_chinese_texts_differ_and_the_others_are_english(entries):
    own = [name for name in entries if name not in ("stic_preview_btn", "stic_start_btn", "stic_abort_btn")]
    for name in own:
        if name == "stic_output_box":
            continue
        english, chinese = entries[name]["en"], entries[name]["zh"]
        assert english != chinese, name
        for key in ("label", "value"):
            if key in english:
                assert english[key] != chinese[key], (name, key)
        if "info" in english:
            assert "info" in chinese and chinese["info"] != english["info"], name
        assert entries[name]["ru"] == entries[name]["ko"] == entries[name]["ja"] == english, name
    assert entries["stic_preview_btn"]["ja"] == {"value": "preview (ja)"}  # LLaMA-Factory's own texts


def test_the_english_help_is_the_options_own(entries):
    help_of_alpha = next(
        f.metadata["help"] for f in SticArguments.__dataclass_fields__.values() if f.name == "stic_alpha"
    )
    assert entries["stic_alpha"]["en"]["info"] == help_of_alpha
    assert entries["stic_infuse_dataset_name"]["en"]["info"] == help_of("infuse", "dataset_name")
    assert entries["stic_batch_size"]["en"]["info"] == help_of("pref", "batch_size")
    assert entries["stic_dar_dataset_dir"]["en"]["label"] == "Predictions folder"


def test_messages_fall_back_to_english():
    for key, texts in MESSAGES.items():
        assert {"en", "zh"} <= set(texts), key
    assert message("finished", "ko", name="x", folder="data") == "Finished: x in data."
    assert message("finished", "zh", name="x", folder="data") == "完成：x，位于 data。"
