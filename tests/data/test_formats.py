"""The `llava` and `stic` dataset formatters: exact records out, clear errors for malformed ones."""

import json

import pytest


@pytest.fixture()
def media(tmp_path):
    for name in ("a.jpg", "b.jpg", "COCO_1.jpg"):
        (tmp_path / name).write_bytes(b"not read by the converter")
    return tmp_path


def _converter(formatting: str, media, ranking: bool = False, info: dict | None = None):
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    attr = DatasetAttr("file", dataset_name="test.json")
    attr.join({"formatting": formatting, "ranking": ranking, **(info or {})})
    return get_dataset_converter(formatting, attr, DataArguments(dataset_dir=str(media), media_dir=str(media)))


def test_llava_multiturn_with_image(media):
    record = {
        "id": "000000033471",
        "image": "a.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat are the colors of the bus?"},
            {"from": "gpt", "value": "White and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "An advertisement."},
        ],
    }
    assert _converter("llava", media)(record) == {
        "_prompt": [
            {"role": "user", "content": "<image>\nWhat are the colors of the bus?"},
            {"role": "assistant", "content": "White and red."},
            {"role": "user", "content": "What feature can be seen on the back of the bus?"},
        ],
        "_response": [{"role": "assistant", "content": "An advertisement."}],
        "_system": "",
        "_tools": "",
        "_images": [str(media / "a.jpg")],
        "_videos": None,
        "_audios": None,
    }


def test_llava_placeholders_go_first_as_llava_trains(media):
    """mix665k's first record: the placeholder after the question; LLaVA's preprocess_multimodal moves it."""
    from stic_plugin.data.formats import convert_llava

    record = {
        "id": "000000033471",
        "image": "a.jpg",
        "conversations": [
            {"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
        ],
    }
    converter = _converter("llava", media)
    assert converter(record)["_prompt"] == [
        {"role": "user", "content": "<image>\nWhat are the colors of the bus in the image?"}
    ]
    kept = convert_llava(converter, record, "keep")["_prompt"]
    assert kept == [{"role": "user", "content": "What are the colors of the bus in the image?\n<image>"}]
    two = {
        "id": "two",
        "image": ["a.jpg", "b.jpg"],
        "conversations": [{"from": "human", "value": "Is <image> like <image>?"}, {"from": "gpt", "value": "No."}],
    }
    out = converter(two)
    assert out["_prompt"] == [{"role": "user", "content": "<image><image>\nIs  like ?"}]
    assert out["_images"] == [str(media / "a.jpg"), str(media / "b.jpg")]  # the images keep their order


def test_llava_text_only_and_missing_placeholder(media):
    text_only = {
        "id": "t1",
        "image": None,
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
    }
    out = _converter("llava", media)(text_only)
    assert out["_prompt"] == [{"role": "user", "content": "Hi"}] and out["_images"] is None
    assert out["_response"] == [{"role": "assistant", "content": "Hello"}]

    no_placeholder = {
        "id": "t2",
        "image": "b.jpg",
        "conversations": [{"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "A bus."}],
    }
    out = _converter("llava", media)(no_placeholder)
    assert out["_prompt"] == [{"role": "user", "content": "<image>\nDescribe it."}]
    assert out["_images"] == [str(media / "b.jpg")]


def test_llava_system_turn(media):
    record = {
        "id": "s",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
        ],
    }
    out = _converter("llava", media)(record)
    assert out["_system"] == "Be brief." and out["_prompt"] == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "record,message",
    [
        ({"id": "x1", "conversations": []}, "record id='x1': `conversations` must be a non-empty list"),
        ({"id": "x2"}, "record id='x2': `conversations` must be a non-empty list"),
        (
            {"id": "x3", "conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "?"}]},
            "record id='x3': turn 0 must be a `from: human` turn",
        ),
        (
            {"id": "x4", "conversations": [{"from": "human", "value": "Hi"}]},
            "record id='x4': the last turn must be the assistant's",
        ),
        (
            {
                "id": "x5",
                "image": "a.jpg",
                "conversations": [{"from": "human", "value": "<image><image> two?"}, {"from": "gpt", "value": "no"}],
            },
            r"record id='x5': 1 image\(s\) but 2 <image> placeholder\(s\)",
        ),
        (
            {"id": "x6", "conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "no"}]},
            "record id='x6': turn 0 has no text",
        ),
        (
            {"id": "x7", "image": 5, "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
            "record id='x7': `image` must be a path or a list of paths",
        ),
    ],
)
def test_llava_malformed_records_raise_with_the_record_named(media, record, message):
    from stic_plugin.data.formats import MalformedRecordError

    with pytest.raises(MalformedRecordError, match=message):
        _converter("llava", media)(record)


def test_llava_rejects_ranking_dataset(media):
    with pytest.raises(ValueError, match="remove `ranking: true`"):
        _converter("llava", media, ranking=True)({"id": "1", "conversations": []})


AUTHORS_PREF = {
    "image": "COCO_1.jpg",
    "image_corruption": False,
    "hallu_prompt": "Describe the image with imaginative objects that may exist in the scene.",
    "chosen": [
        {"role": "user", "content": "Illustrate the details of the picture."},
        {"role": "assistant", "content": "A kitchen with a white stove."},
    ],
    "rejected": [
        {"role": "user", "content": "Illustrate the details of the picture."},
        {"role": "assistant", "content": "A kitchen with a cat on the stove."},
    ],
}


def test_stic_preference_record_gets_its_placeholder(media):
    assert _converter("stic", media, ranking=True)(AUTHORS_PREF) == {
        "_prompt": [{"role": "user", "content": "<image>\nIllustrate the details of the picture."}],
        "_response": [
            {"role": "assistant", "content": "A kitchen with a white stove."},
            {"role": "assistant", "content": "A kitchen with a cat on the stove."},
        ],
        "_system": "",
        "_tools": "",
        "_images": [str(media / "COCO_1.jpg")],
        "_videos": None,
        "_audios": None,
    }


def test_stic_description_record(media):
    record = {
        "image": str(media / "a.jpg"),
        "prompt": "Explain what is depicted in the photograph.",
        "description": "A bus on a street.",
    }
    out = _converter("stic", media)(record)
    assert out["_prompt"] == [{"role": "user", "content": "<image>\nExplain what is depicted in the photograph."}]
    assert out["_response"] == [{"role": "assistant", "content": "A bus on a street."}]
    assert out["_images"] == [str(media / "a.jpg")]


@pytest.mark.parametrize(
    "change,ranking,message",
    [
        (
            dict(rejected=[{"role": "user", "content": "Other prompt"}, {"role": "assistant", "content": "x"}]),
            True,
            "`chosen` and `rejected` have different prompts",
        ),
        (dict(chosen=[{"role": "assistant", "content": "x"}]), True, r"`chosen` must be \[\{role: user"),
        (dict(rejected=None), True, r"`rejected` must be \[\{role: user"),
        ({}, False, 'holds preference pairs .* add `"ranking": true`'),
    ],
)
def test_stic_malformed_preference_records(media, change, ranking, message):
    with pytest.raises(ValueError, match=message):
        _converter("stic", media, ranking=ranking)({**AUTHORS_PREF, **change})


def test_stic_record_of_neither_shape(media):
    with pytest.raises(ValueError, match="a `stic` record has `chosen` and `rejected`, or `prompt` and `description`"):
        _converter("stic", media)({"image": "a.jpg", "caption": "x"})
    with pytest.raises(ValueError, match="holds descriptions .* remove `ranking: true`"):
        _converter("stic", media, ranking=True)({"image": "a.jpg", "prompt": "p", "description": "d"})


def test_llava_file_loads_through_llamafactory_pipeline(tiny, tmp_path):
    """A LLaVA JSON file with a text-only sample, read by LLaMA-Factory's get_dataset for SFT."""
    from pathlib import Path

    from helpers import llamafactory_dataset

    image = sorted(Path(tiny["images"]).glob("*.png"))[0]
    records = [
        {
            "id": "1",
            "image": str(image),
            "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A shape."}],
        },
        {"id": "2", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    ]
    (tmp_path / "llava_mix.json").write_text(json.dumps(records))
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({"mix": {"file_name": "llava_mix.json", "formatting": "llava"}})
    )
    module, tokenizer_module = llamafactory_dataset(tiny["tiny-llava"], "llava", "mix", tmp_path, tmp_path / "out")
    train = module["train_dataset"]
    assert len(train) == 2
    decoded = [tokenizer_module["tokenizer"].decode(row["input_ids"]) for row in train]
    assert decoded[0].count("<image>") == 16  # the tiny LLaVA's image tokens, expanded by the mm plugin
    assert "Hello" in decoded[1] and "<image>" not in decoded[1]
