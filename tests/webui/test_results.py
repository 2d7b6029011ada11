"""What the STIC data tab shows of a run's output: summary, lengths plot, and the first records with their images."""

import json
import re

from PIL import Image

from stic_plugin.method.corruption import corruption_record
from stic_plugin.webui.results import corruption_parameters, lengths_plot, records_html, summary


def _write(folder, name, records, stats=None):
    data = folder / name
    data.mkdir(parents=True)
    (data / "part-00000-of-00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if stats is not None:
        (folder / f"{name}.stats.json").write_text(json.dumps(stats))


def _pair(image: str, negative: str, **meta) -> dict:
    return {
        "messages": [{"role": "user", "content": "<image>\nDescribe it."}],
        "chosen": {"role": "assistant", "content": "A red square <on> blue."},
        "rejected": {"role": "assistant", "content": "A dog."},
        "images": [image],
        "stic": {"image": image, "negative": negative, "bad_prompt": "", "corruption": "", **meta},
    }


def test_pref_shows_each_image_beside_its_pair_and_what_the_negative_came_from(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (300, 200), colour).save(images / name)
    data = tmp_path / "data"
    jitter = corruption_record({"brightness": 1.2, "hue": 0.1, "order": ["hue", "brightness"]})  # as pref writes
    records = [
        _pair("../images/a.png", "corruption", corruption="color_jitter", corruption_params=jitter),
        _pair("../images/b.png", "hallucination", bad_prompt="Imagine the hidden <objects>."),
        _pair(
            "../images/missing.png",
            "corruption",
            corruption="low_resolution",
            corruption_params='{"shorter_side": 20}',  # an older output's JSON string
        ),
    ]
    _write(data, "stic_pref", records, {"pairs": 3})
    page = records_html("pref", str(data), "stic_pref")
    assert page.count('<img class="stic-image"') == 3  # a.png and its corrupted copy, b.png; missing.png named
    assert "<i>../images/missing.png</i>" in page
    assert "from a corrupted image: color_jitter (brightness 1.2, hue 0.1, order hue then brightness)" in page
    assert "shorter_side" not in page.split("missing.png")[0]  # the neutral keys of the other corruption left out
    assert "from a corrupted image: low_resolution (shorter_side 20)" in page
    assert "from a hallucination prompt:</b> Imagine the hidden &lt;objects&gt;." in page
    assert "A red square &lt;on&gt; blue." in page  # texts escaped
    assert all(src.startswith("data:image/jpeg;base64,") for src in re.findall(r'src="([^"]+)"', page))
    assert "图片" in records_html("pref", str(data), "stic_pref", "zh") and "Image" in records_html(
        "pref", str(data), "stic_pref", "ru"
    )
    assert summary(str(data), "stic_pref") == {"pairs": 3}
    assert lengths_plot(str(data), "stic_pref") is None
    Image.new("RGB", (40, 30), "white").save(data / "stic_pref.lengths.png")
    assert lengths_plot(str(data), "stic_pref").size == (40, 30)


def test_infuse_shows_the_infused_first_turn_and_dar_the_predictions(tmp_path):
    Image.new("RGB", (64, 64), "green").save(tmp_path / "c.png")
    infused = {
        "messages": [
            {"role": "user", "content": "<image>\nImage description:\nGreen.\n\nWhat colour?"},
            {"role": "assistant", "content": "Green."},
        ],
        "images": ["c.png"],
    }
    _write(tmp_path, "stic_sft", [infused] * 5)
    page = records_html("infuse", str(tmp_path), "stic_sft")
    assert page.count("<tr>") == 1 + 4  # the header and the first four records
    assert "Image description:\nGreen.\n\nWhat colour?" in page and page.count("stic-image") == 4
    prediction = {"id": 0, "question": "<image>\nA or B?", "description": "d", "prediction": "A", "reference": None}
    _write(tmp_path, "dar", [prediction])
    page = records_html("dar", str(tmp_path), "dar")
    for header in ("Question", "Description", "Prediction", "Reference"):
        assert f">{header}</th>" in page
    assert "&lt;image&gt;\nA or B?" in page
    assert summary(str(tmp_path), "dar") is None
    assert "No record written." in records_html("dar", str(tmp_path), "nothing")


def test_the_recorded_corruption_parameters_are_those_the_corruption_takes():
    jitter = corruption_record({"brightness": 0.8, "hue": -0.2, "order": ["brightness", "hue"]})
    assert corruption_parameters("color_jitter", jitter) == {
        "brightness": 0.8,
        "hue": -0.2,
        "order": ["brightness", "hue"],
    }
    assert corruption_parameters("low_resolution", corruption_record({"shorter_side": 20})) == {"shorter_side": 20}
    assert corruption_parameters("low_resolution", "not JSON") == {}
