"""The key a description's prompt and sampling seed are drawn from."""

from stic_plugin.method.keys import image_key, path_from, picture_key


def test_an_image_below_its_folder_is_keyed_by_its_path_below_it(tmp_path):
    root = tmp_path / "data"
    assert image_key(str(root / "images" / "a.png"), str(root)) == "images/a.png"
    assert image_key(str(root / "a.png"), str(root) + "/") == "a.png"
    assert image_key(str(root / "sub" / ".." / "a.png"), str(tmp_path / "x" / ".." / "data")) == "a.png"


def test_a_relative_folder_and_path_are_read_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert image_key("data/images/a.png", "data") == "images/a.png"
    assert image_key(str(tmp_path / "data" / "a.png"), "data") == "a.png"


def test_an_image_elsewhere_or_without_a_folder_keeps_its_path(tmp_path):
    elsewhere = str(tmp_path / "other" / "a.png")
    assert image_key(elsewhere, str(tmp_path / "data")) == elsewhere
    assert image_key("https://example.org/a.png", str(tmp_path)) == "https://example.org/a.png"
    assert image_key(elsewhere, None) == elsewhere


def test_a_url_keeps_its_slashes_when_run_from_its_folder(tmp_path, monkeypatch):
    """Before: read as a path below the working folder, http://127.0.0.1/a.png became http:/127.0.0.1/a.png."""
    monkeypatch.chdir(tmp_path)
    assert image_key("http://127.0.0.1/a.png", str(tmp_path)) == "http://127.0.0.1/a.png"
    assert image_key("http://127.0.0.1/a.png", ".") == "http://127.0.0.1/a.png"


def test_an_image_without_a_path_is_named_by_its_pixels():
    from PIL import Image

    red, again, blue = (
        Image.new("RGB", (4, 4), "red"),
        Image.new("RGB", (4, 4), "red"),
        Image.new("RGB", (4, 4), "blue"),
    )
    assert picture_key(red) == picture_key(again) != picture_key(blue)
    assert picture_key(red) != picture_key(Image.new("RGB", (2, 8), "red"))  # same pixels, other shape


def test_a_record_stores_its_image_relative_to_the_dataset(tmp_path):
    assert path_from(tmp_path / "data", str(tmp_path / "images" / "a.png")) == "../images/a.png"
