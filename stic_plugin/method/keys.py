"""The one rule that names an image, for every random choice drawn for it (prompts, negative type, corruption,
sampling seed) and for the resume bookkeeping.

An image read from a file is named by its path below the folder its source's paths start from, in POSIX form
(``sub/a.png``), so that moving the whole folder, or naming it by another path, changes nothing; a path outside
that folder, or a URL, is named as it is given. An image that comes without a path (lmms-eval hands over
pictures) is named by its pixels. A record stores its image's path relative to its dataset's folder.
"""

import hashlib
import os
import re
from pathlib import Path

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://...


def is_url(path: str) -> bool:
    return URL.match(path) is not None


def image_key(path: str, root: str | None) -> str:
    """The name of the image at ``path`` (see the module): below ``root``, else the path as given."""
    if root is None or is_url(path):  # a URL read as a path would lose a slash ("http:/host/...")
        return path
    try:  # abspath also folds "x/../" away, which Path.absolute leaves
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:  # an absolute path elsewhere, or a URL
        return path


def picture_key(image) -> str:
    """The name of an image that has no path: a digest of its mode, size and pixels (the same picture twice
    is one image)."""
    digest = hashlib.sha1(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def path_from(folder, path: str) -> str:
    """``path`` relative to ``folder`` (as a record stores its image), or as it is where no relative path
    exists (another drive)."""
    try:
        return os.path.relpath(path, folder)
    except ValueError:
        return path
