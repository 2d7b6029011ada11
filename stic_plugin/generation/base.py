"""The generator contract: every engine takes the same requests (``Request``) and gives the same results
(``Generation``), and one factory (``create_generator``) builds any of them from the same settings.

An engine is a subclass of ``Generator`` (``generate_stream``; ``generate`` and ``close`` have defaults) and
one line in ``ENGINES``: the module and the function that builds it from ``GeneratorSettings``. ``executor:
ray`` runs an engine's requests on Ray's workers instead (``EXECUTORS``); there a request may name its images
(``ImageSource``) instead of holding them, and they are read where the engine runs. ``register_engine`` adds an
engine from outside the package (a test's, or a user's).
"""

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


class UnreadableImage(Exception):
    """An image a request names (``ImageSource``) that could not be read where the engine runs: why (``reason``, as
    the skip log counts it, and ``detail``), and which of the request's images it is (``image``)."""

    def __init__(self, reason: str, detail: str = "", image: int = 0):
        super().__init__(reason, detail, image)
        self.reason, self.detail, self.image = reason, detail, image

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class ImageSource(ABC):
    """An image that a request names instead of holding: read where the engine runs (``executor: ray``: in Ray's
    workers), so that the command neither decodes nor keeps the pixels. It travels pickled, so every node needs
    the module that defines it (this project, installed)."""

    file: str | None  # the file read where the engine runs; None when the file's bytes travel with the source

    @abstractmethod
    def read(self):
        """The PIL image, as the command would have read it for the other engines; raises UnreadableImage."""


@dataclass
class Generation:
    text: str
    tokens: int  # new tokens, stop token excluded
    truncated: bool  # reached max_new_tokens without a stop token
    unreadable: UnreadableImage | None = None  # an image named by the request could not be read: no text


@dataclass
class Request:
    """A conversation up to the answer to generate: user/assistant turns, one placeholder per image."""

    messages: list[dict]
    images: list = field(default_factory=list)  # PIL images (or ImageSource: executor ray), in placeholder order
    system: str | None = None  # None: the template's default system prompt, as in training
    key: str | None = None  # names the request's sampling stream; None: its position in the call
    tag: object = None  # the caller's, returned with the generation
    max_new_tokens: int | None = None  # None: the call's max_new_tokens
    min_new_tokens: int = 0  # stop tokens are refused before this many new tokens

    @classmethod
    def single(cls, prompt: str, image, **kwargs) -> "Request":
        return cls([{"role": "user", "content": prompt}], [image], **kwargs)


def user_turn(prompt: str) -> str:
    """A user turn about one image: exactly one image placeholder, before the prompt."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    return f"{IMAGE_PLACEHOLDER}\n{prompt}"


@dataclass
class GeneratorSettings:
    """What every engine is built from: the generator keys of ``stic-cli`` (``of`` reads them from a command's
    configuration) or of the lmms-eval model."""

    model_name_or_path: str
    template: str
    adapter_name_or_path: str | None = None
    image_max_pixels: int | None = 768 * 768
    trust_remote_code: bool = False
    infer_dtype: str = "auto"
    engine: str = "continuous"
    executor: str = "local"
    compile_decoding: object = "auto"  # "auto", True or False
    tensor_parallel_size: int = 1  # vllm
    concurrency: int = 1  # executor: ray
    seed: int = 0  # vllm's engine seed (every request samples from its own seed anyway)
    verbose: bool = False
    gpu_memory_utilization: float = 0.9  # vllm's share of the GPU's memory

    @classmethod
    def of(cls, cfg, **changes) -> "GeneratorSettings":
        """The settings of a configuration (keys it lacks keep their defaults), with ``changes``."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{**{name: getattr(cfg, name) for name in names if hasattr(cfg, name)}, **changes})


class Generator(ABC):
    """One model behind one engine."""

    @abstractmethod
    def generate_stream(
        self,
        requests: Iterable[Request],
        max_new_tokens: int,
        temperature: float = 0.2,
        top_p: float | None = None,
        seed: int | None = None,
        slots: int | None = None,
        top_k: int | None = None,
    ) -> Iterator[tuple[Request, Generation]]:
        """(request, Generation) for each request of the iterable (read as slots free up, so it may be long and
        lazy), in the order they finish. Each request samples from its own stream, named by (seed, its key), so
        a text depends neither on the other requests nor on ``slots`` (sequences decoded together). Sampling
        (``temperature`` > 0) keeps the ``top_k`` most likely tokens (None: all), then the nucleus ``top_p``."""

    def generate(
        self,
        requests: list[Request],
        max_new_tokens: int,
        temperature: float = 0.2,
        top_p: float | None = None,
        seed: int | None = None,
        slots: int | None = None,
        top_k: int | None = None,
    ) -> list[Generation]:
        """One generation per request, in request order."""
        results: dict[int, Generation] = {}
        tagged = [dataclasses.replace(request, tag=index) for index, request in enumerate(requests)]
        stream = self.generate_stream(tagged, max_new_tokens, temperature, top_p, seed, slots, top_k=top_k)
        for request, generation in stream:
            results[request.tag] = generation
        return [results[index] for index in range(len(requests))]

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to give back
        """Give back what the engine holds beyond memory (engine processes, temporary folders)."""


# name -> "module:function" that builds the engine from GeneratorSettings (imported when the engine is used)
ENGINES = {
    "continuous": "stic_plugin.generation.transformers_engine:create_continuous",
    "plain": "stic_plugin.generation.transformers_engine:create_plain",
    "vllm": "stic_plugin.generation.vllm_engine:create",
}
EXECUTORS = {"ray": "stic_plugin.generation.ray_executor:create"}  # executor -> builder, for engine: vllm
_REGISTERED: dict[str, Callable[[GeneratorSettings], Generator]] = {}


def reads_image_files(settings: GeneratorSettings) -> bool:
    """Whether the engines read the image files themselves, where they run (``executor: ray``): the requests then
    name their images (``ImageSource``), and the command reads no pixels."""
    return settings.executor != "local"


def register_engine(name: str, build: Callable[[GeneratorSettings], Generator]) -> None:
    """Add an engine: ``build(settings)`` returns its ``Generator``. A name already in use is refused."""
    if name in ENGINES or name in _REGISTERED:
        raise ValueError(f"engine {name!r} exists already")
    _REGISTERED[name] = build


def unregister_engine(name: str) -> None:
    _REGISTERED.pop(name, None)


def engine_names() -> list[str]:
    return [*ENGINES, *_REGISTERED]


def _builder(path: str) -> Callable:
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


def create_generator(settings: GeneratorSettings) -> Generator:
    """The generator of ``settings.engine`` (run by ``settings.executor``): the one way every caller gets one."""
    from ..heap import start_is_over

    if settings.executor != "local":
        if settings.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {settings.executor!r}; known: local, {', '.join(EXECUTORS)}")
        if settings.engine != "vllm":
            raise ValueError(f"`executor: {settings.executor}` runs vLLM engines: set `engine: vllm`")
        build = _builder(EXECUTORS[settings.executor])
    elif settings.engine in _REGISTERED:
        build = _REGISTERED[settings.engine]
    elif settings.engine in ENGINES:
        build = _builder(ENGINES[settings.engine])
    else:
        raise ValueError(f"unknown engine {settings.engine!r}; known: {', '.join(engine_names())}")
    generator = build(settings)
    start_is_over()  # a command's start is over (heap.py)
    return generator
