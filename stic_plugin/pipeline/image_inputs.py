"""What a request carries of an image: its pixels, read here on the read-ahead thread, or, where the engines read
the image files themselves (``executor: ray``), the ``ImageFile`` that names it, read where the engine runs with
the same functions: the same pixels either way."""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.images import (
    MISSING,
    UNREADABLE,
    BadImage,
    as_training_rgb,
    load_image,
    lossy_training_conversion,
    missing_file,
)
from ..generation.base import GeneratorSettings, ImageSource, UnreadableImage, reads_image_files
from ..method.corruption import apply_corruption

logger = logging.getLogger("stic_plugin")


def read_image(path: str, max_file_pixels: int, root: str | None = None, data: bytes | None = None):
    """The image as training reads it (``load_image``), with a warning for what training's conversion loses;
    raises BadImage."""
    image = load_image(path, max_file_pixels, root, data)
    loss = lossy_training_conversion(image)
    if loss:
        logger.warning("%s: %s", path, loss)
    return image


def corrupted(image, corruption: str, params: dict):
    """The corrupted copy of an image read by ``read_image`` (the corruptions work on RGB, as training sees it)."""
    return apply_corruption(as_training_rgb(image), corruption, params)


@dataclass(frozen=True, eq=False)
class ImageFile(ImageSource):
    """An image file named, with the corruption drawn for it (none: the clean image), read where the engine runs;
    ``data``: the file's bytes, read by the command for engines that cannot reach the file (``ship_images``)."""

    path: str
    max_file_pixels: int
    corruption: str | None = None
    corruption_params: dict = field(default_factory=dict)
    data: bytes | None = None
    root: str | None = None  # where the input's relative image paths start (named when the image is missing)

    @property
    def file(self) -> str | None:
        return None if self.data is not None else self.path

    def read(self):
        try:
            image = read_image(self.path, self.max_file_pixels, self.root, self.data)
        except BadImage as bad:
            raise UnreadableImage(bad.reason, bad.detail) from None
        return corrupted(image, self.corruption, self.corruption_params) if self.corruption else image


def names_images(cfg) -> bool:
    """Whether the requests of a command's configuration name their images (``ImageFile``) instead of holding them."""
    return reads_image_files(GeneratorSettings.of(cfg))


def named_image(path: str, max_file_pixels: int, ship: bool, root: str | None = None) -> ImageFile | BadImage:
    """The ``ImageFile`` of a path; with ``ship``, holding the file's bytes (read here, not decoded), or the
    BadImage that says why they cannot be read."""
    if not ship:  # read by Ray's workers, which do not start in this process's folder
        return ImageFile(os.path.abspath(path), max_file_pixels, root=root)
    try:
        return ImageFile(path, max_file_pixels, data=Path(path).read_bytes(), root=root)
    except FileNotFoundError:
        return BadImage(MISSING, missing_file(path, root))
    except OSError as err:
        return BadImage(UNREADABLE, str(err))
