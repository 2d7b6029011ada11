"""`stic-cli single-view DIR`: a LLaVA-1.6 copy that trains on one padded view (what it trains is checked with the
recipes' override in tests/test_recipes.py)."""

import json
from pathlib import Path


def test_the_copy_links_the_weights_keeps_every_tower_and_pads_one_view(stic, tiny, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source, out = Path(tiny["tiny-llava-next"]), tmp_path / "single-view"
    result = stic("single-view", str(out), f"model_name_or_path={source}")
    assert result.returncode == 0, result.stderr
    assert "one padded view of 16 image tokens" in result.stdout
    assert (out / "model.safetensors").resolve() == (source / "model.safetensors").resolve()
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["architectures"]) == ("llava", ["LlavaForConditionalGeneration"])
    assert "image_grid_pinpoints" not in config
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "LlavaProcessor" and processor.image_processor.do_pad is True
    copy = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    original = AutoModelForImageTextToText.from_pretrained(source).state_dict()
    assert set(original) - set(copy) == {"model.image_newline"}  # LLaVA-1.6's separator of the rows of tiles
    assert all(torch.equal(copy[key], original[key]) for key in copy)


def test_a_folder_in_use_and_a_model_that_is_not_llava_1_6_are_one_line_each(stic, tiny, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    taken = stic("single-view", str(out), f"model_name_or_path={tiny['tiny-llava-next']}")
    assert taken.returncode == 2 and "is not empty" in taken.stderr and "overwrite=true" in taken.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    again = stic("single-view", str(out), f"model_name_or_path={tiny['tiny-llava-next']}", "overwrite=true")
    assert again.returncode == 0 and (out / "notes.txt").read_text() == "mine"
    wrong = stic("single-view", str(tmp_path / "other"), f"model_name_or_path={tiny['tiny-llava']}")
    assert wrong.returncode == 2 and "is a llava model: single-view copies a LLaVA-1.6" in wrong.stderr
    assert not (tmp_path / "other").exists()
    absent = stic("single-view", str(tmp_path / "other"), "model_name_or_path=nobody/no-such-model")
    assert absent.returncode == 2 and "cannot load the model 'nobody/no-such-model'" in absent.stderr
    assert "Traceback" not in absent.stderr
