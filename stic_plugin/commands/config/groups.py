"""Keys that several commands share, each declared once: the model (``ModelKeys``), the engine (``EngineKeys``),
sampling (``SamplingKeys``), the run's output (``OutputKeys``), existing instruction data as input
(``InputKeys``), the infusion format (``InfusionKeys``) and describe-and-respond's description pass
(``DescriptionKeys``). A command's configuration is the dataclass of its groups and its own keys."""

import dataclasses
import typing
from dataclasses import dataclass

from ...assets import default_infusion_format_file
from ...constants import DAR_DESCRIPTION_PROMPT
from ...data.sources import files_signature
from .keys import RENAMED, check_engine, engine_choices, option


class Keys:
    """The root of every configuration: the groups' checks run in turn (each calls ``super().__post_init__``)."""

    def __post_init__(self):
        pass


def at_least_one(config, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"`{name}` must be at least 1; got {getattr(config, name)}")


@dataclass(kw_only=True)
class ModelKeys(Keys):
    model_name_or_path: str = option(help="The model that writes the descriptions (HF-format folder or hub name).")
    template: str = option(
        help="LLaMA-Factory template of the model (llava, llava_next_mistral, qwen2_vl, ...): "
        "the same one the training recipe names."
    )
    adapter_name_or_path: str | None = option(None, help="LoRA adapter(s) applied to the model, comma-separated.")
    image_max_pixels: int = option(
        768 * 768,
        help="Images are scaled down to at most this many pixels before "
        "the processor, as LLaMA-Factory's `image_max_pixels`: use the "
        "training recipe's value.",
    )
    trust_remote_code: bool = option(
        False, help="Run code shipped inside the model folder (only for models you trust)."
    )
    infer_dtype: typing.Literal["auto", "float16", "bfloat16", "float32"] = option(
        "auto", help="Weights' dtype: auto takes bf16 where the device supports it."
    )

    def __post_init__(self):
        super().__post_init__()
        at_least_one(self, "image_max_pixels")


@dataclass(kw_only=True)
class EngineKeys(Keys):
    batch_size: int = option(
        8,
        help="Images (or questions) in flight together: the engine keeps their generations decoding (two per "
        "image in `pref`, one in `infuse`, `dar` and `eval`).",
    )
    engine: str = option(
        "continuous",
        choices=engine_choices,
        help="continuous: a finished row's slot goes to the next request at once (falls back to "
        "plain for models it cannot drive, with a warning); plain: transformers' generate "
        "on fixed batches; vllm: vLLM 0.26 (install it first: docs/engines.md), with "
        "batch_size 64 or more to keep a GPU busy.",
    )
    tensor_parallel_size: int = option(
        1, help="engine: vllm only: GPUs that hold one copy of the model together (vLLM's tensor parallelism)."
    )
    compile_decoding: typing.Literal["auto", True, False] = option(
        "auto",
        help="Compile the continuous engine's decoding step (CUDA graphs): true from the first step, "
        "auto on a GPU after 1000 steps (a short run never waits for the compilation), false never. "
        "With engine: vllm, auto and true let vLLM capture CUDA graphs on a GPU, false runs it eagerly.",
    )

    def __post_init__(self):
        super().__post_init__()
        at_least_one(self, "batch_size", "tensor_parallel_size")
        check_engine(self.engine)


@dataclass(kw_only=True)
class ExecutorKeys(Keys):
    """Where a generator command's engines run."""

    executor: typing.Literal["local", "ray"] = option(
        "local",
        help="local: the engine runs in this process (or torchrun's); ray (engine: vllm only): Ray Data LLM runs "
        "up to `concurrency` vLLM engines on the Ray cluster that RAY_ADDRESS names, or on a new one on this machine.",
    )
    concurrency: int = option(
        1, help="executor: ray only: most vLLM engines that Ray Data runs side by side (it adds them as rows wait)."
    )
    ship_images: bool = option(
        False,
        help="executor: ray only: send each image file's bytes from this machine with its request, for Ray nodes "
        "that cannot read the image paths (by default Ray's workers read the files themselves, at the same path).",
    )

    def __post_init__(self):
        super().__post_init__()
        at_least_one(self, "concurrency")
        if self.executor == "ray" and self.engine != "vllm":
            raise ValueError(f"`executor: ray` runs vLLM engines: set `engine: vllm` (got engine: {self.engine})")
        if self.ship_images and self.executor != "ray":
            raise ValueError("`ship_images` sends images to Ray's workers: it needs `executor: ray`")


@dataclass(kw_only=True)
class SamplingKeys(Keys):
    max_new_tokens: int = option(1024, help="Longest response, in tokens.")
    temperature: float = option(0.2, help="Sampling temperature; 0 decodes greedily.")
    top_p: float | None = option(None, help="Nucleus sampling threshold; unset samples from the whole distribution.")
    top_k: int | None = option(
        None,
        help="Sample from the k most likely tokens only (before top_p), as transformers' top_k; unset keeps every "
        "token. The authors' generation kept transformers' default, 50 (the recipes' value).",
    )
    seed: int = option(42, help="Seed of every random choice (prompts, negatives, corruptions, samples).")

    def __post_init__(self):
        super().__post_init__()
        at_least_one(self, "max_new_tokens")
        if self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0; got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1]; got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"`top_k` must be at least 1 (or unset for every token); got {self.top_k}")


@dataclass(kw_only=True)
class OutputKeys(Keys):
    dataset_dir: str = option("data", help="Folder for the output dataset and its dataset_info.json entry.")
    max_file_pixels: int = option(
        89_478_485,
        help="Image files with more pixels than this are skipped unread, a guard against decompression bombs "
        "(PIL's default limit); formerly `max_image_pixels`.",
    )
    overwrite: bool = option(False, help="Replace an existing output written with another configuration.")
    verbose: bool = option(
        False,
        help="Show every library's messages on the console; by default it shows the progress bar, the warnings "
        "that matter and the summary, and the rest goes to the log file in the output folder (NAME.stic/log-*.txt).",
    )

    def __post_init__(self):
        super().__post_init__()
        at_least_one(self, "max_file_pixels")


@dataclass(kw_only=True)
class GeneratorKeys(OutputKeys, SamplingKeys, ExecutorKeys, EngineKeys, ModelKeys):
    """Every generator command's keys: the model, the engine, sampling and the output."""

    def generation_fingerprint(self) -> dict:
        """What decides the content of the output; batch size and overwrite do not.

        Local model and adapter folders count by their files (names, sizes, modification times), so an
        adapter retrained in place is a changed configuration, not something to resume.
        """
        # The engine changes how samples are drawn and how fast, not from which distribution.
        skip = {
            "overwrite",
            "batch_size",
            "dataset_dir",
            "engine",
            "compile_decoding",
            "verbose",
            "tensor_parallel_size",
            "executor",
            "concurrency",
            "ship_images",
        }
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        for old, new in RENAMED.items():  # under the former name: outputs written before the rename resume
            if new in values:
                values[old] = values.pop(new)
        values["model_files"] = files_signature(self.model_name_or_path)
        values["adapter_files"] = [
            files_signature(p) for p in (self.adapter_name_or_path or "").split(",") if p.strip()
        ]
        return values


@dataclass(kw_only=True)
class InfusionKeys(Keys):
    image_placement: typing.Literal["front", "keep"] = option(
        "front",
        help="Where a user turn's image placeholders go: front (first, in their order, as LLaVA's training "
        "puts them, so the image comes before its description and the question) or keep (where the input has "
        "them; a `formatting: llava` dataset is always read with them first).",
    )
    infusion_format_file: str = option(
        default_infusion_format_file(),
        help="Format of the infused first user "
        "turn (fields {images}, {description}, {instruction}); the default is "
        "the authors' format.",
    )


@dataclass(kw_only=True)
class InputKeys(Keys):
    """Existing instruction data as input: a named dataset, or a LLaVA file."""

    dataset: str | None = option(
        None,
        help="Input: a dataset name in `source_dataset_dir`/dataset_info.json "
        "(any formatting LLaMA-Factory reads, `llava` included).",
    )
    source_dataset_dir: str = option("data", help="Folder of the dataset_info.json that names `dataset`.")
    media_dir: str | None = option(
        None, help="Folder that the input's image paths start from (default: `source_dataset_dir`)."
    )
    llava_file: str | None = option(None, help="Input: a LLaVA-format JSON (or JSONL) file, instead of `dataset`.")
    image_folder: str | None = option(
        None, help="Folder that `llava_file`'s image paths start from (default: the file's folder)."
    )

    def __post_init__(self):
        super().__post_init__()
        if (self.dataset is None) == (self.llava_file is None):
            raise ValueError("Set exactly one of `dataset` (a name in dataset_info.json) and `llava_file`.")


@dataclass(kw_only=True)
class DescriptionKeys(Keys):
    """Describe-and-respond's description pass."""

    description_prompt: str = option(DAR_DESCRIPTION_PROMPT, help="The prompt of the description pass.")
    description_max_new_tokens: int = option(1024, help="Longest description, in tokens.")

    def __post_init__(self):
        super().__post_init__()
        at_least_one(self, "description_max_new_tokens")


def check_num_samples(value) -> None:
    if value is not None and value < 1:
        raise ValueError(f"`num_samples` must be at least 1 (or null for all); got {value}")
