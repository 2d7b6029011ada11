"""What a request carries of an image where Ray's workers read the files (``ImageFile``): the pixels the command
reads for the other engines, from the file or from bytes shipped with the request."""

import os
import pickle

import numpy as np
from PIL import Image

from stic_plugin.data.images import EMPTY, MISSING, BadImage
from stic_plugin.generation.base import UnreadableImage
from stic_plugin.pipeline.image_inputs import ImageFile, corrupted, named_image, read_image


def test_a_named_image_read_from_its_file_or_its_shipped_bytes_has_the_command_s_pixels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 4), dtype=np.uint8)).save("rgba.png")
    params = {"order": ["hue", "brightness"], "brightness": 1.6, "hue": 0.1}
    expected = read_image("rgba.png", 10**8)
    named, shipped = named_image("rgba.png", 10**8, ship=False), named_image("rgba.png", 10**8, ship=True)
    assert named.file == os.path.join(str(tmp_path), "rgba.png")  # Ray's workers start in another folder
    assert shipped.file is None and shipped.data == (tmp_path / "rgba.png").read_bytes()
    for image in (named, shipped):
        sent = pickle.loads(pickle.dumps(image))
        assert np.array_equal(np.asarray(sent.read()), np.asarray(expected)) and sent.read().mode == expected.mode
        jittered = ImageFile(image.path, 10**8, "color_jitter", params, image.data)
        assert np.array_equal(np.asarray(jittered.read()), np.asarray(corrupted(expected, "color_jitter", params)))


def test_a_named_image_that_cannot_be_read_says_why(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    try:
        ImageFile(str(tmp_path / "empty.png"), 10**8).read()
    except UnreadableImage as unreadable:
        assert unreadable.reason == EMPTY
    else:
        raise AssertionError("an empty file was read")
    missing = named_image(str(tmp_path / "gone.png"), 10**8, ship=True)  # the bytes are read here, and are not
    assert isinstance(missing, BadImage) and missing.reason == MISSING
