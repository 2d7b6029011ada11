"""Configuration of every ``stic-cli`` command: YAML keys, overridable as ``key=value`` on the command line.

Each command's keys are one dataclass with a help text per key (``PrefConfig``, ``InfuseConfig``,
``DarConfig``, ``Pref2SftConfig``, ``DemoConfig``, ``BenchConfig``), read by ``load_config`` (which rejects
unknown keys, naming the closest known one) and checked in ``__post_init__``.
"""

import dataclasses
import difflib
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path

from ..assets import default_infusion_format_file, default_prompt_file
from ..constants import DAR_DESCRIPTION_PROMPT
from ..data.runs import files_signature
from ..evaluation.benchmarks import PAPER_TASKS


def option(default=MISSING, help: str = "", **kwargs):  # noqa: A002 - mirrors dataclasses.field metadata
    if isinstance(default, (dict, list)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def _coerce(name: str, value, annotation):
    """Check a YAML or command-line value against the annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for candidate in options:
            if candidate is type(None):
                continue
            try:
                return _coerce(name, value, candidate)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"`{name}`: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(
                f"`{name}` must be one of {', '.join(map(str, typing.get_args(annotation)))}; got {value!r}"
            )
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` must be true or false; got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` must be a whole number; got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"`{name}` must be a number; got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"`{name}` must be text; got {value!r}")
    if origin is list or annotation is list:
        if isinstance(value, list):
            return list(value)
        raise ValueError(f"`{name}` must be a list, as [1, 2, 3]; got {value!r}")
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ValueError(f"`{name}` must be a mapping (key: value); got {value!r}")
    return value


def _accepts_text(annotation) -> bool:
    if annotation is str:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and str in typing.get_args(annotation)


def parse_override(text: str, annotation=None) -> tuple[str, object]:
    """``key=value`` from the command line: text keys take the value as written, others are read as YAML."""
    import yaml

    if "=" not in text:
        raise ValueError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if raw.strip() in ("", "null", "~"):
        return key, None
    if annotation is not None and _accepts_text(annotation):
        return key, raw  # "Describe it. Note: be brief" stays text, not a YAML mapping
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"`{key}`: cannot read the value {raw!r} ({err.problem or err})") from err


def load_config(cls, config_path: str | None = None, overrides: list[str] = ()):
    """Build ``cls`` from a YAML file and ``key=value`` overrides (the overrides win)."""
    import yaml

    values = {}
    if config_path:
        try:
            loaded = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ValueError(f"cannot read the configuration {config_path}: {err}") from err
        except yaml.YAMLError as err:
            raise ValueError(f"{config_path} is not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{config_path} must hold `key: value` lines")
        values.update(loaded or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        key, value = parse_override(override, hints.get(key))
        values[key] = value
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"Unknown key `{key}`.{hint} `stic-cli {cls.command} --help` lists the keys.")
    missing = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING and n not in values]
    if missing:
        raise ValueError(f"Missing required key(s): {', '.join(f'`{n}`' for n in missing)}.")
    return cls(**{key: _coerce(key, value, hints[key]) for key, value in values.items()})


def _as_yaml(value) -> str:
    """A default as it is written in a YAML file or as key=value."""
    import json

    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value).replace('"', "")
    return str(value)


def describe_keys(cls) -> str:
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f"default: {_as_yaml(f.default)}"
        elif f.default_factory is not MISSING:
            default = f"default: {_as_yaml(f.default_factory())}"
        else:
            default = "required"
        lines.append(f"  {f.name}  ({default})\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def check_plain_name(key: str, value: str) -> None:
    """An output name becomes a folder and a dataset_info entry: no path, no hidden name."""
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"`{key}` must be a plain name; got {value!r}")


@dataclass
class GeneratorConfig:
    """Keys shared by every generator: the model, the images and the output."""

    command = "generate"

    model_name_or_path: str = option(help="The model that writes the descriptions (HF-format folder or hub name).")
    template: str = option(
        help="LLaMA-Factory template of the model (llava, llava_next_mistral, qwen2_vl, ...): "
        "the same one the training recipe names."
    )
    adapter_name_or_path: str | None = option(None, help="LoRA adapter(s) applied to the model, comma-separated.")
    dataset_dir: str = option("data", help="Folder for the output dataset and its dataset_info.json entry.")
    batch_size: int = option(
        8,
        help="Images in flight together: the continuous engine keeps their generations "
        "decoding (two per image in `pref`, one in `infuse` and `dar`).",
    )
    max_new_tokens: int = option(1024, help="Longest response, in tokens.")
    temperature: float = option(0.2, help="Sampling temperature; 0 decodes greedily.")
    top_p: float | None = option(None, help="Nucleus sampling threshold; unset samples from the whole distribution.")
    seed: int = option(42, help="Seed of every random choice (prompts, negatives, corruptions, samples).")
    image_max_pixels: int = option(
        768 * 768,
        help="Images are scaled down to at most this many pixels before "
        "the processor, as LLaMA-Factory's `image_max_pixels`: use the "
        "training recipe's value.",
    )
    max_image_pixels: int = option(
        89_478_485,
        help="Files with more pixels than this are skipped unread (decompression-bomb guard; PIL's default limit).",
    )
    overwrite: bool = option(False, help="Replace an existing output written with another configuration.")
    trust_remote_code: bool = option(
        False, help="Run code shipped inside the model folder (only for models you trust)."
    )
    infer_dtype: typing.Literal["auto", "float16", "bfloat16", "float32"] = option(
        "auto", help="Weights' dtype: auto takes bf16 where the device supports it."
    )
    engine: typing.Literal["continuous", "plain", "vllm"] = option(
        "continuous",
        help="continuous: a finished row's slot goes to the next request at once (falls back to "
        "plain for models it cannot drive, with a warning); plain: transformers' generate "
        "on fixed batches; vllm: vLLM 0.26 (install it first: the README's vLLM section), with "
        "batch_size 64 or more to keep a GPU busy.",
    )
    tensor_parallel_size: int = option(
        1, help="engine: vllm only: GPUs that hold one copy of the model together (vLLM's tensor parallelism)."
    )
    executor: typing.Literal["local", "ray"] = option(
        "local",
        help="local: the engine runs in this process (or torchrun's); ray (engine: vllm only): Ray Data LLM runs "
        "up to `concurrency` vLLM engines on the Ray cluster that RAY_ADDRESS names, or on a new one on this machine.",
    )
    concurrency: int = option(
        1, help="executor: ray only: most vLLM engines that Ray Data runs side by side (it adds them as rows wait)."
    )
    compile_decoding: typing.Literal["auto", True, False] = option(
        "auto",
        help="Compile the continuous engine's decoding step (CUDA graphs): true from the first step, "
        "auto on a GPU after 1000 steps (a short run never waits for the compilation), false never. "
        "With engine: vllm, auto and true let vLLM capture CUDA graphs on a GPU, false runs it eagerly.",
    )
    verbose: bool = option(
        False,
        help="Show every library's messages on the console; by default it shows the progress bar, the warnings "
        "that matter and the summary, and the rest goes to the log file in the output folder (NAME.stic/log-*.txt).",
    )

    def __post_init__(self):
        for name in (
            "batch_size",
            "max_new_tokens",
            "image_max_pixels",
            "max_image_pixels",
            "tensor_parallel_size",
            "concurrency",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1; got {getattr(self, name)}")
        if self.executor == "ray" and self.engine != "vllm":
            raise ValueError(f"`executor: ray` runs vLLM engines: set `engine: vllm` (got engine: {self.engine})")
        if self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0; got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1]; got {self.top_p}")

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
        }
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        values["model_files"] = files_signature(self.model_name_or_path)
        values["adapter_files"] = [
            files_signature(p) for p in (self.adapter_name_or_path or "").split(",") if p.strip()
        ]
        return values


@dataclass
class PrefConfig(GeneratorConfig):
    """``stic-cli pref``: STIC stage-1 preference data from unlabeled images (paper Algorithm 1)."""

    command = "pref"

    image_dir: str | None = option(None, help="Folder searched recursively for images (or use `image_list`).")
    image_list: str | None = option(
        None, help="Text file of image paths (one per line), or JSON/JSONL with an image column."
    )
    image_root: str | None = option(
        None, help="Folder that relative paths in `image_list` start from (default: the list file's folder)."
    )
    image_column: str = option("image", help="Column holding the image path(s) in a JSON/JSONL `image_list`.")
    max_samples: int | None = option(None, help="Use at most this many images, drawn reproducibly with `seed`.")
    dataset_name: str = option("stic_pref", help="Name of the dataset (folder in dataset_dir and dataset_info entry).")
    corruption_prob: float = option(
        0.5,
        help="Probability that the dispreferred response comes from a corrupted "
        "image (else from a hallucination prompt on the clean image).",
    )
    corruptions: dict = option(
        {"low_resolution": 0.5, "color_jitter": 0.5},
        help="Corruptions and their weights: low_resolution, color_jitter.",
    )
    low_resolution_size: int = option(20, help="low_resolution: the shorter side, in pixels (torchvision Resize).")
    jitter_brightness: float = option(0.5, help="color_jitter: brightness factor drawn from [1-b, 1+b].")
    jitter_hue: float = option(0.3, help="color_jitter: hue shift drawn from [-h, h] (at most 0.5).")
    preferred_prompt_file: str = option(
        default_prompt_file("preferred"),
        help="Step-by-step prompt(s) for the preferred description; one per line (one is drawn per image).",
    )
    captioning_prompts_file: str = option(
        default_prompt_file("captioning"),
        help="Training prompts stored with each pair and used on the corrupted image; one per line.",
    )
    hallucination_prompts_file: str = option(
        default_prompt_file("hallucination"),
        help="Hallucination-inducing prompts for the dispreferred description; one per line.",
    )
    on_truncated: typing.Literal["keep", "drop"] = option(
        "keep", help="A preferred response cut off at max_new_tokens: keep it (flagged) or drop the pair."
    )

    def __post_init__(self):
        super().__post_init__()
        if (self.image_dir is None) == (self.image_list is None):
            raise ValueError("Set exactly one of `image_dir` and `image_list`.")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"`max_samples` must be at least 1 when set; got {self.max_samples}")
        if not 0 <= self.corruption_prob <= 1:
            raise ValueError(f"`corruption_prob` must be in [0, 1]; got {self.corruption_prob}")
        from ..generation.corruption import CORRUPTIONS

        for name, weight in self.corruptions.items():
            if name not in CORRUPTIONS:
                raise ValueError(f"`corruptions`: unknown corruption `{name}`; known: {', '.join(CORRUPTIONS)}")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"`corruptions`: the weight of `{name}` must be a number >= 0; got {weight!r}")
        if self.corruption_prob > 0 and not any(self.corruptions.values()):
            raise ValueError("`corruptions` needs at least one positive weight while `corruption_prob` > 0")
        if self.low_resolution_size < 1:
            raise ValueError(f"`low_resolution_size` must be at least 1; got {self.low_resolution_size}")
        if not 0 <= self.jitter_brightness <= 1 or not 0 <= self.jitter_hue <= 0.5:
            raise ValueError("`jitter_brightness` must be in [0, 1] and `jitter_hue` in [0, 0.5]")
        check_plain_name("dataset_name", self.dataset_name)


@dataclass
class SourceConfig(GeneratorConfig):
    """Keys of the commands that read existing instruction data."""

    command = "source"

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
    num_samples: int | None = option(
        5000, help="Samples with images drawn from the input with `seed` (the paper: 5k); null takes all."
    )
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

    def __post_init__(self):
        super().__post_init__()
        if (self.dataset is None) == (self.llava_file is None):
            raise ValueError("Set exactly one of `dataset` (a name in dataset_info.json) and `llava_file`.")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"`num_samples` must be at least 1 (or null for all); got {self.num_samples}")


@dataclass
class InfuseConfig(SourceConfig):
    """``stic-cli infuse``: stage-2 description-infused SFT data (paper Algorithm 2)."""

    command = "infuse"

    dataset_name: str = option(
        "stic_sft", help="Name of the output dataset (folder in dataset_dir and dataset_info entry)."
    )
    description_prompts_file: str = option(
        default_prompt_file("captioning"),
        help="Prompts for the image descriptions, one per line; one is drawn per image.",
    )
    keep_text_only: bool = option(
        False,
        help="Add samples without an image, unchanged, on top of the `num_samples` image samples, in their "
        "input's proportion (false: leave them out, as the authors' generator does).",
    )

    def __post_init__(self):
        super().__post_init__()
        check_plain_name("dataset_name", self.dataset_name)


@dataclass
class DarConfig(SourceConfig):
    """``stic-cli dar``: describe-and-respond inference, with accuracy when answers are known."""

    command = "dar"

    dataset_dir: str = option("predictions", help="Folder for the predictions (`predictions_name`/part-*.jsonl).")
    num_samples: int | None = option(None, help="Questions drawn from the input with `seed`; null takes all.")
    predictions_name: str = option("dar", help="Name of the predictions folder and summary.")
    dar: bool = option(
        True,
        help="Describe the image first and answer with the description infused "
        "(false: answer directly, to compare on the same model).",
    )
    description_prompt: str = option(DAR_DESCRIPTION_PROMPT, help="The prompt of the description pass.")
    description_max_new_tokens: int = option(1024, help="Longest description, in tokens.")
    metric: typing.Literal["none", "choice", "exact", "contains"] = option(
        "none",
        help=(
            "Score predictions against the reference answers: choice (multiple-choice letter), exact (same text), "
            "contains (the reference appears in the prediction); none to skip."
        ),
    )

    def __post_init__(self):
        super().__post_init__()
        if self.description_max_new_tokens < 1:
            raise ValueError("`description_max_new_tokens` must be at least 1")
        check_plain_name("predictions_name", self.predictions_name)


@dataclass
class Pref2SftConfig:
    """``stic-cli pref2sft``: SFT data from the preferred descriptions of a `pref` output (the paper's Table 3
    ablation, "SFT on positives")."""

    command = "pref2sft"

    dataset_dir: str = option(
        "data", help="Folder of the `pref` output; the SFT dataset and its dataset_info.json entry go here too."
    )
    pref_dataset: str = option("stic_pref", help="Name of the `pref` output to convert (its `dataset_name`).")
    dataset_name: str = option(
        "stic_pref_sft", help="Name of the SFT dataset (folder in dataset_dir and dataset_info entry)."
    )
    overwrite: bool = option(False, help="Replace an existing output converted from other pairs.")

    def __post_init__(self):
        check_plain_name("pref_dataset", self.pref_dataset)
        check_plain_name("dataset_name", self.dataset_name)
        if self.dataset_name == self.pref_dataset:
            raise ValueError("`dataset_name` must differ from `pref_dataset`: the pairs are never overwritten")


@dataclass
class DemoConfig:
    """``stic-cli demo``: STIC in a toy world where a model really sees: base model against STIC, on the CPU."""

    command = "demo"

    output_dir: str = option("demo_output", help="Everything the demo writes goes here; finished steps are reused.")
    full: bool = option(
        False,
        help="The whole comparison: learning rates chosen on the validation split, every ablation, each seed of "
        "`seeds`; writes report.md, report.json and the plots (about an hour on 2 CPU cores for three seeds, "
        "each with its own base model).",
    )
    seeds: list = option([0, 1, 2], help="Training seeds of the full comparison; the demo alone uses the first.")
    scale: typing.Literal["demo", "smoke"] = option(
        "demo", help="demo: the world and training the README quotes; smoke: a few pictures and steps (the plumbing)."
    )
    fresh: bool = option(False, help="Run every step again, the world and the base model included.")

    def __post_init__(self):
        if not self.seeds or any(not isinstance(seed, int) or isinstance(seed, bool) for seed in self.seeds):
            raise ValueError(f"`seeds` must be a list of whole numbers; got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must not repeat a seed; got {self.seeds!r}")


@dataclass
class BenchConfig:
    """``stic-cli bench``: speed of generation and training on this machine, printed and saved as JSON."""

    command = "bench"

    architecture: typing.Literal["llava-1.5-7b", "llava-v1.6-mistral-7b", "qwen2-vl-7b", "tiny"] = option(
        "llava-1.5-7b", help="Random-weight model of this architecture (tiny: the test model, for CPU smoke runs)."
    )
    model_name_or_path: str | None = option(None, help="A checkpoint to measure instead of random weights.")
    template: str | None = option(None, help="The checkpoint's LLaMA-Factory template (with model_name_or_path).")
    batch_sizes: list = option([1, 16, 64, 128], help="Sequences decoding together; plain at 1 is the baseline.")
    engines: list = option(
        ["continuous", "plain"],
        help="Generation engines to measure (continuous, plain, vllm): vllm runs the same requests on vLLM "
        "(installed first: the README's vLLM section), on the same weights saved to a folder.",
    )
    compile_decoding: typing.Literal["auto", True, False] = option(
        "auto", help="Compile the continuous engine's decoding step from the warm-up on; auto: on a GPU."
    )
    spread_batches: int = option(4, help="Spread run: requests = this many times the batch size.")
    new_tokens: int = option(256, help="Equal-length run: output tokens of every sequence.")
    spread_min: int = option(100, help="Spread run: shortest output, in tokens.")
    spread_max: int = option(1000, help="Spread run: longest output, in tokens.")
    spread_mean: int = option(400, help="Spread run: mean output length, in tokens (log-normal, clipped).")
    train_pairs: int = option(4, help="Preference pairs per training step.")
    train_response_tokens: int = option(350, help="Tokens of each chosen and rejected response in the training batch.")
    train_steps: int = option(5, help="Timed training steps per trainer.")
    train_gradient_checkpointing: bool = option(
        True,
        help="Recompute activations in the backward pass (LLaMA-Factory's default, kept by the recipes); "
        "false: faster, more memory.",
    )
    warmup_steps: int = option(2, help="Untimed steps (and generate calls) first: compilation, caches, allocator.")
    image_max_pixels: int = option(768 * 768, help="As the recipes' image_max_pixels.")
    output_json: str = option("bench.json", help="Where every figure is written.")
    seed: int = option(0, help="Seed of the random weights, images and lengths.")

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise ValueError(f"`batch_sizes` must be a list of whole numbers >= 1; got {self.batch_sizes!r}")
        if not 1 <= self.spread_min <= self.spread_mean <= self.spread_max:
            raise ValueError("need 1 <= spread_min <= spread_mean <= spread_max")
        if not self.engines or any(engine not in ("continuous", "plain", "vllm") for engine in self.engines):
            raise ValueError(f"`engines` must list some of continuous, plain and vllm; got {self.engines!r}")
        for name in ("new_tokens", "train_pairs", "train_response_tokens", "train_steps", "spread_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1")
        if (self.model_name_or_path is None) != (self.template is None):
            raise ValueError("`model_name_or_path` and `template` go together")


def like(cls, name: str, **changed):
    """A key with the default and help text of another command's key (``default=`` or ``help=`` to change)."""
    source = {f.name: f for f in dataclasses.fields(cls)}[name]
    default = source.default if source.default_factory is MISSING else source.default_factory()
    return option(changed.get("default", default), help=changed.get("help", source.metadata["help"]))


@dataclass
class EvalConfig:
    """``stic-cli eval``: the paper's benchmarks (Table 1) through lmms-eval, on a model with or without its
    STIC adapter, answering directly or by describe-and-respond."""

    command = "eval"

    model_name_or_path: str = option(help="The base model (HF-format folder or hub name), as in training.")
    template: str = like(GeneratorConfig, "template")
    adapter_name_or_path: str | None = option(
        None,
        help="LoRA adapter(s) applied to the model, comma-separated: the stage-1 or stage-2 output; "
        "unset evaluates the base model.",
    )
    dar: bool = option(
        False,
        help="Describe the image first and answer with the description infused, as `stic-cli dar` does "
        "(false: answer directly).",
    )
    tasks: list = option(
        PAPER_TASKS,
        help="lmms-eval tasks to run; the default is the paper's seven. A task scored by an API judge is "
        "skipped, naming the missing variable, when its credentials are not set.",
    )
    limit: int | float | None = option(
        None,
        help="At most this many questions per task (below 1: this fraction), as lmms-eval's --limit: for trial "
        "runs, the scores are not the benchmark's.",
    )
    output_dir: str = option("eval_output", help="lmms-eval's result files go to `output_dir`/`run_name`/.")
    run_name: str | None = option(
        None, help="The run's row in the table and its folder; unset: named after the model, adapter and mode."
    )
    task_dir: str | None = option(
        None,
        help="Folder of lmms-eval task YAML files, searched before lmms-eval's own: a task defined there "
        "replaces lmms-eval's task of the same name (a local copy of a benchmark's data, for example).",
    )
    description_prompt: str = like(DarConfig, "description_prompt")
    description_max_new_tokens: int = like(DarConfig, "description_max_new_tokens")
    image_placement: typing.Literal["front", "keep"] = like(SourceConfig, "image_placement")
    infusion_format_file: str = like(SourceConfig, "infusion_format_file")
    batch_size: int = option(8, help="Questions (and images to describe) decoding together.")
    engine: typing.Literal["continuous", "plain"] = option(
        "continuous",
        help="continuous: a finished row's slot goes to the next request at once (falls back to "
        "plain for models it cannot drive, with a warning); plain: transformers' generate "
        "on fixed batches.",
    )
    compile_decoding: typing.Literal["auto", True, False] = option(
        "auto",
        help="Compile the continuous engine's decoding step (CUDA graphs): true from the first step, "
        "auto on a GPU after 1000 steps (a short run never waits for the compilation), false never.",
    )
    infer_dtype: typing.Literal["auto", "float16", "bfloat16", "float32"] = like(GeneratorConfig, "infer_dtype")
    image_max_pixels: int = like(GeneratorConfig, "image_max_pixels")
    trust_remote_code: bool = like(GeneratorConfig, "trust_remote_code")
    seed: int = option(42, help="Seed of the answers' sampling, for tasks that sample (the paper's decode greedily).")
    verbose: bool = option(
        False,
        help="Show every library's messages on the console; by default it shows the progress bars, the warnings "
        "that matter and the summary, and the rest goes to the log files in the run's folder.",
    )

    def __post_init__(self):
        if not self.tasks or not all(isinstance(task, str) and task for task in self.tasks):
            raise ValueError(f"`tasks` must be a list of lmms-eval task names; got {self.tasks!r}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"`tasks` names a task twice: {self.tasks!r}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"`limit` must be above 0 (or null for every question); got {self.limit}")
        for name in ("batch_size", "description_max_new_tokens", "image_max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1; got {getattr(self, name)}")
        if self.run_name is not None:
            check_plain_name("run_name", self.run_name)

    @property
    def name(self) -> str:
        """The run's name: ``run_name``, or the model's folder, the adapters' folders and the mode."""
        if self.run_name:
            return self.run_name
        paths = [self.model_name_or_path] + [p for p in (self.adapter_name_or_path or "").split(",") if p.strip()]
        return "+".join(Path(p.strip().rstrip("/")).name for p in paths) + ("-dar" if self.dar else "")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def log_file(self) -> Path:
        return self.run_dir / "log.txt"
