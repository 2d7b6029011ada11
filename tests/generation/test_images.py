"""Finding images, skipping bad files with a reason, converting odd modes."""

import json

import numpy as np
import pytest
from PIL import Image

from stic_plugin.generation import images
from stic_plugin.generation.images import BadImage, images_in_folder, images_in_list, load_image


def test_folder_is_searched_recursively_and_keys_are_relative(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "b" / "x.PNG")
    Image.new("RGB", (8, 8)).save(tmp_path / "y.jpg")
    (tmp_path / "notes.txt").write_text("not an image file name")
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert [item.key for item in images_in_folder(str(tmp_path))] == ["a/b/x.PNG", "y.jpg"]


def test_list_files_text_json_jsonl(tmp_path):
    (tmp_path / "list.txt").write_text("one.jpg\n\n# comment\nsub/two.png\none.jpg\n")
    assert [i.key for i in images_in_list(str(tmp_path / "list.txt"))] == ["one.jpg", "sub/two.png"]
    llava = [{"id": 1, "image": "coco/1.jpg", "conversations": []}, {"id": 2, "conversations": []}]
    (tmp_path / "llava.json").write_text(json.dumps(llava))
    items = images_in_list(str(tmp_path / "llava.json"), image_root=str(tmp_path / "root"))
    assert [(i.key, i.path) for i in items] == [("coco/1.jpg", str(tmp_path / "root" / "coco" / "1.jpg"))]
    (tmp_path / "rows.jsonl").write_text('{"img": "p.png"}\n{"img": ["q.png", "r.png"]}\n')
    assert [i.key for i in images_in_list(str(tmp_path / "rows.jsonl"), image_column="img")] == [
        "p.png",
        "q.png",
        "r.png",
    ]
    (tmp_path / "bad.jsonl").write_text('{"img": 5}\n')
    with pytest.raises(ValueError, match="row 0 has no image path in `img`"):
        images_in_list(str(tmp_path / "bad.jsonl"), image_column="img")


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return str(path)


def test_bad_files_raise_with_reasons(tmp_path):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    cases = {
        "empty.png": (b"", images.EMPTY),
        "text.jpg": (b"hello, I am not a picture", images.NOT_AN_IMAGE),
        "truncated.png": (data[: len(data) // 2], None),  # truncated or unreadable, depending on where it is cut
    }
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BadImage) as caught:
            load_image(str(tmp_path / name), max_image_pixels=10**8)
        assert caught.value.reason == (reason or caught.value.reason)
        assert caught.value.reason in (images.EMPTY, images.NOT_AN_IMAGE, images.TRUNCATED, images.UNREADABLE)
    with pytest.raises(BadImage) as caught:
        load_image(str(tmp_path / "full.png"), max_image_pixels=64 * 64 - 1)
    assert caught.value.reason == images.TOO_MANY_PIXELS
    with pytest.raises(BadImage) as caught:
        load_image(str(tmp_path / "missing.png"), max_image_pixels=10**8)
    assert caught.value.reason == images.MISSING


def test_odd_modes_become_rgb(tmp_path):
    gray16 = Image.fromarray(np.full((4, 6), 65535 // 2, dtype=np.uint16))
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white
    palette = Image.new("P", (4, 4))
    palette.putpalette([0, 0, 255] * 256)
    paths = {
        "gray.png": _save(tmp_path / "gray.png", Image.new("L", (4, 4), 100)),
        "gray16.png": _save(tmp_path / "gray16.png", gray16),
        "cmyk.jpg": _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (4, 4), (0, 255, 255, 0))),
        "rgba.png": _save(tmp_path / "rgba.png", rgba),
        "palette.png": _save(tmp_path / "palette.png", palette),
    }
    loaded = {name: load_image(path, 10**6) for name, path in paths.items()}
    assert all(image.mode == "RGB" for image in loaded.values())
    assert loaded["gray.png"].getpixel((0, 0)) == (100, 100, 100)
    assert loaded["gray16.png"].getpixel((0, 0)) == (127, 127, 127)  # round(32767 / 65535 * 255)
    assert loaded["rgba.png"].getpixel((0, 0)) == (255, 255, 255)
    assert loaded["palette.png"].getpixel((0, 0)) == (0, 0, 255)
    red, green, blue = loaded["cmyk.jpg"].getpixel((1, 1))
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), "blue")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(str(tmp_path / "rotated.jpg"), 10**6).size == (10, 30)
