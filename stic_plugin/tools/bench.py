"""``stic-cli bench``: speed of the STIC code paths on this machine's accelerator, as numbers.

Run: ``stic-cli bench`` (random weights with LLaVA-1.5-7B's architecture, built from
``stic_plugin/model_configs``: nothing downloaded), ``stic-cli bench architecture=qwen2-vl-7b``,
``stic-cli bench model_name_or_path=/models/llava-1.5-7b-hf template=llava`` for a checkpoint, or
``stic-cli bench architecture=tiny batch_sizes=[1,2] ...`` on a CPU (a smoke run, not a speed figure).

Measured in one run on one device, after a warm-up (``parts`` picks among them):

1. generation through the ``pref`` path (``Generator.generate_stream``, as ``pref``,
   ``infuse`` and ``dar`` call it), with each engine (``continuous``, ``plain``: transformers'
   ``generate`` on fixed batches) at each batch size; plain at batch 1 is the authors'
   one-image-per-call baseline. Random weights stop anywhere, so output lengths are forced: all equal
   (``new_tokens``, one batch of requests), then drawn per sequence from a spread (``spread_*``, over
   ``spread_batches`` batches of requests, so that finished rows can be refilled), counting only the
   useful tokens; the equal-length rows also give the memory-bandwidth bound of decoding;
2. a ``stic_dpo`` training step against LLaMA-Factory's ``dpo`` step on identical batches (LoRA r=128
   on every linear layer, gradient checkpointing unless switched off): step time, pairs/s, model FLOPs
   utilisation, peak memory;
3. the stage-2 description pass (the same path, description prompts, the spread of lengths);

then prints one table, the projected wall time of the paper's workload (6k images, 5k SFT samples),
and writes every figure with the device name to ``output_json``.
"""

import json
import math
import random
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

from ..commands.config import option


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
    parts: list = option(
        ["generation", "descriptions", "training"],
        help="What to measure: generation (pref's requests, equal lengths and the spread, each engine), descriptions "
        "(the stage-2 pass, with generation's fastest engine and batch size), training (stic_dpo against dpo); the "
        "paper's workload is projected when all three run.",
    )
    engines: list = option(
        ["continuous", "plain"],
        help="Generation engines to measure (continuous, plain, vllm): vllm runs the same requests on vLLM "
        "(installed first: docs/engines.md), on the same weights saved to a folder.",
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
        if not self.parts or any(part not in ("generation", "descriptions", "training") for part in self.parts):
            raise ValueError(f"`parts` must list some of generation, descriptions and training; got {self.parts!r}")
        if "descriptions" in self.parts and "generation" not in self.parts:
            raise ValueError("`parts`: descriptions run with generation's fastest engine, so need generation too")
        if not self.engines or any(engine not in ("continuous", "plain", "vllm") for engine in self.engines):
            raise ValueError(f"`engines` must list some of continuous, plain and vllm; got {self.engines!r}")
        for name in ("new_tokens", "train_pairs", "train_response_tokens", "train_steps", "spread_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1")
        if (self.model_name_or_path is None) != (self.template is None):
            raise ValueError("`model_name_or_path` and `template` go together")


TEMPLATES = {
    "llava-1.5-7b": "llava",
    "llava-v1.6-mistral-7b": "llava_next_mistral",
    "qwen2-vl-7b": "qwen2_vl",
    "tiny": "llava",
}
# Dense bf16 peak of the usual training GPUs, for model FLOPs utilisation (none known: not reported).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12}
PAPER_WORKLOAD = {"pref_images": 6000, "sft_samples": 5000}


def spread_lengths(count: int, low: int, high: int, mean: int, rng: random.Random) -> list[int]:
    """Output lengths like real descriptions: log-normal, clipped to [low, high], mean near ``mean``."""
    sigma = 0.6
    mu = math.log(mean) - sigma**2 / 2
    return [min(high, max(low, round(rng.lognormvariate(mu, sigma)))) for _ in range(count)]


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _random_images(count: int, rng: random.Random):
    from PIL import Image

    sizes = [(640, 480), (480, 640), (800, 600), (500, 500)]
    images = []
    for index in range(count):
        width, height = sizes[index % len(sizes)]
        colour = tuple(rng.randrange(256) for _ in range(3))
        images.append(Image.new("RGB", (width, height), colour))
    return images


def bench_compiles(cfg: BenchConfig) -> bool:
    """The bench compiles from the first (warm-up) step: it measures the compiled speed of long runs."""
    if cfg.compile_decoding == "auto":
        import torch

        return torch.cuda.is_available()
    return bool(cfg.compile_decoding)


def build_model(cfg: BenchConfig, workdir: Path):
    """The model the transformers engines drive (``TransformersModel``): a checkpoint, the tiny model, or a
    random-weight architecture."""
    from ..generation.base import GeneratorSettings
    from ..generation.transformers_engine import TransformersModel

    if cfg.model_name_or_path:
        settings = GeneratorSettings(cfg.model_name_or_path, cfg.template, image_max_pixels=cfg.image_max_pixels)
        return TransformersModel.load(settings)
    if cfg.architecture == "tiny":
        from .fixtures import VLLM_SIZES, build_tiny_llava

        # With vllm among the engines, every engine measures the tiny model vLLM's CPU attention runs (head size 64).
        sizes = VLLM_SIZES if "vllm" in cfg.engines else {}
        folder = build_tiny_llava(workdir / "tiny-llava", **sizes)
        return TransformersModel.load(GeneratorSettings(str(folder), "llava", image_max_pixels=cfg.image_max_pixels))
    return _random_architecture(cfg, workdir)


class BenchEngines:
    """The engines measured on one model, each built anew where a measurement needs it: a fresh continuous
    engine for each batch size (its own cache, not a larger one left by the last run), one vLLM engine on the
    same weights for the whole bench."""

    def __init__(self, loaded, cfg: BenchConfig):
        self.loaded, self.cfg, self.vllm = loaded, cfg, None

    def fresh(self, engine: str):
        """The engine to measure, or None where the model cannot run on it."""
        from ..generation.continuous import unsupported_reason
        from ..generation.transformers_engine import ContinuousGenerator, PlainGenerator

        if engine == "vllm":
            return self.vllm_twin()
        free_memory()
        if engine == "plain":
            return PlainGenerator(self.loaded)
        if unsupported_reason(self.loaded.model):  # the model is generated in plain batches anyway
            return None
        return ContinuousGenerator(self.loaded, compile_decoding=bench_compiles(self.cfg))

    def vllm_twin(self):
        """A vLLM engine on the model's own weights (saved to its folder first when they exist only in memory, as
        the random-weight architectures do), built once per bench run."""
        if self.vllm is not None:
            return self.vllm
        from ..generation.base import GeneratorSettings, create_generator

        cfg, model = self.cfg, self.loaded.model
        folder = cfg.model_name_or_path or model.config.name_or_path  # the folder its config was read from
        if not cfg.model_name_or_path and not any(Path(folder).glob("*.safetensors")):
            model.save_pretrained(folder)
            self.loaded.processor.save_pretrained(folder)
        template = cfg.template or TEMPLATES.get(cfg.architecture, "llava")
        dtype = {"torch.bfloat16": "bfloat16", "torch.float16": "float16"}.get(str(model.dtype), "float32")
        settings = GeneratorSettings(
            str(folder),
            template,
            image_max_pixels=cfg.image_max_pixels,
            infer_dtype=dtype,
            engine="vllm",
            compile_decoding=bench_compiles(cfg),
            seed=cfg.seed,
        )
        import torch

        if torch.cuda.is_available():  # the transformers model stays loaded: vLLM gets most of what is free
            free_memory()
            free, total = torch.cuda.mem_get_info()
            settings.gpu_memory_utilization = round(0.9 * free / total, 3)
        self.vllm = create_generator(settings)
        return self.vllm

    def close_vllm(self) -> None:
        """Stop the vLLM engine (its processes end, and with them its memory)."""
        if self.vllm is not None:
            self.vllm.close()
            self.vllm = None


def _random_architecture(cfg: BenchConfig, workdir: Path):
    """The real architecture from the shipped config, random bf16 weights built on the device; a stand-in
    tokenizer (trained here) whose image token takes the place of the real one."""
    import torch
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from llamafactory.model.patcher import patch_processor
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from ..assets import model_configs_dir
    from ..generation.transformers_engine import TransformersModel, process_device
    from .fixtures import llava_tokenizer, qwen_tokenizer

    folder = model_configs_dir() / cfg.architecture
    qwen = cfg.architecture.startswith("qwen")
    tokenizer = qwen_tokenizer() if qwen else llava_tokenizer()
    local = workdir / cfg.architecture
    local.mkdir(parents=True, exist_ok=True)
    config_values = json.loads((folder / "config.json").read_text())
    if qwen:
        for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            token = {
                "image_token_id": "<|image_pad|>",
                "video_token_id": "<|video_pad|>",
                "vision_start_token_id": "<|vision_start|>",
                "vision_end_token_id": "<|vision_end|>",
            }[key]
            config_values[key] = tokenizer.convert_tokens_to_ids(token)
    else:
        config_values["image_token_index"] = tokenizer.convert_tokens_to_ids("<image>")
        config_values["pad_token_id"] = tokenizer.pad_token_id
    (local / "config.json").write_text(json.dumps(config_values))
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    (local / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    tokenizer.save_pretrained(local)
    processor = AutoProcessor.from_pretrained(local)
    model_args = ModelArguments(model_name_or_path=str(local), image_max_pixels=cfg.image_max_pixels)
    patch_processor(processor, tokenizer, model_args)

    device = process_device()
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    config = AutoConfig.from_pretrained(local)
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=TEMPLATES[cfg.architecture]))
    return TransformersModel(model, tokenizer, processor, template)


def bench_generation(
    engines: BenchEngines,
    cfg: BenchConfig,
    prompts: list[str],
    lengths_for,
    label: str,
    batches_of_requests: int,
    generations_per_image: int = 2,
) -> list[dict]:
    """Useful tokens/s and images/s of each engine at each batch size on the same requests.

    ``lengths_for(n)`` gives the forced output lengths of n requests; ``batches_of_requests`` times the
    batch size requests are generated (the plain engine in consecutive batches, the continuous engine
    refilling its rows). ``generations_per_image``: 2 for pref (chosen and rejected, as ``pref`` sends
    them: half the pairs on one image object, the others on a second one standing for the corrupted
    image), 1 for descriptions.
    """
    import torch

    from ..generation.base import Request, user_turn

    rng = random.Random(cfg.seed)
    rows = []
    for batch in cfg.batch_sizes:
        count = batch * batches_of_requests
        originals = _random_images(-(-count // generations_per_image), rng)
        images = []
        for index in range(count):
            image = originals[index // generations_per_image]
            corrupted_stand_in = index % generations_per_image == 1 and (index // generations_per_image) % 2 == 1
            images.append(image.copy() if corrupted_stand_in else image)
        lengths = lengths_for(count)

        def requests(limits, images=images):
            return [
                Request.single(
                    user_turn(prompts[i % len(prompts)]), images[i], key=str(i), max_new_tokens=n, min_new_tokens=n
                )
                for i, n in enumerate(limits)
            ]

        for engine in cfg.engines:
            runner = engines.fresh(engine)
            if runner is None:
                continue
            timed = requests(lengths)
            warmup_started = time.perf_counter()
            try:
                # Warm-up on every request, cut short: the cache grows to its final size and each shape
                # compiles before the clock starts.
                for _ in range(cfg.warmup_steps):
                    runner.generate(
                        requests([min(8, n) for n in lengths]), max(lengths), 0.2, None, seed=cfg.seed, slots=batch
                    )
                _sync()
                started = time.perf_counter()
                warmup_seconds = started - warmup_started
                outputs = runner.generate(timed, max(lengths), 0.2, None, seed=cfg.seed, slots=batch)
                _sync()
                seconds = time.perf_counter() - started
            except Exception as err:  # noqa: BLE001 - out of memory at one size: record it, measure the rest
                if not _out_of_memory(err):
                    raise
                rows.append(
                    {
                        "run": label,
                        "engine": engine,
                        "batch_size": batch,
                        "requests": count,
                        "error": f"out of memory: {err}".splitlines()[0][:200],
                    }
                )
                continue
            useful = sum(output.tokens for output in outputs)
            row = {
                "run": label,
                "engine": engine,
                "batch_size": batch,
                "requests": count,
                "seconds": round(seconds, 4),
                "warmup_seconds": round(warmup_seconds, 2),  # compilation included: what a short run pays
                "useful_tokens": useful,
                "forced_tokens": sum(lengths),
                "tokens_per_second": round(useful / seconds, 2),
                "images_per_second": round(count / generations_per_image / seconds, 3),
                "longest": max(lengths),
                "mean_prompt_tokens": round(sum(len(engines.loaded.encode(r)) for r in timed) / count, 1),
            }
            if engine == "continuous":
                stats = runner.last_run_stats
                row["slot_occupancy"] = round(stats["busy_slot_steps"] / max(1, stats["steps"] * stats["slots"]), 4)
                row["kv_capacity"] = stats["capacity"]
                row["shared_prefix_runs"] = stats["prefix_runs"]
            elif engine == "vllm":  # vLLM refills its rows as they end; it reports no busy share
                row["slot_occupancy"] = None
                if torch.cuda.is_available():  # its memory goes back to the transformers engines' next runs
                    engines.close_vllm()
            else:  # each fixed batch decodes until its longest row ends
                groups = [lengths[i : i + batch] for i in range(0, count, batch)]
                row["slot_occupancy"] = round(sum(lengths) / sum(len(g) * max(g) for g in groups), 4)
            rows.append(row)
            # As each run ends: a bench stopped by a time limit still shows how far it got, and at what cost.
            print(
                f"{label}, {engine}, batch {batch}: {row['tokens_per_second']:.1f} tokens/s in {seconds:.1f} s "
                f"(warm-up {warmup_seconds:.1f} s)",
                flush=True,
            )
    return rows


def free_memory() -> None:
    """What engines no longer held leave behind, given back (a finished engine's cache)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _out_of_memory(err: Exception) -> bool:
    import torch

    from ..generation.continuous import CacheTooLarge

    return isinstance(err, (torch.cuda.OutOfMemoryError, CacheTooLarge))


def measured(rows: list[dict]) -> list[dict]:
    """The rows that hold figures (not an out-of-memory note)."""
    return [row for row in rows if "error" not in row]


def memory_bandwidth() -> float:
    """Bytes/s of a large copy (read + write) in the memory the bench's model is in: the GPU's, else the CPU's
    main memory (a smaller buffer there, past most caches; a CPU's bound is a smoke figure like its speeds)."""
    import torch

    size = 2 * 2**30 if torch.cuda.is_available() else 256 * 2**20
    source = torch.empty(size, dtype=torch.uint8, device="cuda" if torch.cuda.is_available() else "cpu")
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    _sync()
    started = time.perf_counter()
    repeats = 10
    for _ in range(repeats):
        target.copy_(source)
    _sync()
    seconds = time.perf_counter() - started
    del source, target
    free_memory()
    return 2 * size * repeats / seconds


def decode_bound(loaded, row: dict, bandwidth: float) -> float:
    """Tokens/s if every decoding step only read the weights and each row's keys and values at the
    bandwidth: batch / ((weight bytes + batch x mean context x K/V bytes per token) / bandwidth)."""
    model = loaded.model
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    text = model.config.get_text_config(decoder=True)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    element = next(model.parameters()).element_size()
    per_token = 2 * text.num_hidden_layers * kv_heads * head_dim * element
    context = row["mean_prompt_tokens"] + row["longest"] / 2
    batch = row["batch_size"]
    return batch / ((weights + batch * context * per_token) / bandwidth)


def bench_training(loaded, cfg: BenchConfig, workdir: Path) -> list[dict]:
    """One LoRA model; LLaMA-Factory's dpo step and the stic_dpo step on identical batches."""
    import torch
    from llamafactory.data import PairwiseDataCollatorWithPadding
    from llamafactory.hparams.parser import _parse_train_args
    from llamafactory.model.adapter import init_adapter
    from llamafactory.model.model_utils.checkpointing import prepare_model_for_training
    from llamafactory.train.dpo.trainer import CustomDPOTrainer

    from ..generation.base import Request, user_turn
    from ..train.trainer import SticDPOTrainer

    model, tokenizer = loaded.model, loaded.tokenizer
    cuda = model.device.type == "cuda"
    common = dict(
        model_name_or_path="unused",
        template="llava",
        output_dir=str(workdir / "train"),
        do_train=True,
        finetuning_type="lora",
        lora_rank=128,
        lora_alpha=256,
        lora_target="all",
        report_to="none",
        bf16=cuda and model.dtype == torch.bfloat16,
        use_cpu=not cuda,
        per_device_train_batch_size=cfg.train_pairs,
    )
    model_args, _, training_args, dpo_args, _ = _parse_train_args({**common, "stage": "dpo"})
    stic_args = _parse_train_args({**common, "stage": "stic_dpo"})[3]
    model = init_adapter(model.config, model, model_args, dpo_args, is_trainable=True)
    model_args.disable_gradient_checkpointing = not cfg.train_gradient_checkpointing
    prepare_model_for_training(model, model_args)
    model.train()

    rng = random.Random(cfg.seed)
    images = _random_images(cfg.train_pairs, rng)
    features = []
    vocab = len(tokenizer)
    for image in images:
        prompt = loaded.encode(Request.single(user_turn("Illustrate the details of the picture."), image))
        chosen = [rng.randrange(10, vocab) for _ in range(cfg.train_response_tokens)] + [loaded.stop_token_ids[0]]
        rejected = [rng.randrange(10, vocab) for _ in range(cfg.train_response_tokens)] + [loaded.stop_token_ids[0]]
        features.append(
            {
                "chosen_input_ids": prompt + chosen,
                "chosen_attention_mask": [1] * (len(prompt) + len(chosen)),
                "chosen_labels": [-100] * len(prompt) + chosen,
                "rejected_input_ids": prompt + rejected,
                "rejected_attention_mask": [1] * (len(prompt) + len(rejected)),
                "rejected_labels": [-100] * len(prompt) + rejected,
                "images": [image],
                "videos": None,
                "audios": None,
            }
        )
    collator = PairwiseDataCollatorWithPadding(
        template=loaded.template,
        model=model,
        pad_to_multiple_of=8,
        label_pad_token_id=-100,
        tokenizer=tokenizer,
        processor=loaded.processor,
    )
    batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in collator(features).items()}
    tokens = int(batch["input_ids"].numel())
    parameters = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-7)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name()), None) if cuda else None

    trainers = {
        stage: cls(
            model=model,
            ref_model=None,
            args=training_args,
            finetuning_args=args,
            data_collator=collator,
            tokenizer=tokenizer,
            processor=None,
        )
        for stage, args, cls in (("dpo", dpo_args, CustomDPOTrainer), ("stic_dpo", stic_args, SticDPOTrainer))
    }
    times = {stage: [] for stage in trainers}
    peaks = {stage: 0 for stage in trainers}
    # The two trainers take turns, step by step, so that drift (clocks, caches) affects both alike.
    for step in range(cfg.warmup_steps + cfg.train_steps):
        for stage, trainer in trainers.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            _sync()
            started = time.perf_counter()
            loss, _ = trainer.get_batch_loss_metrics(model, dict(batch))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync()
            if step >= cfg.warmup_steps:
                times[stage].append(time.perf_counter() - started)
            if cuda:
                peaks[stage] = max(peaks[stage], torch.cuda.max_memory_allocated())
    rows = []
    for stage in trainers:
        seconds = sorted(times[stage])[len(times[stage]) // 2]  # the median step
        # Model FLOPs per step: policy forward (2NT) + gradients w.r.t. activations through the frozen
        # base (2NT) + reference forward (2NT); recomputation by checkpointing not counted, as usual.
        flops = 6 * parameters * tokens
        rows.append(
            {
                "stage": stage,
                "step_seconds": round(seconds, 4),
                "pairs_per_second": round(cfg.train_pairs / seconds, 3),
                "tokens_per_step": tokens,
                "parameters": parameters,
                "mfu": round(flops / seconds / peak, 4) if peak else None,
                "peak_memory_gib": round(peaks[stage] / 2**30, 2) if cuda else None,
            }
        )
    rows.append(
        {"stage": "stic_dpo vs dpo", "step_time_ratio": round(rows[1]["step_seconds"] / rows[0]["step_seconds"], 4)}
    )
    return rows


def device_name() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def project(pref_best: dict, describe_best: dict, stic_step: dict, cfg: BenchConfig) -> dict:
    """The paper's workload on this device from the measured rates (spread-of-lengths rates)."""
    mean = cfg.spread_mean
    pref_tokens = PAPER_WORKLOAD["pref_images"] * 2 * mean
    describe_tokens = PAPER_WORKLOAD["sft_samples"] * mean
    pref_s = pref_tokens / pref_best["tokens_per_second"]
    describe_s = describe_tokens / describe_best["tokens_per_second"]
    stage1_s = PAPER_WORKLOAD["pref_images"] / stic_step["pairs_per_second"]
    # An SFT sample costs about a third of a preference pair (one sequence, no reference pass).
    stage2_s = PAPER_WORKLOAD["sft_samples"] / (3 * stic_step["pairs_per_second"])
    total = pref_s + describe_s + stage1_s + stage2_s
    return {
        "pref_generation_s": round(pref_s),
        "stage1_training_s": round(stage1_s),
        "stage2_descriptions_s": round(describe_s),
        "stage2_training_s": round(stage2_s),
        "total_hours": round(total / 3600, 2),
    }


def run_bench(cfg: BenchConfig) -> int:
    import torch

    from ..assets import default_prompt_file, read_prompts

    if not torch.cuda.is_available() and cfg.architecture != "tiny" and not cfg.model_name_or_path:
        raise ValueError(
            f"no GPU here: a random {cfg.architecture} would be built in CPU memory. For a smoke run on a CPU use "
            "architecture=tiny with small values (see `stic-cli bench --help`)."
        )

    workdir = Path(tempfile.mkdtemp(prefix="stic-bench-"))
    loaded = build_model(cfg, workdir)
    engines = BenchEngines(loaded, cfg)
    preferred = read_prompts(default_prompt_file("preferred"), "preferred")
    bad = read_prompts(default_prompt_file("hallucination"), "hallucination")
    captioning = read_prompts(default_prompt_file("captioning"), "captioning")
    rng = random.Random(cfg.seed)

    def spread(n):
        return spread_lengths(n, cfg.spread_min, cfg.spread_max, cfg.spread_mean, rng)

    equal, spread_rows, describe, training, bandwidth = [], [], [], [], None
    if "generation" in cfg.parts:
        equal = bench_generation(
            engines, cfg, preferred + bad, lambda n: [cfg.new_tokens] * n, "pref, equal lengths", 1
        )
        bandwidth = memory_bandwidth()
        for row in measured(equal):
            row["decode_bound_tokens_per_second"] = round(decode_bound(loaded, row, bandwidth), 1)
            row["fraction_of_bound"] = round(row["tokens_per_second"] / row["decode_bound_tokens_per_second"], 4)
        spread_rows = bench_generation(
            engines, cfg, preferred + bad, spread, "pref, spread of lengths", cfg.spread_batches
        )
    best = max(measured(spread_rows), key=lambda row: row["tokens_per_second"], default=None)
    if "descriptions" in cfg.parts:
        if best is None:
            raise RuntimeError("every generation run ran out of memory: try smaller batch_sizes or spread_max")
        describe_cfg = BenchConfig(**{**cfg.__dict__, "batch_sizes": [best["batch_size"]], "engines": [best["engine"]]})
        describe = bench_generation(
            engines, describe_cfg, captioning, spread, "stage-2 descriptions", cfg.spread_batches, 1
        )
    engines.close_vllm()
    free_memory()  # the generation cache's memory goes to training
    if "training" in cfg.parts:
        training = bench_training(loaded, cfg, workdir)
    projection = None
    if best is not None and describe and training:
        projection = project(best, (measured(describe) or [best])[0], training[1], cfg)

    result = {
        "device": device_name(),
        "architecture": cfg.model_name_or_path or cfg.architecture,
        "memory_bandwidth_gb_per_s": round(bandwidth / 1e9, 1) if bandwidth else None,
        "config": cfg.__dict__,
        "generation": equal + spread_rows + describe,
        "training": training,
        "projection_paper_workload": projection,
    }
    Path(cfg.output_json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(format_table(result))
    print(f"figures: {Path(cfg.output_json).absolute()}")
    return 0


def generation_lines(rows: list[dict]) -> list[str]:
    lines = [
        f"{'generation':26} {'engine':>10} {'batch':>6} {'tokens/s':>10} {'images/s':>9} {'seconds':>8} "
        f"{'busy':>6} {'of bound':>9}"
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['run']:26} {row['engine']:>10} {row['batch_size']:>6} {'out of memory':>10}")
            continue
        busy = f"{row['slot_occupancy']:.0%}" if row.get("slot_occupancy") is not None else "-"
        bound = f"{row['fraction_of_bound']:.0%}" if "fraction_of_bound" in row else "-"
        lines.append(
            f"{row['run']:26} {row['engine']:>10} {row['batch_size']:>6} {row['tokens_per_second']:>10.1f} "
            f"{row['images_per_second']:>9.2f} {row['seconds']:>8.2f} {busy:>6} {bound:>9}"
        )
    return lines


def format_table(result: dict) -> str:
    """The table of what was measured (the parts that ran)."""
    lines = [f"stic-cli bench on {result['device']}, {result['architecture']}"]
    if result["generation"]:
        lines += ["", *generation_lines(result["generation"])]
    if result["training"]:
        lines += ["", f"{'training step':16} {'seconds':>8} {'pairs/s':>8} {'MFU':>6} {'peak GiB':>9}"]
        for row in result["training"][:2]:
            mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
            memory = f"{row['peak_memory_gib']:.1f}" if row["peak_memory_gib"] is not None else "-"
            lines.append(
                f"{row['stage']:16} {row['step_seconds']:>8.3f} {row['pairs_per_second']:>8.2f} {mfu:>6} {memory:>9}"
            )
        lines.append(f"stic_dpo / dpo step time: {result['training'][2]['step_time_ratio']:.3f}")
    p = result["projection_paper_workload"]
    if p is None:
        return "\n".join(lines)
    lines += [
        "",
        f"paper workload (6k images, 5k SFT samples) projected: {p['total_hours']:.2f} h "
        f"(pref {p['pref_generation_s']} s, stage 1 {p['stage1_training_s']} s, descriptions "
        f"{p['stage2_descriptions_s']} s, stage 2 {p['stage2_training_s']} s)",
    ]
    return "\n".join(lines)
