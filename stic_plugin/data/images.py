"""Finding and reading images: every bad file becomes a reason to skip, never a crash; the pixels are the
ones training reads.

An image is known by its *key* (``method.keys.image_key``): its path relative to the image root in POSIX
form; random choices and resume bookkeeping use the key, so moving the whole folder changes nothing.
"""

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..method.keys import image_key, is_url

logger = logging.getLogger("stic_plugin")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"}

# Skip reasons, as counted in the summary.
EMPTY, NOT_AN_IMAGE, UNREADABLE, TRUNCATED, TOO_MANY_PIXELS, TOO_ELONGATED, MISSING, BAD_NAME, A_URL = (
    "empty file",
    "not an image",
    "unreadable",
    "truncated",
    "too many pixels",
    "too elongated",
    "missing file",
    "file name is not valid UTF-8",
    "a URL, not a file (nothing is downloaded)",
)
# The longest side an image may have, in multiples of its shortest. What the model's processor makes of an image
# grows with this ratio, not with the file's pixels: LLaMA-Factory's scaling (image_max_pixels, image_min_pixels)
# keeps the ratio, and processors that then scale the shorter side to a fixed length (CLIP's 336 px, in LLaVA and
# LLaVA-NeXT) make an image of 336 x 336 x ratio pixels: a 4000x1 file of 94 bytes becomes 1344000x336, 7.6 GB in
# their float arrays. Qwen2-VL's processor refuses a ratio over 200 itself (and LLaMA-Factory's Qwen2-VL plugin
# squeezes such images to 180): over 200, every model either fails or needs 200 times a square image's memory.
MAX_ASPECT_RATIO = 200


class BadImage(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageItem:
    key: str  # relative to the image root, POSIX separators; always valid UTF-8
    path: str  # absolute
    unusable: str = ""  # a reason to skip it without reading it (a name that is not UTF-8)


@dataclass
class FolderScan:
    """The images of a folder tree, and what was left out of the listing (for the summary)."""

    items: list[ImageItem]
    folder_links: list[str] = field(default_factory=list)  # links to a folder already listed (a loop, an alias)
    file_links: list[tuple[str, str]] = field(default_factory=list)  # (left out, the key of the same file kept)


def _key(path: Path, root: Path) -> str:
    return image_key(str(path), str(root))


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of what a path leads to, links followed; None for a broken link."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _escaped(text: str) -> str:
    """A file system name as valid UTF-8 text: bytes that are not UTF-8 written as \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def scan_folder(image_dir: str) -> FolderScan:
    """Every image file under ``image_dir``, links followed, each folder and each file once.

    Folders are known by (device, inode): a link to a folder already listed (``loop -> .``, an alias of a
    sibling) is not followed again, and the folders really under the root win over links to them; a file
    reached twice (a link to an image already listed) counts once, the real file first. A name that is not
    valid UTF-8 becomes an item to skip with that reason, named with its bytes escaped."""
    root = Path(image_dir).absolute()
    if not root.is_dir():
        raise ValueError(f"image_dir {image_dir} is not a folder")
    claimed = set()  # folders listed or to be listed: first the real ones, then the linked ones as found
    for folder, dirs, _ in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        claimed.add(_identity(folder))
    scan = FolderScan([])
    candidates = []  # (identity, is a link, key, path)
    for folder, dirs, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            full = os.path.join(folder, name)
            if os.path.islink(full):
                identity = _identity(full)
                if identity is None or identity in claimed:
                    scan.folder_links.append(_escaped(_key(Path(full), root)))
                    continue
                claimed.add(identity)
            kept.append(name)
        dirs[:] = kept
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(folder, name)
            key = _key(Path(path), root)
            if _escaped(key) != key:  # surrogates: bytes that are not UTF-8 in the name or a folder's
                scan.items.append(ImageItem(_escaped(key), _escaped(path), BAD_NAME))
                continue
            candidates.append(_candidate(ImageItem(key, path)))
    _each_file_once(candidates, scan)
    return scan


def _candidate(item: ImageItem) -> tuple:
    """(what the item's path leads to, whether it is a link, the item): a file is known by (device, inode), a
    missing one by its key."""
    return _identity(item.path) or ("missing", item.key), os.path.islink(item.path), item


def _each_file_once(candidates: list[tuple], scan: FolderScan) -> None:
    """Into ``scan``, one item per file of the ``candidates`` (``_candidate``): the real file before links to
    it, then the first by key; the other names of a file go to ``scan.file_links``."""
    kept_keys: dict = {}
    for identity, _, item in sorted(candidates, key=lambda c: (c[1], c[2].key)):
        if identity in kept_keys:
            if item.key != kept_keys[identity]:  # one name listed twice is no other name
                scan.file_links.append((item.key, kept_keys[identity]))
            continue
        kept_keys[identity] = item.key
        scan.items.append(item)
    scan.items.sort(key=lambda item: item.key)


def images_in_folder(image_dir: str) -> list[ImageItem]:
    return scan_folder(image_dir).items


def list_images(image_dir: str | None, image_list: str | None, image_root: str | None, column: str) -> FolderScan:
    """The images of a folder or of a list, each file once; the names left out of the listing are logged and kept
    for the summary."""
    scan = scan_folder(image_dir) if image_dir is not None else scan_list(image_list, image_root, column)
    for link in scan.folder_links:
        logger.info("not followed: %s leads to a folder already listed", link)
    for link, kept in scan.file_links:
        logger.info("counted once: %s is the same file as %s", link, kept)
    return scan


def _paths_in_list_file(image_list: Path, image_column: str) -> list[str]:
    try:
        text = image_list.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is not a path
    except UnicodeDecodeError as err:
        raise ValueError(f"{image_list} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from err
    suffix = image_list.suffix.lower()
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{image_list} is not valid JSON: {err}") from err
        if not isinstance(rows, list):
            raise ValueError(f"{image_list}: a JSON image list is a list of paths or of records")
    elif suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                rows.extend([json.loads(line)] if line.strip() else [])
            except ValueError as err:
                raise ValueError(f"{image_list}, line {number}: not valid JSON ({err})") from err
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


def scan_list(image_list: str, image_root: str | None = None, image_column: str = "image") -> FolderScan:
    """The images of a list: paths from a text file (one per line), or a JSON/JSONL file: a list of paths (the
    authors' released ``6k_coco_names.json``), or records with an image column.

    Each file once, known by (device, inode) as in ``scan_folder``: an image listed twice, or under other names
    (``sub/../a.png``, a link to it, a path through a linked folder), is described once, and the other names
    are noted in ``file_links``."""
    list_path = Path(image_list).absolute()
    if not list_path.is_file():
        raise ValueError(f"image_list {image_list} is not a file")
    root = Path(image_root).absolute() if image_root else list_path.parent
    candidates = []
    values = _paths_in_list_file(list_path, image_column)
    for value in values:
        if is_url(value):  # named as given, and skipped unread
            candidates.append(_candidate(ImageItem(value, value, A_URL)))
            continue
        path = Path(value) if os.path.isabs(value) else root / value
        candidates.append(_candidate(ImageItem(_key(path, root), str(path))))
    scan = FolderScan([])
    _each_file_once(candidates, scan)
    if len(values) > len(scan.items):  # the same name twice is no other name: only this line tells
        logger.info("%s: %d entries name %d images, each described once", image_list, len(values), len(scan.items))
    return scan


def images_in_list(image_list: str, image_root: str | None = None, image_column: str = "image") -> list[ImageItem]:
    return scan_list(image_list, image_root, image_column).items


def missing_file(path: str, root: str | None = None) -> str:
    """A missing image named where it was looked for: a relative name in ``root`` (where the input's relative
    image paths start: LLaMA-Factory's loader looks there first) and then in the current folder (where the loader
    reads a name it did not find there); any other path as the absolute path it is."""
    if root is None or os.path.isabs(path):
        return str(Path(path).absolute())
    return f"{path} is in neither {Path(root).absolute()} nor the current folder {Path.cwd()}"


def load_image(path: str, max_file_pixels: int, root: str | None = None, data: bytes | None = None):
    """A PIL image with the pixels LLaMA-Factory's training loader reads from the same file (``data``: the file's
    bytes, read elsewhere; ``path`` then only names it).

    Training opens the file with ``Image.open`` and its multimodal plugin scales it to ``image_max_pixels``
    and converts it to RGB; the generator hands the model's plugin this image, unconverted, so that the
    description is of exactly the pixels trained on. EXIF orientation is therefore not applied (training
    does not apply it, nor did the authors' LLaVA code), and odd modes are converted as training converts
    them. Raises BadImage with the reason: for a file over ``max_file_pixels`` or an image too elongated for the
    processor (``MAX_ASPECT_RATIO``) before its pixels are decoded; for a missing file, where it was looked for
    (``missing_file``)."""
    from PIL import Image, UnidentifiedImageError

    if data is None and not os.path.exists(path):
        raise BadImage(MISSING, missing_file(path, root))
    if (len(data) if data is not None else os.path.getsize(path)) == 0:
        raise BadImage(EMPTY, path)
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise BadImage(EMPTY, f"{width}x{height} pixels")
            if width * height > max_file_pixels:  # checked on the header, before decoding anything
                raise BadImage(TOO_MANY_PIXELS, f"{width}x{height} > max_file_pixels={max_file_pixels}")
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):  # before the processor blows it up
                raise BadImage(TOO_ELONGATED, f"{width}x{height}: one side over {MAX_ASPECT_RATIO} times the other")
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
