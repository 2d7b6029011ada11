"""Image descriptions for ``infuse`` and ``dar``: each image described once, reused across samples and resumes;
and describe-and-respond's two passes, shared by ``stic-cli dar`` and the lmms-eval model."""

import itertools
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..generation.engine import Request, user_turn
from ..generation.images import BadImage, load_image, lossy_training_conversion
from ..generation.planning import image_rng
from .infusion import infuse_messages
from .output import JsonlAppender, read_jsonl

logger = logging.getLogger("stic_plugin")


def load_images(paths: list[str], max_image_pixels: int) -> dict[str, object]:
    """path -> PIL image, or the BadImage that says why it cannot be used."""
    loaded = {}
    for path in dict.fromkeys(paths):
        try:
            loaded[path] = load_image(path, max_image_pixels)
        except BadImage as bad:
            loaded[path] = bad
            continue
        loss = lossy_training_conversion(loaded[path])
        if loss:
            logger.warning("%s: %s", path, loss)
    return loaded


def bad_image_entry(sample, images: dict) -> dict | None:
    """The skip entry of a sample one of whose images cannot be used (logged), or None."""
    for path in sample.images:
        bad = images.get(path)
        if isinstance(bad, BadImage):
            logger.warning("skipped sample %s: %s (%s)", sample.key, bad, path)
            return dict(key=sample.key, path=path, kind="skipped", reason=bad.reason, detail=bad.detail)
    return None


def lazy_stream(get_generator, requests, *args, **kwargs):
    """``get_generator().generate_stream(requests, ...)``, where the generator (and its model) is fetched only
    once the first request exists: a run with nothing left to generate loads no model."""
    requests = iter(requests)
    first = next(requests, None)
    if first is None:
        return
    yield from get_generator().generate_stream(itertools.chain([first], requests), *args, **kwargs)


def stable_image_key(path: str, image_root: str | None) -> str:
    """An image's name below the folder its source's paths start from (POSIX separators), else the path as
    given: what a description's prompt and sampling seed are drawn from, so that the same data and seed give
    the same descriptions wherever the folders lie."""
    if image_root is None:
        return path
    try:  # abspath also folds "x/../" away, which Path.absolute leaves
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(image_root)).as_posix()
    except ValueError:  # an absolute path elsewhere, or a URL
        return path


class ImageDescriber:
    """Describes images with the prompt drawn for each from (seed, image key); remembers every description.

    ``image_root``: the folder the input's image paths start from; an image's key is its path below it (see
    :func:`stable_image_key`)."""

    def __init__(
        self,
        make_generator,
        prompts: list[str],
        cfg,
        max_new_tokens: int,
        log_dir: Path | None,
        part: str,
        reuse: bool = True,
        image_root: str | None = None,
    ):
        self._make_generator = make_generator
        self._generator = None
        self.prompts, self.cfg, self.max_new_tokens = prompts, cfg, max_new_tokens
        self.image_root = image_root
        self.descriptions: dict[str, dict] = {}
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
        return image_rng(self.cfg.seed, stable_image_key(path, self.image_root), "describe").choice(self.prompts)

    def request(self, path: str, image) -> Request:
        """The description request of one image: its prompt drawn from (seed, image key), and its own sampling
        stream, seeded from the request key."""
        key = f"describe:{stable_image_key(path, self.image_root)}"
        return Request.single(user_turn(self.prompt_for(path)), image, key=key, tag=path)

    def describe(self, images: dict[str, object]) -> None:
        """Describe the good images not described yet, ``batch_size`` of them decoding at a time."""
        todo = [
            path for path, image in images.items() if path not in self.descriptions and not isinstance(image, BadImage)
        ]
        for _ in self.describe_stream(self.request(path, images[path]) for path in todo):
            pass

    def describe_stream(self, requests):
        """Describe as the requests come (an iterable, read as decoding slots free up, so it may be long and
        lazy); yields each image path as its description is done. The model is loaded only if there is a
        request."""
        stream = lazy_stream(
            lambda: self.generator,
            requests,
            self.max_new_tokens,
            self.cfg.temperature,
            self.cfg.top_p,
            seed=self.cfg.seed,
            slots=self.cfg.batch_size,
        )
        for request, generated in stream:
            path = request.tag
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
            if self._log is not None:
                self._log.write(entry)
            yield path

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


@dataclass
class Question:
    """A conversation to answer, up to the answer; its images named by keys into the batch's images."""

    messages: list[dict]
    images: list[str]  # keys (paths, or any name), in placeholder order
    system: str | None = None  # None: the template's default system prompt
    key: str | None = None  # names the answer's sampling stream


class DescribeAndRespond:
    """Describe-and-respond (the paper's DaR): pass 1 describes each image (the image is sent), pass 2 answers
    with the description(s) infused into the first user turn exactly as in stage 2 (the image first, then
    the description, then the question). With ``dar=False`` it answers directly, the image first too."""

    def __init__(self, describer: ImageDescriber, infusion_format: str, placement: str = "front", dar: bool = True):
        self.describer, self.infusion_format, self.placement, self.dar = describer, infusion_format, placement, dar

    @property
    def generator(self):
        return self.describer.generator

    def descriptions_of(self, question: Question) -> list[str]:
        return [self.describer.descriptions[key]["description"] for key in question.images] if self.dar else []

    def request(self, question: Question, images: dict) -> Request:
        """The answer pass's request (the images described already when ``dar``)."""
        from llamafactory.extras.constants import IMAGE_PLACEHOLDER

        messages = infuse_messages(
            question.messages, self.descriptions_of(question), self.infusion_format, IMAGE_PLACEHOLDER, self.placement
        )
        return Request(messages, [images[key] for key in question.images], question.system, key=question.key)

    def answer(
        self, questions: list[Question], images: dict, max_new_tokens: int, temperature: float, top_p, seed, slots
    ) -> list:
        """One Generation per question, in order. ``images``: key -> image (a BadImage is never described)."""
        if self.dar:
            self.describer.describe(images)
        requests = [self.request(question, images) for question in questions]
        return self.generator.generate(requests, max_new_tokens, temperature, top_p, seed=seed, slots=slots)
