"""``executor: ray``: the requests of ``engine: vllm`` run through Ray Data LLM, on ``concurrency`` vLLM engines
spread over a Ray cluster (the one RAY_ADDRESS names, or a new one on this machine).

The command stays the only writer, and hands Ray only what names each request: the conversation, its
sampling keys with its seed, and its images as ``ImageSource`` (the file, and the corruption drawn for it),
or, for images a caller holds in memory (lmms-eval's), as PNG. Ray's workers read, corrupt and scale the
images and encode the prompts in a stage before the engine (``RowMaker``), with the functions of the other
engines. The requests enter Ray as a stream, at most ``window`` of them at a time (``Feed``: one Ray Data
execution per stream, so the engines start once), and each result is written as Ray gives it back: the files,
the resume and the exactly-once guarantee are those of every other engine, the command's memory does not grow
with the input, and the first records reach the disk as soon as the engines write them. Each request carries
its own seed, so the texts are those of ``engine: vllm`` whatever the number of engines.
"""

import collections
import dataclasses
import io
import itertools
import logging
import pickle
import queue
import threading

from .base import GeneratorSettings, ImageSource, Request, UnreadableImage
from .transformers_engine import generation_prompt
from .vllm_engine import VllmGenerator, images_for_vllm

logger = logging.getLogger(__name__)

RAY_VERSION = "2.58.1"
RAY_INSTALL_HINT = (
    "`executor: ray` needs Ray Data " + RAY_VERSION + " beside vLLM: pip install 'ray[data]==" + RAY_VERSION + "' "
    "(bash scripts/install_vllm.sh .venv installs both). docs/engines.md says more."
)
INDEX = "stic_request"  # the column that brings each result back to its request
REQUEST = "stic_named"  # what names the request (pickled): its conversation, images, sampling keys
UNREADABLE = "stic_unreadable"  # the pickled UnreadableImage of a request whose image could not be read, or b""
READ_ROWS = 16  # requests whose images a task of Ray's workers reads together


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
    """An image as lossless PNG: how a picture the caller holds in memory travels to another machine, pixel for
    pixel (light compression: the command encodes it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def on_every_node(path: str) -> str:
    """A local folder as an absolute path (Ray's workers do not start in this process's folder); a hub name as is."""
    from pathlib import Path

    return str(Path(path).resolve()) if Path(path).exists() else path


def read_pictures(images: list) -> list:
    """A request's images as PIL images, in Ray's workers: a named image read (and corrupted where its pair asks)
    with the functions the command uses for the other engines; a picture that came as PNG decoded. Raises
    UnreadableImage, with the image's place in the request."""
    from PIL import Image

    pictures = []
    for place, image in enumerate(images):
        if isinstance(image, bytes):
            pictures.append(Image.open(io.BytesIO(image)).convert("RGB"))
            continue
        try:
            pictures.append(image.read())
        except UnreadableImage as unreadable:
            raise UnreadableImage(unreadable.reason, unreadable.detail, place) from None
    return pictures


@dataclasses.dataclass
class RowMaker:
    """Ray Data's stage before the engine, run in Ray's workers: named requests (``RayVllmGenerator.named``) as
    vLLM's rows, their images read, corrupted and scaled and their prompts encoded as ``VllmGenerator.prompt``
    does it. It travels to the workers once per stream, with the template, tokenizer and processor the command
    loaded."""

    template: object
    tokenizer: object
    processor: object
    image_max_pixels: int
    image_min_pixels: int
    logit_bias: dict

    def prompt(self, named: dict) -> dict:
        """vLLM's input for one request; raises UnreadableImage."""
        pictures = read_pictures(named["images"])
        plugin = self.template.mm_plugin
        # The images' number, and for some plugins (InternVL's) their sizes, decide the placeholders.
        messages = plugin.process_messages(named["messages"], pictures, [], [], self.processor)
        prompt = {"tokenized_prompt": generation_prompt(self.template, self.tokenizer, messages, named["system"])}
        scaled = [
            picture if isinstance(sent, bytes) else images_for_vllm(plugin, [picture], *self.scaling)[0]
            for sent, picture in zip(named["images"], pictures)  # a PNG came scaled by the command
        ]
        prompt["multimodal_data"] = {"image": scaled if len(scaled) > 1 else scaled[0]} if scaled else None
        return prompt

    def row(self, index: int, named: dict) -> dict:
        """The row of one request. A request whose image cannot be read becomes the engine's cheapest row (one
        token of prompt, no image, one new token), marked with the reason: its result is dropped, and the
        command skips the request's unit as it skips a bad file."""
        sampling = {**named["sampling_keys"], "logit_bias": self.logit_bias}
        row = {INDEX: index, UNREADABLE: b""}
        try:
            row.update(self.prompt(named))
        except UnreadableImage as unreadable:
            row.update(tokenized_prompt=[0], multimodal_data=None)  # any one token will do
            row[UNREADABLE] = pickle.dumps(unreadable)
            sampling.update(max_tokens=1, min_tokens=0)
        row["sampling_params"] = sampling
        if named["lora"] is not None:
            row["model"] = named["lora"]  # Ray Data's engines load the adapter a row names
        return row

    @property
    def scaling(self) -> tuple[int, int]:
        return self.image_max_pixels, self.image_min_pixels

    def __call__(self, batch: dict):
        import pandas

        rows = [self.row(int(index), pickle.loads(named)) for index, named in zip(batch[INDEX], batch[REQUEST])]
        return pandas.DataFrame(rows)


def result_columns(row: dict) -> dict:
    """Ray Data's step after the engine: only what the command needs comes back to it."""
    return {
        INDEX: row[INDEX],
        "generated_tokens": [int(token) for token in row["generated_tokens"]],
        UNREADABLE: row[UNREADABLE],
    }


class Feed:
    """A Ray actor: the requests on their way into Ray Data. The command puts rows in; the read task of the
    stream's dataset takes them out, waiting while there are none; once the feed is closed and emptied, a take
    gives nothing, and the dataset ends."""

    def __init__(self):
        import asyncio

        self.rows = collections.deque()
        self.closed = False
        self.arrived = asyncio.Event()

    async def put(self, rows: list, last: bool) -> None:
        self.rows.extend(rows)
        self.closed = last
        self.arrived.set()

    async def take(self, most: int) -> list:
        while not self.rows and not self.closed:
            self.arrived.clear()
            await self.arrived.wait()
        return [self.rows.popleft() for _ in range(min(most, len(self.rows)))]


def feed_dataset(ray, feed, most: int):
    """A Ray dataset of the rows put into ``feed``, as they come: one read task, that hands each take on at once
    (Ray Data otherwise gathers a read task's rows into blocks of up to 128 MB before passing them on, which
    would hold small rows until the stream ends). The task only waits, so it takes no CPU."""
    import pyarrow
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    def take_rows():
        while rows := ray.get(feed.take.remote(most)):
            yield pyarrow.table({INDEX: [index for index, _ in rows], REQUEST: [named for _, named in rows]})

    class FeedSource(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(take_rows, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None))]

    context = ray.data.DataContext.get_current()
    usual = context.target_max_block_size
    context.target_max_block_size = 1  # every take a block of its own; the dataset keeps this context
    try:
        return ray.data.read_datasource(FeedSource(), override_num_blocks=1, ray_remote_args={"num_cpus": 0})
    finally:
        context.target_max_block_size = usual


class ResultStream:
    """The results of a dataset, read on a thread (Ray Data's iterator blocks) and handed over one at a time."""

    END = object()

    def __init__(self, dataset):
        self.results: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(dataset,), daemon=True, name="ray-results")
        self.thread.start()

    def _read(self, dataset) -> None:
        try:
            # No prefetching: Ray Data would hold a result back until the next one has arrived.
            for batch in dataset.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
                for row in batch.to_dict("records"):
                    self.results.put(row)
            self.results.put(self.END)
        except BaseException as err:  # given to the command's thread, which raises it
            self.results.put(err)

    def next(self):
        """The next result, or END once the dataset is done."""
        result = self.results.get()
        if isinstance(result, BaseException):
            raise result
        return result


def node_problem(address: str, no_project: bool, unreadable: list[str]) -> str | None:
    """What stops a Ray node from running the requests, as one line that names the way out; None: nothing."""
    if no_project:
        return (
            f"`executor: ray`: Ray node {address} lacks this project (Ray's workers run its functions): install it "
            "on every node, as on this machine"
        )
    if unreadable:
        return (
            f"`executor: ray`: Ray node {address} cannot read {unreadable[0]}, which this machine reads: put the "
            "images on storage that every node mounts at the same path, or set `ship_images: true` to send each "
            "image's bytes from this machine with its request"
        )
    return None


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
        self.cluster_gpus = self.connect()
        self.nodes_checked = self.files_checked = False  # check_nodes
        if not self.cluster_gpus and cfg.tensor_parallel_size > 1:
            # Ray Data splits such an engine over Ray's workers, which vLLM's CPU build cannot do.
            raise ValueError("`tensor_parallel_size` above 1 needs GPUs in the Ray cluster; it has none")
        super().__init__(cfg)

    def connect(self) -> int:
        """Join the Ray cluster that RAY_ADDRESS names, or start one on this machine; its number of GPUs."""
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
        # The address Ray connected to, as it reports it: the cluster that RAY_ADDRESS names, or the new instance.
        address = self.ray.get_runtime_context().gcs_address
        where = f"the Ray cluster at {address}" if os.environ.get("RAY_ADDRESS") else f"a new Ray instance at {address}"
        logger.info("executor ray: %d vLLM engine(s) on %s", self.concurrency, where)
        return int(self.ray.cluster_resources().get("GPU", 0))

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

    def named(self, index: int, request: Request, max_new_tokens, temperature, top_p, top_k, seed: int) -> bytes:
        """What the command sends Ray for one request (``RowMaker`` makes vLLM's row of it in Ray's workers): the
        conversation, its images (named; a picture in memory scaled here and sent as PNG), its sampling keys (the
        bias, the same for every request, is added there), and the adapter vLLM applies."""
        images = []
        for image in request.images:
            if isinstance(image, ImageSource):
                images.append(image)
            else:
                (picture,) = images_for_vllm(
                    self.template.mm_plugin, [image], self.image_max_pixels, self.image_min_pixels
                )
                images.append(png_bytes(picture))
        sampling = self.sampling_keys(request, max_new_tokens, temperature, top_p, top_k, seed, index)
        del sampling["logit_bias"]
        named = {
            "messages": request.messages,
            "system": request.system,
            "images": images,
            "sampling_keys": sampling,
            "lora": None if self.lora is None else on_every_node(self.lora.lora_path),
        }
        return pickle.dumps(named)

    def row_maker(self) -> RowMaker:
        return RowMaker(
            self.template,
            self.tokenizer,
            self.processor,
            self.image_max_pixels,
            self.image_min_pixels,
            self.logit_bias,
        )

    def dataset(self, feed, batch_size: int):
        """The stream's dataset: the requests from ``feed``, their images read and prompts encoded in Ray's
        workers, vLLM's engines, the columns the command needs."""
        from ray.data.llm import build_processor

        requests = feed_dataset(self.ray, feed, batch_size)
        rows = requests.map_batches(self.row_maker(), batch_size=min(READ_ROWS, batch_size), batch_format="numpy")
        # The last step only picks columns: it asks for no CPU, so that Ray Data's share of the cluster's CPUs for
        # its steps (the feed's steps never end) cannot hold the results back.
        processor = build_processor(
            self.processor_config(batch_size), postprocess=result_columns, postprocess_map_kwargs={"num_cpus": 0}
        )
        return processor(rows)

    def check_nodes(self, request: Request) -> None:
        """Once per run, before the engines are given a request: every node of the cluster has this project (Ray's
        workers run its functions) and reads the image files that this process reads (those of the first request
        that names files); else one line that says what to do."""
        import os

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        files = [image.file for image in request.images if isinstance(image, ImageSource) and image.file]
        files = [path for path in files if os.access(path, os.R_OK)]  # a file missing here too is skipped as bad
        if self.files_checked or (self.nodes_checked and not files):
            return

        def what_this_node_lacks(paths: list[str]) -> tuple[bool, list[str]]:  # defined here: sent by value
            import importlib.util
            import os

            return importlib.util.find_spec("stic_plugin") is None, [p for p in paths if not os.access(p, os.R_OK)]

        probe = self.ray.remote(num_cpus=0)(what_this_node_lacks)
        nodes = [node for node in self.ray.nodes() if node["Alive"]]
        on_node = [NodeAffinitySchedulingStrategy(node["NodeID"], soft=False) for node in nodes]
        answers = self.ray.get([probe.options(scheduling_strategy=where).remote(files) for where in on_node])
        for node, (no_project, unreadable) in zip(nodes, answers):
            problem = node_problem(node["NodeManagerAddress"], no_project, unreadable)
            if problem:
                raise ValueError(problem)
        self.nodes_checked, self.files_checked = True, bool(files)

    def window(self, batch_size: int) -> int:
        """Requests in Ray at most: enough to give every engine its batches while the next are read, and at least
        three batches, so that the batches Ray Data gathers can always fill while the command waits."""
        return 4 * self.concurrency * batch_size

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        """(request, Generation) for each request, as Ray gives the results back; ``slots`` is the number of
        requests in each of Ray Data's batches. The requests are read as room frees up in Ray (``window``)."""
        requests = iter(requests)
        first = next(requests, None)
        if first is None:
            return
        self.check_nodes(first)
        base_seed = 0 if seed is None else seed
        batch_size = max(1, slots or 64)
        window = self.window(batch_size)
        numbered = enumerate(itertools.chain([first], requests))
        pending: dict[int, Request] = {}
        feed = self.ray.remote(num_cpus=0)(Feed).remote()
        results = ResultStream(self.dataset(feed, batch_size))
        exhausted = False
        try:
            while True:
                if not exhausted and len(pending) <= window - batch_size:
                    rows = []
                    for index, request in itertools.islice(numbered, window - len(pending)):
                        self.check_nodes(request)  # where the first requests named no image file
                        rows.append(
                            (index, self.named(index, request, max_new_tokens, temperature, top_p, top_k, base_seed))
                        )
                        # What the caller gets back: the request without its images.
                        pending[index] = dataclasses.replace(request, images=[])
                    exhausted = len(pending) < window
                    self.ray.get(feed.put.remote(rows, exhausted))
                result = results.next()
                if result is ResultStream.END:
                    break
                request = pending.pop(int(result[INDEX]), None)
                if request is None:  # Ray retried a batch that had already given this result: written once
                    continue
                yield request, self.finished_row(result, request.max_new_tokens or max_new_tokens)
        finally:  # done, failed, or stopped by the caller: the stream's read task, and with it the dataset, end
            self.ray.kill(feed)
        if pending:
            raise RuntimeError(f"Ray Data gave back no result for {len(pending)} request(s)")

    def finished_row(self, result: dict, max_new_tokens: int):
        if len(result[UNREADABLE]):
            generation = self.finished_tokens([], max_new_tokens, ran_out=False)
            generation.unreadable = pickle.loads(result[UNREADABLE])
            return generation
        return self.finished_tokens(result["generated_tokens"], max_new_tokens)


def create(settings: GeneratorSettings) -> RayVllmGenerator:
    """``executor: ray`` (``base.EXECUTORS``)."""
    return RayVllmGenerator(settings)
