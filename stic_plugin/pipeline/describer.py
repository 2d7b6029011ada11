"""Image descriptions for ``infuse``, ``dar`` and the lmms-eval model: each image described once, reused across
samples and, through its log, across resumes."""

import itertools
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..data.images import BadImage
from ..data.output import JsonlAppender, read_jsonl
from ..generation.base import Request, user_turn
from ..method.keys import image_key
from ..method.pairs import image_rng
from .image_inputs import named_image, read_image

logger = logging.getLogger("stic_plugin")


@dataclass(frozen=True)
class Sampling:
    """How a run samples: temperature (0: greedy), nucleus threshold, the seed of every request's stream, the
    requests decoding together, and how many of the most likely tokens are kept (None: all)."""

    temperature: float = 0.0
    top_p: float | None = None
    seed: int = 0
    slots: int = 8
    top_k: int | None = None

    @classmethod
    def of(cls, cfg) -> "Sampling":
        return cls(cfg.temperature, cfg.top_p, cfg.seed, cfg.batch_size, cfg.top_k)


def load_images(
    paths: list[str], max_file_pixels: int, root: str | None = None, named: bool = False, ship: bool = False
) -> dict[str, object]:
    """path -> PIL image (``named``: the ImageFile that names it, holding its bytes with ``ship``), or the BadImage
    that says why it cannot be used. ``root``: where the input's relative image paths start (named when such an
    image is missing)."""
    loaded = {}
    for path in dict.fromkeys(paths):
        if named:
            loaded[path] = named_image(path, max_file_pixels, ship, root)
            continue
        try:
            loaded[path] = read_image(path, max_file_pixels, root)
        except BadImage as bad:
            loaded[path] = bad
    return loaded


def bad_image_entry(sample, images: dict) -> dict | None:
    """The skip entry of a sample one of whose images cannot be used (logged), or None."""
    for path in sample.images:
        bad = images.get(path)
        if isinstance(bad, BadImage):
            logger.warning("skipped sample %s: %s (%s)", sample.key, bad, path)
            return dict(key=sample.key, path=path, kind="skipped", reason=bad.reason, detail=bad.detail)
    return None


def lazy_stream(get_generator, requests, max_new_tokens: int, sampling: Sampling):
    """``get_generator().generate_stream(requests, ...)``, where the generator (and its model) is fetched only
    once the first request exists: a run with nothing left to generate loads no model."""
    requests = iter(requests)
    first = next(requests, None)
    if first is None:
        return
    yield from get_generator().generate_stream(
        itertools.chain([first], requests),
        max_new_tokens,
        sampling.temperature,
        sampling.top_p,
        seed=sampling.seed,
        slots=sampling.slots,
        top_k=sampling.top_k,
    )


class ImageDescriber:
    """Describes images with the prompt drawn for each from (seed, image key); remembers every description.

    ``image_root``: the folder the input's image paths start from (``method.keys.image_key``). ``log_dir``: where
    descriptions are logged (``descriptions-<part>``), and where those of earlier runs are read back when
    ``reuse``."""

    def __init__(
        self,
        make_generator,
        prompts: list[str],
        sampling: Sampling,
        max_new_tokens: int,
        log_dir: Path | None = None,
        part: str = "",
        reuse: bool = True,
        image_root: str | None = None,
    ):
        self._make_generator = make_generator
        self._generator = None
        self.prompts, self.sampling, self.max_new_tokens = prompts, sampling, max_new_tokens
        self.image_root = image_root
        self.descriptions: dict[str, dict] = {}
        self.unreadable: dict[str, BadImage] = {}  # images found bad where the engine read them (executor: ray)
        self.counts = Counter()
        self._log = None
        if log_dir is not None:
            if reuse:  # descriptions written by earlier runs of the same configuration, any process
                for path in sorted(log_dir.glob("descriptions-*.jsonl")):
                    for entry in read_jsonl(path):
                        self.descriptions[entry["image"]] = entry
            self._log = JsonlAppender(log_dir / f"descriptions-{part}")

    @property
    def generator(self):
        if self._generator is None:
            self._generator = self._make_generator()
        return self._generator

    def prompt_for(self, path: str) -> str:
        if len(self.prompts) == 1:
            return self.prompts[0]
        return image_rng(self.sampling.seed, image_key(path, self.image_root), "describe").choice(self.prompts)

    def request(self, path: str, image) -> Request:
        """The description request of one image: its prompt drawn from (seed, image key), and its own sampling
        stream, seeded from the request key."""
        key = f"describe:{image_key(path, self.image_root)}"
        return Request.single(user_turn(self.prompt_for(path)), image, key=key, tag=path)

    def describe(self, images: dict[str, object]) -> None:
        """Describe the good images not described yet, ``sampling.slots`` of them decoding at a time."""
        todo = [
            path for path, image in images.items() if path not in self.descriptions and not isinstance(image, BadImage)
        ]
        for _ in self.describe_stream(self.request(path, images[path]) for path in todo):
            pass

    def describe_stream(self, requests):
        """Describe as the requests come (an iterable, read as decoding slots free up, so it may be long and
        lazy); yields each image path as its description is done. The model is loaded only if there is a
        request."""
        for request, generated in lazy_stream(lambda: self.generator, requests, self.max_new_tokens, self.sampling):
            yield self.remember(request.tag, generated)

    def remember(self, path: str, generated) -> str:
        """Keep (and log) the description of the image at ``path``; or, where the engine could not read the image,
        why (not logged: a resumed run skips the samples that show it, by the skip log)."""
        if generated.unreadable is not None:
            self.unreadable[path] = BadImage(generated.unreadable.reason, generated.unreadable.detail)
            return path
        entry = {
            "image": path,
            "prompt": self.prompt_for(path),
            "description": generated.text,
            "tokens": generated.tokens,
            "truncated": generated.truncated,
        }
        self.descriptions[path] = entry
        self.counts["images described"] += 1
        self.counts["output tokens"] += generated.tokens
        self.counts["descriptions truncated"] += bool(generated.truncated)
        if self._log is not None:
            self._log.write(entry)
        return path

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
