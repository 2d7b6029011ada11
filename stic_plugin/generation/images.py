"""Finding and reading images: every bad file becomes a reason to skip, never a crash; the pixels are the
ones training reads.

An image is known by its *key*, its path relative to the image root in POSIX form; random choices
and resume bookkeeping use the key, so moving the whole folder changes nothing.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"}

# Skip reasons, as counted in the summary.
EMPTY, NOT_AN_IMAGE, UNREADABLE, TRUNCATED, TOO_MANY_PIXELS, MISSING = (
    "empty file",
    "not an image",
    "unreadable",
    "truncated",
    "too many pixels",
    "missing file",
)


class BadImage(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageItem:
    key: str  # relative to the image root, POSIX separators
    path: str  # absolute


def _key(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def images_in_folder(image_dir: str) -> list[ImageItem]:
    root = Path(image_dir).absolute()
    if not root.is_dir():
        raise ValueError(f"image_dir {image_dir} is not a folder")
    items = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                path = Path(folder, name)
                items.append(ImageItem(_key(path, root), str(path)))
    return sorted(items, key=lambda item: item.key)


def _paths_in_list_file(image_list: Path, image_column: str) -> list[str]:
    text = image_list.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is not a path
    suffix = image_list.suffix.lower()
    if suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{image_list}: a JSON image list is a list of paths or of records")
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    paths = []
    for index, row in enumerate(rows):
        value = row.get(image_column) if isinstance(row, dict) else row
        if isinstance(value, list):  # one record, several images
            paths.extend(str(v) for v in value if v)
        elif isinstance(value, str) and value:
            paths.append(value)
        elif isinstance(row, dict) and value is None:
            continue  # a text-only record
        else:
            raise ValueError(f"{image_list}: row {index} has no image path in `{image_column}`")
    return paths


def images_in_list(image_list: str, image_root: str | None = None, image_column: str = "image") -> list[ImageItem]:
    """Paths from a text file (one per line), or a JSON/JSONL file with an image column."""
    list_path = Path(image_list).absolute()
    if not list_path.is_file():
        raise ValueError(f"image_list {image_list} is not a file")
    root = Path(image_root).absolute() if image_root else list_path.parent
    items = {}
    for value in _paths_in_list_file(list_path, image_column):
        path = Path(value) if os.path.isabs(value) else root / value
        item = ImageItem(_key(path, root), str(path))
        items.setdefault(item.key, item)  # an image listed twice is described once
    return sorted(items.values(), key=lambda item: item.key)


def load_image(path: str, max_image_pixels: int):
    """A PIL image with the pixels LLaMA-Factory's training loader reads from the same file.

    Training opens the file with ``Image.open`` and its multimodal plugin scales it to ``image_max_pixels``
    and converts it to RGB; the generator hands the model's plugin this image, unconverted, so that the
    description is of exactly the pixels trained on. EXIF orientation is therefore not applied (training
    does not apply it, nor did the authors' LLaVA code), and odd modes are converted as training converts
    them. Raises BadImage with the reason."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise BadImage(MISSING, path)
    if os.path.getsize(path) == 0:
        raise BadImage(EMPTY, path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise BadImage(EMPTY, f"{width}x{height} pixels")
            if width * height > max_image_pixels:  # checked on the header, before decoding anything
                raise BadImage(TOO_MANY_PIXELS, f"{width}x{height} > max_image_pixels={max_image_pixels}")
            image.load()
            return image
    except BadImage:
        raise
    except UnidentifiedImageError as err:
        raise BadImage(NOT_AN_IMAGE, str(err)) from err
    except Image.DecompressionBombError as err:
        raise BadImage(TOO_MANY_PIXELS, str(err)) from err
    except OSError as err:
        reason = TRUNCATED if "truncated" in str(err).lower() else UNREADABLE
        raise BadImage(reason, str(err)) from err
    except (ValueError, SyntaxError, EOFError) as err:  # PIL raises these for some corrupt headers
        raise BadImage(UNREADABLE, str(err)) from err


def as_training_rgb(image):
    """The RGB image LLaMA-Factory's plugin makes of ``image`` (Pillow's ``convert("RGB")``), for the
    corruptions, which work on RGB."""
    return image if image.mode == "RGB" else image.convert("RGB")


def lossy_training_conversion(image) -> str | None:
    """What LLaMA-Factory's RGB conversion loses from this image, if anything (to warn about)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return f"{image.mode} pixels: training converts them to 8-bit RGB by clipping at 255; save the image as 8-bit"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return "transparent pixels: training drops the transparency and shows the colour stored under it"
    return None
