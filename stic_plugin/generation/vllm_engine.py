"""``engine: vllm``: the generator contract (``base.Generator``) on vLLM, the field's engine.

Prompts are the token ids of the LLaMA-Factory template the model trains with; each image stays one
placeholder token, which vLLM expands with its own processor (as LLaMA-Factory's ``chat/vllm_engine.py``
feeds vLLM). Every request samples from its own seed, derived from (run seed, request key), so a text
does not depend on the batch size, the other requests or a resume.
"""

import copy
import logging
import shutil
import tempfile
import weakref
from pathlib import Path

from ..model_check import check_template_fits, model_not_loaded
from .base import Generation, Generator, GeneratorSettings, Request
from .transformers_engine import clean_response, generation_prompt, image_token_ids, readable_weights, weight_folders

logger = logging.getLogger(__name__)

VLLM_VERSION = "0.26.0"
INSTALL_HINT = (
    "`engine: vllm` needs vLLM " + VLLM_VERSION + ": bash scripts/install_vllm.sh .venv (a GPU or a CPU build, "
    "LLaMA-Factory's web UI kept working), or on a GPU pip install -e '.[vllm]' (pip then downgrades gradio "
    "to 5.1). docs/engines.md says more."
)
# Model types whose language model takes a LoRA adapter in vLLM 0.26; other adapters are merged first.
LORA_MODEL_TYPES = {"llava", "qwen2_vl", "qwen2_5_vl"}
# vLLM caps a logit bias at 100 in magnitude: enough to rule a token out at any temperature we use.
BANNED_BIAS = -100.0


def vllm_dtype(infer_dtype: str, config, gpus_elsewhere: bool = False) -> str:
    """``infer_dtype`` as LLaMA-Factory reads it for the transformers engines: auto is the checkpoint's bf16 on a
    GPU that has it, else fp16 on a GPU, fp32 on a CPU. (vLLM's own "auto" would keep an fp16 checkpoint in
    fp16 on a CPU too.) ``gpus_elsewhere``: the engines run on GPUs this process cannot see (Ray's workers),
    taken to have bf16 (Ampere or newer: set ``infer_dtype`` for older ones)."""
    if infer_dtype != "auto":
        return infer_dtype
    if gpus_elsewhere:
        checkpoint = str(getattr(config, "torch_dtype", None) or "bfloat16").removeprefix("torch.")
        return "bfloat16" if checkpoint == "bfloat16" else "float16"
    from llamafactory.extras.misc import infer_optim_dtype

    return str(infer_optim_dtype(getattr(config, "torch_dtype", None))).removeprefix("torch.")


# Model types vLLM 0.26 has, but cannot run on STIC's requests: why.
CANNOT_RUN = {
    "gemma3": "its Gemma 3 processor loses the image when a newline follows it, as in LLaMA-Factory's prompts "
    "(RuntimeError: Expected there to be 1 prompt placeholders ... but instead found 0)",
    "llava_next_video": "its LLaVA-NeXT-Video takes videos only (At most 0 image(s) may be provided in one prompt)",
}


def cpu_convolution_refused(config, on_gpu: bool) -> str | None:
    """Why vLLM's CPU build cannot load this model here, if it cannot: on a CPU with AMX tiles it packs every
    short convolution of the text model (LFM2's) for a kernel that takes a width of 4 only, and stops with
    "causal_conv1d_weight_pack: support only width of 4" otherwise (vLLM 0.26; LFM2's width is 3)."""
    if on_gpu:
        return None
    import torch

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    width = getattr(text, "conv_L_cache", None)
    if width is None or width == 4 or not torch.cpu._is_amx_tile_supported():
        return None
    return f"its CPU build packs short convolutions for AMX with a width of 4 only, and this model's is {width}"


def refuse_unsupported(config, vllm, on_gpu: bool = True) -> None:
    """Stop, before anything is loaded, for a model whose architecture this vLLM does not have (Llama 3.2 Vision
    in vLLM 0.26) or cannot run on STIC's requests (``CANNOT_RUN``), or that its CPU build cannot load on this
    CPU (``on_gpu`` false), naming it and the engines that drive it."""
    architectures = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", "?")
    supported = set(vllm.ModelRegistry.get_supported_archs())
    reason = CANNOT_RUN.get(model_type) or cpu_convolution_refused(config, on_gpu)
    if architectures and not supported.intersection(architectures):
        reason = "it does not have this architecture"
    if reason:
        raise ValueError(
            f"vLLM {vllm.__version__} cannot drive {'/'.join(architectures)} (model type {model_type}): {reason}; "
            "use `engine: continuous` or `engine: plain` for this model"
        )


def banned_logit_bias(tokenizer, template, config) -> dict[int, float]:
    """vLLM's logit bias that rules out what must never be written: the image tokens (the template's, when the
    vocabulary has it, and the one the model's image features replace) and ids past the tokenizer."""
    vocab = config.get_text_config().vocab_size
    banned = image_token_ids(tokenizer, template, config) + list(range(len(tokenizer), vocab))
    return {int(token): BANNED_BIAS for token in banned if token < vocab}


def vllm_seed(seed: int, key: str) -> int:
    """The seed of one request's samples: a function of the run's seed and the request's key only."""
    from .continuous import request_key

    return request_key(seed, key)


def require_vllm(verbose: bool = False):
    """vLLM, imported; its console messages limited to warnings unless ``verbose`` (or VLLM_LOGGING_LEVEL)."""
    import os

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "WARNING")  # its engine processes inherit it
    try:
        import vllm
    except ImportError as err:
        raise ValueError(INSTALL_HINT) from err
    if vllm.__version__.split("+")[0] != VLLM_VERSION:
        logger.warning("vLLM %s is installed; this engine is tested with %s", vllm.__version__, VLLM_VERSION)
    return vllm


# Vision towers that vLLM 0.26 wraps in a ``vision_model`` module (its CLIP, SigLIP and LFM2's SigLIP 2), by the
# model type of the checkpoint's vision_config; other towers (Pixtral, InternViT...) keep transformers' names.
TOWERS_IN_VISION_MODEL = {"clip_vision_model", "siglip_vision_model", "siglip2_vision_model"}


def vision_model_type(config) -> str | None:
    """The model type of a configuration's vision tower (None for a model without a vision_config)."""
    vision = getattr(config, "vision_config", None)
    if isinstance(vision, dict):
        return vision.get("model_type")
    return getattr(vision, "model_type", None)


def vision_key_renames(keys, tower: str | None) -> dict[str, str]:
    """Checkpoint keys to rename for vLLM: a CLIP or SigLIP tower (``tower``: the vision_config's model type)
    that transformers 5 saved as ``vision_tower.embeddings.*`` is ``vision_tower.vision_model.embeddings.*`` to
    vLLM 0.26. Other towers are read as they are saved."""
    if tower not in TOWERS_IN_VISION_MODEL:
        return {}
    renames = {}
    for key in keys:
        head, found, rest = key.partition("vision_tower.")
        if found and not head.rstrip(".").endswith("vision_tower") and not rest.startswith("vision_model."):
            if head in ("", "model."):
                renames[key] = f"{head}vision_tower.vision_model.{rest}"
    return renames


def vllm_ready_folder(model_dir: str, scratch: Path, tower: str | None) -> str:
    """``model_dir`` itself when vLLM reads its weights as they are; otherwise a folder in ``scratch`` with
    links to every file, and rewritten copies of just the weight files whose vision keys need renaming
    (``tower``: the model type of its vision tower)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    folder = Path(model_dir)
    shards = sorted(folder.glob("*.safetensors"))
    renames_per_shard = {}
    for shard in shards:
        with safe_open(str(shard), "pt") as handle:
            renames = vision_key_renames(handle.keys(), tower)
        if renames:
            renames_per_shard[shard.name] = renames
    if not renames_per_shard:
        return model_dir
    view = scratch / "vllm-view"
    view.mkdir(parents=True)
    logger.info("renaming the vision tower's weights for vLLM in a copy of %d weight file(s)", len(renames_per_shard))
    for path in folder.iterdir():
        if path.name in renames_per_shard:
            renames = renames_per_shard[path.name]
            tensors = load_file(str(path))
            save_file({renames.get(k, k): v for k, v in tensors.items()}, str(view / path.name), {"format": "pt"})
        elif path.name == "model.safetensors.index.json":
            index = json.loads(path.read_text())
            every = {k: v for renames in renames_per_shard.values() for k, v in renames.items()}
            index["weight_map"] = {every.get(k, k): v for k, v in index["weight_map"].items()}
            (view / path.name).write_text(json.dumps(index, indent=2))
        else:
            (view / path.name).symlink_to(path.resolve())
    return str(view)


def images_for_vllm(plugin, images: list, image_max_pixels: int, image_min_pixels: int) -> list:
    """The images scaled and converted as LLaMA-Factory's plugin does for training, as bare pixels.

    LLaMA-Factory's own vLLM engine scales images with this (private) helper too; it is the one place where
    ``image_max_pixels`` is applied, so generation sees training's images. vLLM then turns every PIL image it
    is given by the orientation its metadata names (EXIF, or XMP), which training does not do, nor did the
    authors' LLaVA code: a photo whose EXIF says "rotate" would be described turned, and trained on unturned.
    Copies without metadata leave vLLM nothing to turn by."""
    regularized = plugin._regularize_images(
        images, image_max_pixels=image_max_pixels, image_min_pixels=image_min_pixels
    )["images"]
    bare = []
    for image in regularized:
        copy = image.copy()  # the plugin may hand back the caller's own image: its metadata stays
        copy.info = {}
        bare.append(copy)
    return bare


def merged_model(cfg, scratch: Path) -> str:
    """The model with its adapters merged, saved in ``scratch`` (for models whose adapters vLLM cannot apply)."""
    from llamafactory.hparams import get_infer_args
    from llamafactory.model import load_model, load_tokenizer

    args = dict(
        model_name_or_path=cfg.model_name_or_path,
        adapter_name_or_path=cfg.adapter_name_or_path,
        template=cfg.template,
        trust_remote_code=cfg.trust_remote_code,
        infer_dtype=cfg.infer_dtype,
    )
    model_args, _, finetuning_args, _ = get_infer_args(args)
    model_args.device_map = {"": "cpu"}
    tokenizer_module = load_tokenizer(model_args)
    model = load_model(tokenizer_module["tokenizer"], model_args, finetuning_args, is_trainable=False)
    out = scratch / "merged"
    model.save_pretrained(out)
    tokenizer_module["processor"].save_pretrained(out)
    del model
    return str(out)


class VllmGenerator(Generator):
    """The generator contract on a vLLM ``LLMEngine`` in this process."""

    engine = "vllm"

    def __init__(self, cfg: GeneratorSettings):
        vllm = require_vllm(cfg.verbose)
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import get_infer_args
        from llamafactory.model import load_config, load_tokenizer

        args = dict(model_name_or_path=cfg.model_name_or_path, template=cfg.template)
        args.update(trust_remote_code=cfg.trust_remote_code, infer_dtype=cfg.infer_dtype)
        if cfg.image_max_pixels:
            args["image_max_pixels"] = int(cfg.image_max_pixels)
        model_args, data_args, _, _ = get_infer_args(args)
        try:
            config = load_config(model_args)
            refuse_unsupported(config, vllm, on_gpu=self.generates_on_gpu())
            tokenizer_module = load_tokenizer(model_args)
        except OSError as err:
            raise OSError(model_not_loaded(cfg.model_name_or_path, err)) from err
        self.tokenizer, self.processor = tokenizer_module["tokenizer"], tokenizer_module["processor"]
        if self.processor is None:
            raise ValueError(f"{cfg.model_name_or_path} has no image processor: STIC needs a vision-language model")
        self.template = get_template_and_fix_tokenizer(self.tokenizer, data_args)
        if self.template.mm_plugin.image_token is None:
            raise ValueError(f"template `{cfg.template}` has no image support; use the template of your VLM")
        check_template_fits(self.template, self.processor, config, cfg.template, cfg.model_name_or_path)
        # vLLM expands each image placeholder itself. LLaMA-Factory hands out one template object per name,
        # shared by everything in the process: the change goes to copies.
        self.template = copy.copy(self.template)
        self.template.mm_plugin = copy.copy(self.template.mm_plugin)
        self.template.mm_plugin.expand_mm_tokens = False
        self.image_max_pixels = model_args.image_max_pixels
        self.image_min_pixels = model_args.image_min_pixels
        self.stop_token_ids = self.template.get_stop_token_ids(self.tokenizer)

        # Temporary model folders (a merged model, renamed weight files) go in the system's temporary folder
        # (TMPDIR), and are removed by close(), or at the latest when the process ends.
        self.scratch = Path(tempfile.mkdtemp(prefix="stic-vllm-"))
        weakref.finalize(self, shutil.rmtree, str(self.scratch), True)
        model_dir, self.lora = cfg.model_name_or_path, None
        adapters = [p.strip() for p in (cfg.adapter_name_or_path or "").split(",") if p.strip()]
        model_type = getattr(config, "model_type", "?")
        if adapters and (
            len(adapters) > 1
            or model_type not in LORA_MODEL_TYPES
            or adapter_outside_language_model(adapters[0])
            or not plain_lora_vllm_takes(adapters[0])
        ):
            logger.warning(
                "vLLM %s applies one adapter, to the language model of %s: merging the %d adapter(s) of this "
                "%s model into a temporary copy of the model",
                VLLM_VERSION,
                "/".join(sorted(LORA_MODEL_TYPES)),
                len(adapters),
                model_type,
            )
            with readable_weights(weight_folders(cfg)):
                model_dir = merged_model(cfg, self.scratch)
        elif adapters:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, adapters[0])
        if Path(model_dir).is_dir():
            with readable_weights([model_dir]):
                model_dir = vllm_ready_folder(model_dir, self.scratch, vision_model_type(config))

        self.logit_bias = banned_logit_bias(self.tokenizer, self.template, config)

        import torch

        on_gpu = self.generates_on_gpu()
        if on_gpu and torch.cuda.is_available():
            show_this_process_its_gpus(cfg.tensor_parallel_size, torch.cuda.device_count())
        compile_graphs = cfg.compile_decoding if cfg.compile_decoding != "auto" else on_gpu
        engine_args = dict(
            model=model_dir,
            tokenizer=model_dir,
            trust_remote_code=cfg.trust_remote_code,
            dtype=vllm_dtype(cfg.infer_dtype, config, gpus_elsewhere=on_gpu and not torch.cuda.is_available()),
            seed=cfg.seed,
            tensor_parallel_size=cfg.tensor_parallel_size,
            enforce_eager=not compile_graphs,
            limit_mm_per_prompt={"image": 4},  # as LLaMA-Factory's vLLM engine: a dar question may show several
            enable_lora=self.lora is not None,
            disable_log_stats=True,
        )
        if on_gpu:
            engine_args["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            # A prompt prefilled in chunks makes vLLM rewind the request's seeded generator, which CPU
            # generators refuse ("CPU Generator does not use offset"); whole prompts need no rewind.
            engine_args["enable_chunked_prefill"] = False
        if self.lora is not None:
            engine_args["max_lora_rank"] = lora_rank(adapters[0])
        self.engine_args = engine_args
        self.llm = self.start_engine(vllm)
        self._requests = 0

    def generates_on_gpu(self) -> bool:
        """Whether the engines run on GPUs: this process's (the Ray executor asks its cluster)."""
        import torch

        return torch.cuda.is_available()

    def start_engine(self, vllm):
        """The engine of this process (the Ray executor starts its engines in Ray's workers instead). Its processes
        end with this one, and leave Ctrl-C to it: it stops them in order (``lifetime``)."""
        from ..lifetime import following_this_process

        with following_this_process():
            return vllm.LLMEngine.from_engine_args(vllm.EngineArgs(**self.engine_args))

    last_run_stats: dict = {}

    def close(self) -> None:
        """Stop vLLM's engine processes and remove the temporary model folders."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            shutdown = getattr(getattr(llm, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
        shutil.rmtree(getattr(self, "scratch", ""), ignore_errors=True)

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit, modules may be gone already
            pass

    def prompt(self, request: Request) -> dict:
        """The request as vLLM's input: template token ids with one placeholder per image, and the images
        scaled as LLaMA-Factory scales them for training."""
        plugin = self.template.mm_plugin
        messages = plugin.process_messages(request.messages, request.images, [], [], self.processor)
        ids = generation_prompt(self.template, self.tokenizer, messages, request.system)
        prompt = {"prompt_token_ids": ids}
        if request.images:
            images = images_for_vllm(plugin, request.images, self.image_max_pixels, self.image_min_pixels)
            prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        return prompt

    def sampling(self, request: Request, max_new_tokens: int, temperature, top_p, top_k, seed: int, index: int):
        from vllm import SamplingParams

        return SamplingParams(**self.sampling_keys(request, max_new_tokens, temperature, top_p, top_k, seed, index))

    def sampling_keys(
        self, request: Request, max_new_tokens: int, temperature, top_p, top_k, seed: int, index: int
    ) -> dict:
        """The keys of one request's ``SamplingParams``."""
        key = request.key if request.key is not None else str(index)
        sampling = temperature is not None and temperature > 0
        return dict(
            n=1,
            temperature=temperature if sampling else 0.0,
            top_p=top_p if (sampling and top_p is not None) else 1.0,
            top_k=(top_k or 0) if sampling else -1,
            seed=vllm_seed(seed, key) if sampling else None,
            max_tokens=request.max_new_tokens or max_new_tokens,
            min_tokens=request.min_new_tokens,
            stop_token_ids=list(self.stop_token_ids),
            logit_bias=self.logit_bias,
            skip_special_tokens=True,
            detokenize=False,
        )

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        """(request, Generation) for each request, in the order they finish; at most ``slots`` requests
        (default: all of a list, 64 for other iterables) are in vLLM's hands at a time, so that results
        reach the caller, and its files, while the rest of a long stream is still being read."""
        if slots is None:
            slots = len(requests) if isinstance(requests, (list, tuple)) else 64
        slots = max(1, slots)
        base_seed = 0 if seed is None else seed
        pending = iter(enumerate(requests))
        in_flight: dict[str, Request] = {}
        try:
            yield from self._run(pending, in_flight, slots, max_new_tokens, temperature, top_p, top_k, base_seed)
        finally:  # the caller stopped early, or something failed: nothing of this call stays in vLLM's hands
            if in_flight and self.llm is not None:
                self.llm.abort_request(list(in_flight))

    def _run(self, pending, in_flight: dict, slots: int, max_new_tokens, temperature, top_p, top_k, base_seed: int):
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < slots:
                item = next(pending, None)
                if item is None:
                    exhausted = True
                    break
                index, request = item
                request_id = f"stic-{self._requests}"
                self._requests += 1
                self.llm.add_request(
                    request_id,
                    self.prompt(request),
                    self.sampling(request, max_new_tokens, temperature, top_p, top_k, base_seed, index),
                    lora_request=self.lora,
                )
                in_flight[request_id] = request
            if not in_flight:
                return
            for output in self.llm.step():
                if output.finished and output.request_id in in_flight:
                    request = in_flight.pop(output.request_id)
                    limit = request.max_new_tokens or max_new_tokens
                    yield request, self.finished(output.outputs[0], limit)

    def finished(self, completion, max_new_tokens: int) -> Generation:
        return self.finished_tokens(completion.token_ids, max_new_tokens, completion.finish_reason == "length")

    def finished_tokens(self, token_ids, max_new_tokens: int, ran_out: bool | None = None) -> Generation:
        """The result of generated ``token_ids``, cut at the stop tokens. ``ran_out``: vLLM's finish reason was
        the length; where the reason is not known (Ray Data's rows), a request that ends without its stop token
        ran out (vLLM keeps the stop token that ended a request in its token ids)."""
        tokens = [int(token) for token in token_ids]
        stops = set(self.stop_token_ids)
        if ran_out is None:  # vLLM also stops at the tokenizer's end-of-sequence token
            ran_out = not (tokens and tokens[-1] in stops | {self.tokenizer.eos_token_id})
        while tokens and tokens[-1] in stops:
            tokens.pop()
        truncated = ran_out and len(tokens) >= max_new_tokens
        return clean_response(self.tokenizer, self.template, tokens, truncated)


def gpus_of_process(local_rank: int, local_world_size: int, tensor_parallel_size: int, gpus: int) -> list[int]:
    """The GPUs of one process when a launcher starts several per node: consecutive blocks of
    ``tensor_parallel_size``, one block per process."""
    if local_world_size * tensor_parallel_size > gpus:
        raise ValueError(
            f"{local_world_size} processes x tensor_parallel_size {tensor_parallel_size} need "
            f"{local_world_size * tensor_parallel_size} GPUs; this node has {gpus}"
        )
    first = local_rank * tensor_parallel_size
    return list(range(first, first + tensor_parallel_size))


def show_this_process_its_gpus(tensor_parallel_size: int, gpus: int) -> None:
    """Under torchrun (several processes per node), vLLM's engine processes would all take the first GPUs:
    give them this process's block through CUDA_VISIBLE_DEVICES, which they read when they start (vLLM's
    default, an engine in its own process; not with VLLM_ENABLE_V1_MULTIPROCESSING=0)."""
    import os

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_world <= 1:
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # A scheduler (SLURM, Kubernetes) may have named the node's GPUs already: the block is taken from those.
    visible = [name for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    names = visible or [str(index) for index in range(gpus)]
    block = gpus_of_process(local_rank, local_world, tensor_parallel_size, len(names))
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(names[index] for index in block)
    logger.info("process %d of this node generates on GPU(s) %s", local_rank, os.environ["CUDA_VISIBLE_DEVICES"])


# Where the vision side's modules are named in LLaVA, LLaVA-NeXT, Qwen2-VL and Qwen2.5-VL checkpoints.
VISION_MODULE_MARKERS = ("vision_tower", "multi_modal_projector", "visual", "image_newline")


def adapter_outside_language_model(adapter: str) -> bool:
    """Whether the adapter changes any weight outside the language model (vLLM's LoRA reaches only that)."""
    from safetensors import safe_open

    path = Path(adapter) / "adapter_model.safetensors"
    if not path.is_file():
        return True  # an older format (adapter_model.bin): merging works whatever it holds
    with safe_open(str(path), "pt") as handle:
        return any(marker in key for key in handle.keys() for marker in VISION_MODULE_MARKERS)


LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM 0.26 accepts for max_lora_rank


def plain_lora_vllm_takes(adapter: str) -> bool:
    """A plain LoRA (not DoRA) of a rank vLLM accepts, described by an adapter_config.json here."""
    import json

    config_file = Path(adapter) / "adapter_config.json"
    if not config_file.is_file():
        return False
    config = json.loads(config_file.read_text())
    return not config.get("use_dora") and config.get("r", 16) <= LORA_RANKS[-1]


def lora_rank(adapter: str) -> int:
    """The adapter's rank (from its adapter_config.json), rounded up to one vLLM accepts."""
    import json

    rank = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r", 16)
    return next((size for size in LORA_RANKS if size >= rank), rank)


def create(settings: GeneratorSettings) -> VllmGenerator:
    """``engine: vllm`` (``base.ENGINES``)."""
    return VllmGenerator(settings)
