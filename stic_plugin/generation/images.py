"""Finding and reading images: every bad file becomes a reason to skip, never a crash.

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
    """An RGB PIL image: EXIF orientation applied, odd modes converted. Raises BadImage with the reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

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
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
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


def to_rgb(image):
    """Grayscale, 16-bit, CMYK, palette and transparent images as 8-bit RGB (transparency over white)."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image
