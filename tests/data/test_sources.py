"""Named datasets read as LLaMA-Factory reads them: a file, a folder of parts, num_samples, errors."""

import json

import pytest

from stic_plugin.data.sources import load_named_dataset

SHAREGPT = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def _record(index: int, image: str | None = "a.png") -> dict:
    messages = [{"role": "user", "content": ("<image>" if image else "") + f"Q{index}"}]
    return {"messages": messages + [{"role": "assistant", "content": f"A{index}"}], "images": [image] if image else []}


def test_a_folder_of_parts_and_a_file_read_and_aligned(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not read")
    (tmp_path / "parts").mkdir()
    for part in range(2):
        lines = [json.dumps(_record(2 * part + i)) for i in range(2)]
        (tmp_path / "parts" / f"part-{part:05d}-of-00002.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "one.json").write_text(json.dumps([_record(7, image=None)]))
    info = {"parts": {"file_name": "parts", **SHAREGPT}, "one": {"file_name": "one.json", **SHAREGPT}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))

    samples = load_named_dataset("parts", str(tmp_path), None)
    assert [s.messages for s in samples] == [
        [{"role": "user", "content": f"<image>Q{i}"}, {"role": "assistant", "content": f"A{i}"}] for i in range(4)
    ]
    assert all(s.images == [str(tmp_path / "a.png")] for s in samples)  # against media_dir (= dataset_dir)
    (text_only,) = load_named_dataset("one", str(tmp_path), str(tmp_path / "elsewhere"))
    assert text_only.images == [] and text_only.messages[0] == {"role": "user", "content": "Q7"}


def test_num_samples_of_the_entry_is_the_same_draw_every_time(tmp_path):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(_record(i, image=None)) + "\n" for i in range(10)))
    entry = {"file_name": "data.jsonl", "num_samples": 4, **SHAREGPT}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"data": entry}))
    first = [s.messages[0]["content"] for s in load_named_dataset("data", str(tmp_path), None)]
    assert len(first) == 4 and len(set(first)) == 4
    assert [s.messages[0]["content"] for s in load_named_dataset("data", str(tmp_path), None)] == first


def test_preference_data_and_missing_files_are_errors(tmp_path):
    info = {"pairs": {"file_name": "pairs.json", "ranking": True}, "gone": {"file_name": "gone.json"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="preference data"):
        load_named_dataset("pairs", str(tmp_path), None)
    with pytest.raises(ValueError, match="gone.json not found"):
        load_named_dataset("gone", str(tmp_path), None)


@pytest.mark.parametrize(
    "entry,message",
    [
        (5, "the entry `it` is 5, not an object"),
        ({"script_url": "it"}, "names a loading script (script_url), which is not run"),
        ({"formatting": "sharegpt"}, "the entry `it` names no data"),
        ({"file_name": "it.json", "columns": "messages"}, "`columns` of the entry `it` is not an object"),
        ({"file_name": "it.json", "num_samples": float("nan")}, "`num_samples` of the entry `it` must be a whole"),
    ],
)
def test_an_entry_llamafactory_cannot_read_is_an_error_naming_the_file_and_the_entry(tmp_path, entry, message):
    """Before: TypeError, RuntimeError (datasets' "Dataset scripts are no longer supported"), KeyError, tracebacks."""
    (tmp_path / "it").mkdir()
    (tmp_path / "it" / "it.py").write_text("raise SystemExit('the script ran')")
    (tmp_path / "it.json").write_text(json.dumps([_record(0, image=None)]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"it": entry}))
    with pytest.raises(ValueError) as raised:
        load_named_dataset("it", str(tmp_path), None)
    assert str(raised.value).startswith(f"{tmp_path / 'dataset_info.json'}: ") and message in str(raised.value)


def test_a_llava_file_record_that_is_not_an_object_is_left_out_with_a_warning(tmp_path, caplog):
    """Before: AttributeError: 'str' object has no attribute 'get', with a traceback."""
    import logging

    from stic_plugin.data.sources import load_llava_file

    good = {"id": "g", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    (tmp_path / "mix.json").write_text(json.dumps(["just a string", 5, None, [good], good]))
    caplog.set_level(logging.WARNING, logger="stic_plugin")
    samples = load_llava_file(str(tmp_path / "mix.json"), None)
    assert [s.source_id for s in samples] == ["g"] and samples[0].index == 4
    assert "4 unreadable record(s) left out" in caplog.text
    assert "record 0: a record must be a JSON object, got str 'just a string'" in caplog.text
