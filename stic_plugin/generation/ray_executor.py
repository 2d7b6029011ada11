"""``executor: ray``: the requests of ``engine: vllm`` run through Ray Data LLM, on ``concurrency`` vLLM engines
spread over a Ray cluster (the one RAY_ADDRESS names, or a new one on this machine).

The command itself stays the only writer: it builds the requests (prompts, corrupted images, seeds) exactly as
for ``engine: vllm`` in this process, hands them to Ray as one dataset per stream, and writes each result as Ray
gives it back, so the files, the resume and the exactly-once guarantee are those of every other engine. Each
request carries its own seed, so the texts are those of ``engine: vllm`` whatever the number of engines.
"""

import dataclasses
import io
import logging

from .base import GeneratorSettings, Request
from .vllm_engine import VllmGenerator

logger = logging.getLogger(__name__)

RAY_VERSION = "2.58.1"
RAY_INSTALL_HINT = (
    "`executor: ray` needs Ray Data " + RAY_VERSION + " beside vLLM: pip install 'ray[data]==" + RAY_VERSION + "' "
    "(bash scripts/install_vllm.sh .venv installs both). docs/engines.md says more."
)
INDEX = "stic_request"  # the column that brings each result back to its request


def require_ray():
    """Ray, with Ray Data's LLM processors."""
    try:
        import ray
        import ray.data.llm  # noqa: F401 - fails where Ray Data is missing
    except ImportError as err:
        raise ValueError(RAY_INSTALL_HINT) from err
    if ray.__version__ != RAY_VERSION:
        logger.warning("Ray %s is installed; this executor is tested with %s", ray.__version__, RAY_VERSION)
    return ray


def png_bytes(image) -> bytes:
    """An image as lossless PNG: what a row carries to another machine, pixel for pixel (light compression:
    the command encodes every image of a stream before Ray starts)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def on_every_node(path: str) -> str:
    """A local folder as an absolute path (Ray's workers do not start in this process's folder); a hub name as is."""
    from pathlib import Path

    return str(Path(path).resolve()) if Path(path).exists() else path


def images_from_png(row: dict) -> dict:
    """Ray Data's step before the engine, run in Ray's workers: the row's PNG images as the PIL images vLLM
    takes, and its sampling keys back to what ``SamplingParams`` takes."""
    from PIL import Image

    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in row.pop("png_images")]
    if pictures:
        row["multimodal_data"] = {"image": pictures if len(pictures) > 1 else pictures[0]}
    sampling = dict(row.pop("sampling_keys"))
    # The bias travels as [token, bias] pairs (Arrow holds no dict with number keys); lists come back as arrays.
    sampling["logit_bias"] = {int(token): float(bias) for token, bias in row.pop("logit_bias")}
    sampling["stop_token_ids"] = [int(token) for token in sampling["stop_token_ids"]]
    row["sampling_params"] = sampling
    return row


def result_columns(row: dict) -> dict:
    """Ray Data's step after the engine: only what the command needs comes back to it."""
    return {INDEX: row[INDEX], "generated_tokens": [int(token) for token in row["generated_tokens"]]}


class RayVllmGenerator(VllmGenerator):
    """``generate_stream`` of ``VllmGenerator``, on the vLLM engines of Ray Data LLM."""

    engine = "vllm"

    def __init__(self, cfg: GeneratorSettings):
        import os

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("`executor: ray` spreads the requests over Ray's engines itself: run it without torchrun")
        self.ray = require_ray()
        self.concurrency = cfg.concurrency
        self.verbose = cfg.verbose
        self.connect()
        self.cluster_gpus = int(self.ray.cluster_resources().get("GPU", 0))
        if not self.cluster_gpus and cfg.tensor_parallel_size > 1:
            # Ray Data splits such an engine over Ray's workers, which vLLM's CPU build cannot do.
            raise ValueError("`tensor_parallel_size` above 1 needs GPUs in the Ray cluster; it has none")
        super().__init__(cfg)

    def connect(self) -> None:
        """Join the Ray cluster that RAY_ADDRESS names, or start one on this machine."""
        import os

        if not self.ray.is_initialized():
            # Unless `verbose`, the workers' output (vLLM's engine messages) stays in Ray's session logs
            # (/tmp/ray by default), and Ray Data's progress lines (every few seconds, INFO) are not shown:
            # the command's progress bar is. Ray's warnings (a cluster short of resources) still are.
            self.ray.init(
                include_dashboard=False,
                log_to_driver=self.verbose,
                logging_level=logging.INFO if self.verbose else logging.WARNING,
                ignore_reinit_error=True,
            )
        if not self.verbose:
            self.ray.data.DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        where = os.environ.get("RAY_ADDRESS", "a new Ray instance on this machine")
        logger.info("executor ray: %d vLLM engine(s) on %s", self.concurrency, where)

    def generates_on_gpu(self) -> bool:
        return self.cluster_gpus > 0  # the engines' settings follow the cluster's devices, not this process's

    def start_engine(self, vllm):
        """No engine here: Ray Data starts one in each of its workers for every stream."""
        return None

    def processor_config(self, batch_size: int):
        from ray.data.llm import vLLMEngineProcessorConfig

        engine_kwargs = {k: v for k, v in self.engine_args.items() if k != "model"}
        placement = None
        if not self.cluster_gpus:
            # Without GPUs, each engine takes one CPU bundle (Ray Data asks for GPUs by default).
            placement = {"bundles": [{"CPU": 1}]}
        return vLLMEngineProcessorConfig(
            model_source=on_every_node(self.engine_args["model"]),
            engine_kwargs=engine_kwargs,
            # A pool of 1 to `concurrency` engines: Ray Data adds engines while rows wait and the cluster has room.
            # (A fixed pool of n can take every CPU of a small machine and leave none for the steps around it.)
            concurrency=self.concurrency,
            batch_size=batch_size,
            chat_template_stage=False,  # the rows hold the LLaMA-Factory template's token ids already
            tokenize_stage=False,
            detokenize_stage=False,  # the command decodes, as for the other engines
            log_engine_metrics=False,
            placement_group_config=placement,
        )

    def row(self, index: int, request: Request, max_new_tokens, temperature, top_p, top_k, seed: int) -> dict:
        prompt = self.prompt(request)
        images = (prompt.get("multi_modal_data") or {}).get("image", [])
        sampling = self.sampling_keys(request, max_new_tokens, temperature, top_p, top_k, seed, index)
        bias = sampling.pop("logit_bias") or {}
        row = {
            INDEX: index,
            "tokenized_prompt": prompt["prompt_token_ids"],
            "png_images": [png_bytes(image) for image in (images if isinstance(images, list) else [images])],
            "sampling_keys": sampling,
            "logit_bias": [[int(token), float(value)] for token, value in bias.items()],
        }
        if self.lora is not None:
            row["model"] = on_every_node(self.lora.lora_path)  # Ray Data's engines load the adapter a row names
        return row

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        """(request, Generation) for each request, as Ray gives the results back. The requests are read up
        front (one dataset for Ray); ``slots`` is the number of requests in each of Ray Data's batches."""
        from ray.data.llm import build_processor

        base_seed = 0 if seed is None else seed
        pending: dict[int, Request] = {}
        rows = []
        for index, request in enumerate(requests):
            rows.append(self.row(index, request, max_new_tokens, temperature, top_p, top_k, base_seed))
            # The images travel in the row; what the caller gets back is the request without them.
            pending[index] = dataclasses.replace(request, images=[])
        if not rows:
            return
        batch_size = max(1, min(slots or 64, len(rows)))
        processor = build_processor(
            self.processor_config(batch_size), preprocess=images_from_png, postprocess=result_columns
        )
        dataset = processor(self.ray.data.from_items(rows))
        del rows  # Ray's object store holds them now
        for result in dataset.iter_rows():
            request = pending.pop(int(result[INDEX]), None)
            if request is None:  # Ray retried a batch that had already given this result: written once
                continue
            limit = request.max_new_tokens or max_new_tokens
            yield request, self.finished_tokens(result["generated_tokens"], limit)
        if pending:
            raise RuntimeError(f"Ray Data gave back no result for {len(pending)} request(s)")


def create(settings: GeneratorSettings) -> RayVllmGenerator:
    """``executor: ray`` (``base.EXECUTORS``)."""
    return RayVllmGenerator(settings)
