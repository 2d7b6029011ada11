"""The key a description's prompt and sampling seed are drawn from."""

from stic_plugin.data.describe import stable_image_key


def test_an_image_below_its_folder_is_keyed_by_its_path_below_it(tmp_path):
    root = tmp_path / "data"
    assert stable_image_key(str(root / "images" / "a.png"), str(root)) == "images/a.png"
    assert stable_image_key(str(root / "a.png"), str(root) + "/") == "a.png"
    assert stable_image_key(str(root / "sub" / ".." / "a.png"), str(tmp_path / "x" / ".." / "data")) == "a.png"


def test_a_relative_folder_and_path_are_read_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert stable_image_key("data/images/a.png", "data") == "images/a.png"
    assert stable_image_key(str(tmp_path / "data" / "a.png"), "data") == "a.png"


def test_an_image_elsewhere_or_without_a_folder_keeps_its_path(tmp_path):
    elsewhere = str(tmp_path / "other" / "a.png")
    assert stable_image_key(elsewhere, str(tmp_path / "data")) == elsewhere
    assert stable_image_key("https://example.org/a.png", str(tmp_path)) == "https://example.org/a.png"
    assert stable_image_key(elsewhere, None) == elsewhere
