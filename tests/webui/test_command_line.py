"""The STIC data tab's command line: built from its form and the command's configuration class, checked by it."""

import dataclasses
import tempfile

import pytest

from stic_plugin.commands import config
from stic_plugin.commands.config import DarConfig, InfuseConfig, PrefConfig
from stic_plugin.webui import command_line
from stic_plugin.webui.command_line import advanced_keys, check, field_overrides, overrides, parse_advanced, preview

MODEL = {"model_name_or_path": "/models/llava", "template": "llava", "adapter_name_or_path": None}

IMAGES = tempfile.mkdtemp(prefix="stic-webui-images-")  # a folder that exists: the command checks it


def test_images_are_a_folder_or_a_list_file(tmp_path):
    listing = tmp_path / "images.txt"
    listing.write_text("a.png\n")
    assert field_overrides("pref", {"images": str(tmp_path)}) == [("image_dir", str(tmp_path))]
    assert field_overrides("pref", {"images": f"  {listing} "}) == [("image_list", str(listing))]


def test_the_input_of_infuse_and_dar_is_a_dataset_name_or_a_llava_file(tmp_path):
    fields = {"source": "my_instructions", "image_folder": "/images"}
    assert field_overrides("infuse", fields)[:2] == [("dataset", "my_instructions"), ("media_dir", "/images")]
    fields = {"source": "/data/llava.json", "image_folder": "/images"}
    assert field_overrides("dar", fields)[:2] == [("llava_file", "/data/llava.json"), ("image_folder", "/images")]


def test_an_empty_field_is_the_default_or_null(tmp_path):
    # pref's max_samples is unset by default: left out; infuse's num_samples is 5000: null (all of them)
    assert ("max_samples", None) not in field_overrides("pref", {"max_samples": ""})
    assert ("num_samples", None) in field_overrides("infuse", {"num_samples": " "})
    source = tmp_path / "llava.json"  # a file that is there: the command checks its input
    source.write_text("[]")
    args = overrides("infuse", MODEL, {"source": str(source), "num_samples": ""}, "")
    assert "num_samples=null" in args and check("infuse", args).num_samples is None
    with pytest.raises(ValueError, match="`batch_size` must be a whole number"):
        check("pref", overrides("pref", MODEL, {"images": IMAGES, "batch_size": None}, ""))


def test_the_command_line_is_model_then_fields_then_advanced_which_wins():
    fields = {"images": IMAGES, "dataset_dir": "data", "batch_size": 4, "temperature": 0.2, "engine": "plain"}
    args = overrides("pref", MODEL, fields, "# a comment\n\nseed=7\n batch_size = 2\n")
    assert args == [
        "model_name_or_path=/models/llava",
        "template=llava",
        f"image_dir={IMAGES}",
        "dataset_dir=data",
        "temperature=0.2",
        "engine=plain",
        "seed=7",
        "batch_size=2",
    ]
    config = check("pref", args)
    assert isinstance(config, PrefConfig) and (config.seed, config.batch_size, config.engine) == (7, 2, "plain")
    assert command_line.output_location(config) == ("data", "stic_pref")


def test_what_stic_cli_refuses_is_refused_with_its_own_message():
    with pytest.raises(ValueError, match=r"Unknown key `sed`\. Did you mean `seed`\?"):
        check("pref", overrides("pref", MODEL, {"images": IMAGES}, "sed=1"))
    with pytest.raises(ValueError, match="Set exactly one of `image_dir` and `image_list`"):
        check("pref", overrides("pref", MODEL, {}, ""))
    with pytest.raises(ValueError, match="Missing required key.*`template`"):
        check("dar", overrides("dar", {"model_name_or_path": "/m"}, {"source": "q"}, ""))
    with pytest.raises(ValueError, match="Advanced, line 2: expected key=value, got 'seed'"):
        parse_advanced("temperature=0\nseed")


def test_the_advanced_keys_are_every_other_key_of_the_command():
    for action, cls in (("pref", PrefConfig), ("infuse", InfuseConfig), ("dar", DarConfig)):
        keys = advanced_keys(action)
        every = [f.name for f in dataclasses.fields(cls)]
        assert set(keys) < set(every) and "seed" in keys and "top_p" in keys
        assert not {"model_name_or_path", "template", "batch_size", "engine", "dataset_dir"} & set(keys)
    assert {"image_dir", "image_list", "max_samples"}.isdisjoint(advanced_keys("pref"))
    assert "image_column" in advanced_keys("pref") and "source_dataset_dir" in advanced_keys("infuse")


def test_a_new_key_of_a_command_appears_by_itself(monkeypatch):
    @dataclasses.dataclass
    class Extended(PrefConfig):
        verbose: bool = dataclasses.field(default=False, metadata={"help": "More output."})

    monkeypatch.setattr(config, "PrefConfig", Extended)
    assert "verbose" in advanced_keys("pref") and command_line.help_of("pref", "verbose") == "More output."
    assert check("pref", ["model_name_or_path=m", "template=t", f"image_dir={IMAGES}", "verbose=true"]).verbose is True


def test_the_preview_is_the_command_a_shell_runs():
    text = preview("stic-cli", "pref", ["image_dir=/my images", "template=llava"])
    assert text == "stic-cli pref \\\n    'image_dir=/my images' \\\n    template=llava"


def test_form_kinds_follow_the_annotations():
    assert command_line.kind_of("pref", "batch_size") == "int"
    assert command_line.kind_of("pref", "temperature") == "float"
    assert command_line.kind_of("pref", "engine") == "choice"
    assert command_line.kind_of("pref", "max_samples") == "text"  # may be left empty
    assert command_line.kind_of("dar", "metric") == "choice"
    assert command_line.choices_of("dar", "metric") == ("none", "choice", "exact", "contains")
    assert command_line.format_value(1.0) == "1" and command_line.format_value(True) == "true"
