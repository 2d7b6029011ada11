"""Finding images, skipping bad files with a reason, converting odd modes."""

import json

import numpy as np
import pytest
from PIL import Image

from stic_plugin.data import images
from stic_plugin.data.images import BadImage, images_in_folder, images_in_list, load_image


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


def test_the_authors_list_of_coco_names_is_read_with_image_root(tmp_path, caplog):
    """The shape of the authors' data/6k_coco_names.json: a JSON list of file names, some of them twice, which
    start from the COCO train2014 folder (image_root)."""
    names = ["COCO_train2014_000000509746.jpg", "COCO_train2014_000000440372.jpg", "COCO_train2014_000000223283.jpg"]
    (tmp_path / "6k_coco_names.json").write_text(json.dumps(names + ["COCO_train2014_000000223283.jpg"]))
    coco = tmp_path / "coco" / "train2014"
    with caplog.at_level("INFO", logger="stic_plugin"):
        items = images_in_list(str(tmp_path / "6k_coco_names.json"), image_root=str(coco))
    assert [(i.key, i.path) for i in items] == [(name, str(coco / name)) for name in sorted(names)]
    assert "4 entries name 3 images, each described once" in caplog.text


def test_a_list_that_cannot_be_read_names_its_file_and_line_and_a_url_is_skipped_as_given(tmp_path):
    """Before: "Expecting value: line 1 column 1 (char 0)" with no file, a bare codec error, and URLs keyed as
    local paths (http:/host/...)."""
    (tmp_path / "rows.jsonl").write_text('{"image": "a.png"}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"rows.jsonl, line 3: not valid JSON \(Expecting value"):
        images_in_list(str(tmp_path / "rows.jsonl"))
    (tmp_path / "rows.json").write_text("[")
    with pytest.raises(ValueError, match=r"rows.json is not valid JSON: Expecting value"):
        images_in_list(str(tmp_path / "rows.json"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9.png\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 3: invalid continuation byte\)"):
        images_in_list(str(tmp_path / "latin1.txt"))
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:8000/a.png\nb.png\n")
    items = images_in_list(str(tmp_path / "urls.txt"))
    assert [(i.key, i.path, i.unusable) for i in items] == [
        ("b.png", str(tmp_path / "b.png"), ""),
        ("http://127.0.0.1:8000/a.png", "http://127.0.0.1:8000/a.png", images.A_URL),
    ]


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
            load_image(str(tmp_path / name), max_file_pixels=10**8)
        assert caught.value.reason == (reason or caught.value.reason)
        assert caught.value.reason in (images.EMPTY, images.NOT_AN_IMAGE, images.TRUNCATED, images.UNREADABLE)
    with pytest.raises(BadImage) as caught:
        load_image(str(tmp_path / "full.png"), max_file_pixels=64 * 64 - 1)
    assert caught.value.reason == images.TOO_MANY_PIXELS
    with pytest.raises(BadImage) as caught:
        load_image(str(tmp_path / "missing.png"), max_file_pixels=10**8)
    assert caught.value.reason == images.MISSING


def test_an_image_too_elongated_for_the_processor_is_skipped_before_it_is_decoded(tmp_path, monkeypatch):
    """A 4000x1 PNG of 94 bytes took 7.6 GB in CLIP's processor (its shorter side scaled to 336 px)."""
    from PIL import Image, ImageFile

    for size in [(200, 1), (1, 200), (400, 2)]:
        Image.new("RGB", size, "red").save(tmp_path / "fine.png")
        assert load_image(str(tmp_path / "fine.png"), max_file_pixels=10**8).size == size
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    for size in [(4000, 1), (1, 201), (401, 2)]:
        Image.new("RGB", size, "red").save(tmp_path / "stripe.png")
        with pytest.raises(BadImage) as caught:
            load_image(str(tmp_path / "stripe.png"), max_file_pixels=10**8)
        assert caught.value.reason == images.TOO_ELONGATED
        assert caught.value.detail == f"{size[0]}x{size[1]}: one side over 200 times the other"


def _training_images(paths, image_max_pixels=10**6):
    """The images LLaMA-Factory's training reads from these files (its mm plugin's own reading)."""
    from llamafactory.data.mm_plugin import get_mm_plugin

    plugin = get_mm_plugin("llava", image_token="<image>")
    return plugin._regularize_images(paths, image_max_pixels=image_max_pixels, image_min_pixels=1)["images"]


def _generator_images(paths, image_max_pixels=10**6):
    """The same, from the images the generator hands the plugin."""
    from llamafactory.data.mm_plugin import get_mm_plugin

    plugin = get_mm_plugin("llava", image_token="<image>")
    loaded = [load_image(path, 10**8) for path in paths]
    return plugin._regularize_images(loaded, image_max_pixels=image_max_pixels, image_min_pixels=1)["images"]


def test_odd_modes_give_the_pixels_training_reads(tmp_path):
    gray16 = Image.fromarray(np.full((4, 6), 65535 // 2, dtype=np.uint16))
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    palette = Image.new("P", (40, 30))
    palette.putpalette([0, 0, 255] * 128 + [255, 0, 0] * 128)
    palette.paste(200, (0, 0, 20, 30))
    paths = {
        "gray.png": _save(tmp_path / "gray.png", Image.new("L", (4, 4), 100)),
        "gray16.png": _save(tmp_path / "gray16.png", gray16),
        "cmyk.jpg": _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (50, 40), (0, 255, 255, 0))),
        "rgba.png": _save(tmp_path / "rgba.png", rgba),
        "palette.png": _save(tmp_path / "palette.png", palette),
    }
    for max_pixels in (10**6, 600):  # as they are, and scaled down (palette: nearest, as in training)
        trained = _training_images(list(paths.values()), max_pixels)
        generated = _generator_images(list(paths.values()), max_pixels)
        for name, a, b in zip(paths, trained, generated):
            assert a.mode == b.mode == "RGB", name
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
    assert images.lossy_training_conversion(load_image(paths["gray16.png"], 10**6)).startswith("I;16 pixels")
    assert "transparency" in images.lossy_training_conversion(load_image(paths["rgba.png"], 10**6))
    assert images.lossy_training_conversion(load_image(paths["gray.png"], 10**6)) is None
    assert images.as_training_rgb(load_image(paths["palette.png"], 10**6)).getpixel((0, 0)) == (255, 0, 0)


def _exif_rotated(path):
    """A 30x10 photo whose EXIF says: rotate 90 degrees to display (orientation 6)."""
    image = Image.new("RGB", (30, 10), "blue")
    image.paste((255, 255, 0), (0, 0, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    return str(path)


def test_exif_orientation_is_left_as_training_leaves_it(tmp_path):
    path = _exif_rotated(tmp_path / "rotated.jpg")
    assert load_image(path, 10**6).size == (30, 10)
    (trained,), (generated,) = _training_images([path]), _generator_images([path])
    assert np.array_equal(np.asarray(trained), np.asarray(generated))


def test_generator_tensor_equals_the_training_loaders_for_an_exif_rotated_photo(tiny, tmp_path):
    """The tensor the generator feeds the model and the one LLaMA-Factory's SFT collator builds for training."""
    import torch
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from stic_plugin.generation.base import Request, user_turn

    from helpers import llamafactory_dataset

    path = _exif_rotated(tmp_path / "rotated.jpg")
    data = tmp_path / "data"
    data.mkdir()
    record = {
        "messages": [{"role": "user", "content": "<image>\nDescribe."}, {"role": "assistant", "content": "Blue."}],
        "images": [path],
    }
    (data / "one.json").write_text(json.dumps([record]))
    (data / "dataset_info.json").write_text(
        json.dumps(
            {
                "one": {
                    "file_name": "one.json",
                    "formatting": "sharegpt",
                    "columns": {"messages": "messages", "images": "images"},
                    "tags": {
                        "role_tag": "role",
                        "content_tag": "content",
                        "user_tag": "user",
                        "assistant_tag": "assistant",
                    },
                }
            }
        )
    )
    train, tokenizer_module = llamafactory_dataset(tiny["tiny-llava"], "llava", "one", data, tmp_path / "out")
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], DataArguments(template="llava"))
    collator = SFTDataCollatorWith4DAttentionMask(template=template, model=None, **tokenizer_module)
    trained = collator([train["train_dataset"][0]])["pixel_values"]

    from stic_plugin.generation.base import GeneratorSettings
    from stic_plugin.generation.transformers_engine import TransformersModel

    generator = TransformersModel.load(GeneratorSettings(tiny["tiny-llava"], "llava", infer_dtype="float32"))
    request = Request.single(user_turn("Describe."), load_image(path, 10**8))
    ids = [generator.encode(request)]
    generated = generator.mm_inputs([request], ids, torch.tensor(ids))["pixel_values"]
    assert trained.shape == generated.shape
    assert torch.equal(trained.float(), generated.float())


def test_a_link_loop_and_links_to_listed_images_count_each_image_once(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "b.png")
    (tmp_path / "loop").symlink_to(".")  # loop -> .: 82 images from 2, keys loop/loop/..., before
    (tmp_path / "sub" / "up").symlink_to("..")
    (tmp_path / "alias").symlink_to("sub")  # the same folder by another name: the real one wins
    (tmp_path / "copy.png").symlink_to("sub/b.png")  # a link to an image already listed
    (tmp_path / "gone.png").symlink_to("nowhere.png")  # a broken link stays, to be skipped as a missing file
    scan = images.scan_folder(str(tmp_path))
    assert [item.key for item in scan.items] == ["a.png", "gone.png", "sub/b.png"]
    assert sorted(scan.folder_links) == ["alias", "loop", "sub/up"]
    assert scan.file_links == [("copy.png", "sub/b.png")]


def test_a_file_under_several_names_in_a_list_counts_once_as_in_a_folder(tmp_path):
    """Before: good.png, sub/../good.png, a link to it and a path through a linked folder gave 4 pairs of it."""
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "other.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.png").symlink_to("good.png")
    (tmp_path / "self").symlink_to(".")
    names = ["self/good.png", "alias.png", "sub/../good.png", "good.png", "other.png", "missing.png", "missing.png"]
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    scan = images.scan_list(str(tmp_path / "list.txt"))
    assert [item.key for item in scan.items] == ["good.png", "missing.png", "other.png"]
    assert sorted(scan.file_links) == [("alias.png", "good.png"), ("self/good.png", "good.png")]
    assert [item.key for item in images_in_list(str(tmp_path / "list.txt"))] == [item.key for item in scan.items]


def test_a_linked_folder_outside_the_tree_is_listed_once(tmp_path):
    outside, root = tmp_path / "outside", tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "c.png")
    (outside / "back").symlink_to(outside)
    (root / "x").symlink_to(outside)
    (root / "y").symlink_to(outside)
    scan = images.scan_folder(str(root))
    assert [item.key for item in scan.items] == ["x/c.png"]
    assert sorted(scan.folder_links) == ["x/back", "y"]


def test_a_name_that_is_not_utf8_becomes_an_item_to_skip_named_with_its_bytes(tmp_path):
    import os

    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.png")
    Image.new("RGB", (8, 8)).save(bad.decode("utf-8", "surrogateescape"))
    items = images.scan_folder(str(tmp_path)).items
    assert [(item.key, item.unusable) for item in items] == [
        ("caf\\xe9 \\xff.png", images.BAD_NAME),
        ("good.png", ""),
    ]
    assert items[0].key.encode("utf-8") and items[0].path.encode("utf-8")  # writable as text
