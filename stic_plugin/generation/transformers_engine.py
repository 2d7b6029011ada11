"""The transformers engines, with LLaMA-Factory's own model loading, template and multimodal plugin:
``continuous`` (a finished row's slot goes to the next request at once: ``continuous.py``) and ``plain``
(transformers' ``generate`` on consecutive fixed batches). Both drive one ``TransformersModel``.

Prompts are encoded exactly as LLaMA-Factory encodes training samples for the same ``template``
(placeholder expansion by the template's mm plugin, chat format by the template), so what the model
sees when it writes its descriptions is what it sees when it trains on them.
"""

import logging
from contextlib import contextmanager
from pathlib import Path

from ..model_check import check_template_fits, model_not_loaded
from .base import Generation, Generator, GeneratorSettings, Request
from .continuous import PER_TOKEN_INPUTS

logger = logging.getLogger(__name__)


@contextmanager
def readable_weights(folders: list[str]):
    """A weight file that cannot be read (cut short by an interrupted download or copy) as one line naming it,
    instead of safetensors' traceback. ``folders``: the model's and its adapters'."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:
        broken = unreadable_weight_file(folders)
        raise OSError(
            f"cannot read the weights {broken or 'in ' + ', '.join(folders)} ({err}): a file cut short by an "
            "interrupted download or copy? Fetch or copy it again"
        ) from err


def unreadable_weight_file(folders: list[str]) -> str | None:
    """The first .safetensors file in ``folders`` whose header safetensors cannot read, or None."""
    from safetensors import safe_open

    for folder in folders:
        for path in sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []:
            try:
                with safe_open(str(path), "pt"):
                    pass
            except Exception:  # noqa: BLE001 - whatever safetensors says, this is the file
                return str(path)
    return None


def weight_folders(settings) -> list[str]:
    """The model's folder (or hub name) and its adapters'."""
    adapters = [a.strip() for a in (settings.adapter_name_or_path or "").split(",") if a.strip()]
    return [settings.model_name_or_path, *adapters]


def process_device():
    """This process's device: under torchrun (or any launcher that sets LOCAL_RANK), its own GPU."""
    import os

    import torch

    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


class RowLimits:
    """A transformers logits processor: per-row bias (banned ids) and per-row min/max new tokens. Before its
    minimum a row may write none of the stop ids (a template may have several: Llama 3's <|eot_id|> and
    <|eom_id|>); at its maximum it writes the first."""

    def __init__(self, bias, prompt_width: int, minimums: list[int], maximums: list[int], stop_ids: list[int]):
        self.bias, self.prompt_width, self.stop_ids = bias, prompt_width, list(stop_ids)
        self.minimums, self.maximums = minimums, maximums

    def __call__(self, input_ids, scores):
        import torch

        scores = scores + self.bias.to(scores.dtype)  # on the device already: no copy per step
        written = input_ids.shape[1] - self.prompt_width
        for row, (low, high) in enumerate(zip(self.minimums, self.maximums)):
            if written < low:
                scores[row, self.stop_ids] = -torch.inf
            elif written >= high:  # this row's own limit: make it stop here
                scores[row] = -torch.inf
                scores[row, self.stop_ids[0]] = 0.0
        return scores


def image_token_ids(tokenizer, template, config) -> list[int]:
    """The ids that stand for an image in a prompt: the template's image token, and the one the model replaces by
    the image's features (its configuration's), which may be another: InternVL's template writes ``<image>`` and
    its plugin fills the span with ``<IMG_CONTEXT>``, Llama 4's image is ``<|patch|>`` tokens after an
    ``<|image|>``. A token missing from the vocabulary has no id (nor the unknown token's)."""
    token = template.mm_plugin.image_token
    found = {tokenizer.convert_tokens_to_ids(token)} if token is not None else set()
    if tokenizer.unk_token_id in found and token != tokenizer.unk_token:
        found.discard(tokenizer.unk_token_id)
    for name in ("image_token_id", "image_token_index"):
        found.add(getattr(config, name, None))
    return sorted(token_id for token_id in found if isinstance(token_id, int) and token_id >= 0)


def unmark_library_classes(model) -> None:
    """Undo LLaMA-Factory's ``register_autoclass`` on transformers' own classes: it marks them for auto loading
    when a config names an ``auto_map`` that was not trusted, and every later ``save_pretrained`` of that class in
    this process would then look for its source file to copy (see ``stic_plugin.host``)."""
    for library_class in (type(model.config), type(model)):
        if library_class.__module__.startswith("transformers.") and "_auto_class" in vars(library_class):
            library_class._auto_class = None


class TransformersModel:
    """One model with its tokenizer, processor and LLaMA-Factory template: what the transformers engines drive.

    ``load`` builds it the way LLaMA-Factory loads a model for inference (adapters merged); the constructor
    takes components already built (the bench's random-weight models)."""

    def __init__(self, model, tokenizer, processor, template):
        if processor is None:
            raise ValueError("the model has no image processor: STIC needs a vision-language model")
        if template.mm_plugin.image_token is None:
            raise ValueError("the template has no image support; use the template of your VLM")
        self.model, self.tokenizer, self.processor, self.template = model, tokenizer, processor, template
        self.model.eval()
        self.stop_token_ids = self.template.get_stop_token_ids(self.tokenizer)
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.stop_token_ids[0]
        self.image_token_ids = image_token_ids(self.tokenizer, self.template, self.model.config)
        self.banned_bias = self._banned_bias()

    def _banned_bias(self):
        """(vocab,) additive bias: -inf for ids that must never be written, 0 elsewhere.

        Banned: the image tokens (a description holding one breaks training on it) and ids past the
        tokenizer (padding rows of the output layer, never trained and not decodable).
        """
        import torch

        head = self.model.get_output_embeddings()
        vocab = head.weight.shape[0] if head is not None else self.model.config.get_text_config().vocab_size
        bias = torch.zeros(vocab, dtype=torch.float32)
        bias[[token_id for token_id in self.image_token_ids if token_id < vocab]] = -torch.inf
        bias[len(self.tokenizer) :] = -torch.inf
        return bias

    @classmethod
    def load(cls, settings: GeneratorSettings) -> "TransformersModel":
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import get_infer_args
        from llamafactory.model import load_config, load_model, load_tokenizer

        args = dict(
            model_name_or_path=settings.model_name_or_path,
            template=settings.template,
            trust_remote_code=settings.trust_remote_code,
            infer_dtype=settings.infer_dtype,
        )
        if settings.adapter_name_or_path:
            args["adapter_name_or_path"] = settings.adapter_name_or_path
        if settings.image_max_pixels:
            args["image_max_pixels"] = int(settings.image_max_pixels)
        model_args, data_args, finetuning_args, _ = get_infer_args(args)
        model_args.device_map = {"": process_device()}  # one whole copy per process, not spread over every GPU
        try:
            tokenizer_module = load_tokenizer(model_args)
        except OSError as err:
            raise OSError(model_not_loaded(settings.model_name_or_path, err)) from err
        tokenizer, processor = tokenizer_module["tokenizer"], tokenizer_module["processor"]
        if processor is None:
            raise ValueError(
                f"{settings.model_name_or_path} has no image processor: STIC needs a vision-language model"
            )
        chat_template = get_template_and_fix_tokenizer(tokenizer, data_args)
        if chat_template.mm_plugin.image_token is None:
            raise ValueError(f"template `{settings.template}` has no image support; use the template of your VLM")
        check_template_fits(
            chat_template, processor, load_config(model_args), settings.template, settings.model_name_or_path
        )
        # With adapters and is_trainable=False, LLaMA-Factory merges them into the weights.
        with readable_weights(weight_folders(settings)):
            model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
        unmark_library_classes(model)
        return cls(model, tokenizer, processor, chat_template)

    @property
    def device(self):
        return self.model.device

    def encode(self, request: Request) -> list[int]:
        """Token ids of the conversation with its images, up to the assistant's first token."""
        plugin = self.template.mm_plugin
        messages = plugin.process_messages(request.messages, request.images, [], [], self.processor)
        prompt_ids = generation_prompt(self.template, self.tokenizer, messages, request.system)
        prompt_ids, _ = plugin.process_token_ids(
            prompt_ids, None, request.images, [], [], self.tokenizer, self.processor
        )
        return prompt_ids

    def mm_inputs(self, requests: list[Request], ids: list[list[int]], batch_ids=None) -> dict:
        """The processor's tensors for these requests (CPU), as LLaMA-Factory's collator builds them; ``batch_ids``:
        the prompts left-padded into one tensor, which the per-token inputs (token types) line up with."""
        inputs = self.template.mm_plugin.get_mm_inputs(
            images=[image for request in requests for image in request.images],
            videos=[],
            audios=[],
            imglens=[len(request.images) for request in requests],
            vidlens=[0] * len(requests),
            audlens=[0] * len(requests),
            batch_ids=ids,
            processor=self.processor,
        )
        width = batch_ids.shape[1] if batch_ids is not None else max(len(row) for row in ids)
        return {**inputs, **self._token_types(inputs, ids, width)}

    def token_inputs(self, request: Request, ids: list[int]) -> dict:
        """The per-token inputs (token types) of one prompt, ``(1, len(ids))`` tensors: what ``mm_inputs`` gives
        with its images, computed from the ids and the number of images alone (no image is processed)."""
        inputs = self.template.mm_plugin.get_mm_inputs(
            images=[],
            videos=[],
            audios=[],
            imglens=[len(request.images)],
            vidlens=[0],
            audlens=[0],
            batch_ids=[ids],
            processor=self.processor,
        )
        return self._token_types(inputs, [ids], len(ids))

    def _token_types(self, inputs: dict, ids: list[list[int]], width: int) -> dict:
        """The per-token entries of a plugin's inputs, as ``(rows, width)`` tensors left-padded with 0.

        Gemma 3's and PaliGemma's plugins give ``token_type_ids`` as a list of lists, which LLaMA-Factory's
        collator pads into a tensor; the model reads its shape. Models with 2-D positions for image tokens
        (Qwen2-VL) find the image tokens by ``mm_token_type_ids``; without it transformers silently gives them
        text positions: built as LLaMA-Factory's collator does."""
        import inspect

        import torch

        types = {}
        for key in PER_TOKEN_INPUTS:
            value = inputs.get(key)
            if value is not None and not isinstance(value, torch.Tensor):
                types[key] = left_padded(value, width)
        rope_index = getattr(getattr(self.model, "model", None), "get_rope_index", None)
        needs_types = rope_index is not None and "mm_token_type_ids" in inspect.signature(rope_index).parameters
        if needs_types and "mm_token_type_ids" not in inputs:
            image_ids = torch.tensor(self.image_token_ids, dtype=torch.long)
            types["mm_token_type_ids"] = torch.isin(left_padded(ids, width, fill=-1), image_ids).long()
        return types

    def generation(self, kept: list[int], truncated: bool) -> Generation:
        return clean_response(self.tokenizer, self.template, kept, truncated)


def left_padded(rows: list[list[int]], width: int, fill: int = 0):
    """``rows`` as one ``(len(rows), width)`` long tensor, each row at the right end (left padding, as the prompts)."""
    import torch

    padded = torch.full((len(rows), width), fill, dtype=torch.long)
    for index, row in enumerate(rows):
        if len(row):
            padded[index, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
    return padded


class TransformersGenerator(Generator):
    """What both transformers engines share: the model they drive, and its parts by name."""

    engine = ""

    def __init__(self, loaded: TransformersModel):
        self.loaded = loaded

    model = property(lambda self: self.loaded.model)
    tokenizer = property(lambda self: self.loaded.tokenizer)
    processor = property(lambda self: self.loaded.processor)
    template = property(lambda self: self.loaded.template)
    stop_token_ids = property(lambda self: self.loaded.stop_token_ids)
    pad_token_id = property(lambda self: self.loaded.pad_token_id)
    banned_bias = property(lambda self: self.loaded.banned_bias)
    device = property(lambda self: self.loaded.device)

    def encode(self, request: Request) -> list[int]:
        return self.loaded.encode(request)


def _slots(requests, slots: int | None) -> int:
    """Sequences decoded together: all requests of a list by default (16 for other iterables), never more
    than a list has (no slot, and no cache, for requests that do not exist)."""
    if slots is None:
        slots = len(requests) if isinstance(requests, (list, tuple)) else 16
    if isinstance(requests, (list, tuple)):
        slots = min(slots, len(requests))
    return max(1, slots)


class PlainGenerator(TransformersGenerator):
    """transformers' ``generate`` on consecutive groups of ``slots`` requests."""

    engine = "plain"

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        slots = _slots(requests, slots)
        group, index = [], 0
        for request in requests:
            group.append(request)
            if len(group) == slots:
                batch_seed = None if seed is None else seed + index
                yield from zip(
                    group, self._generate_plain(group, max_new_tokens, temperature, top_p, top_k, batch_seed)
                )
                group, index = [], index + 1
        if group:
            batch_seed = None if seed is None else seed + index
            yield from zip(group, self._generate_plain(group, max_new_tokens, temperature, top_p, top_k, batch_seed))

    def _generate_plain(self, requests, max_new_tokens, temperature, top_p, top_k, seed) -> list[Generation]:
        """transformers' ``generate`` on one left-padded batch."""
        import torch
        from transformers import LogitsProcessorList

        from .continuous import inputs_to_device

        ids = [self.encode(request) for request in requests]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(tokens) :] = torch.tensor(tokens)
            attention_mask[row, width - len(tokens) :] = 1
        mm_inputs = inputs_to_device(self.loaded.mm_inputs(requests, ids, input_ids), self.device, self.model.dtype)
        limits = [request.max_new_tokens or max_new_tokens for request in requests]
        processor = RowLimits(
            self.banned_bias.to(self.device),
            width,
            [r.min_new_tokens for r in requests],
            limits,
            self.stop_token_ids,
        )
        from transformers import GenerationConfig

        sampling = temperature is not None and temperature > 0
        # The request's settings alone: the model's generation_config (a repetition penalty, its own top_k...)
        # would change the texts here and not on the other engines.
        config = GenerationConfig(do_sample=sampling, max_new_tokens=max(limits), num_beams=1)
        if sampling:
            config.update(temperature=temperature, top_p=top_p if top_p is not None else 1.0, top_k=top_k or 0)
        else:
            config.update(temperature=None, top_p=None, top_k=None)
        if seed is not None:
            torch.manual_seed(seed)
        # transformers fills what `config` leaves unset from the model's own generation_config: a neutral one
        # stands in for it during the call.
        saved, self.model.generation_config = self.model.generation_config, GenerationConfig()
        try:
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention_mask.to(self.device),
                    generation_config=config,
                    eos_token_id=self.stop_token_ids,
                    pad_token_id=self.pad_token_id,
                    logits_processor=LogitsProcessorList([processor]),
                    **mm_inputs,
                )
        finally:
            self.model.generation_config = saved
        return [self._decode(row[width:].tolist(), limit) for row, limit in zip(output, limits)]

    def _decode(self, new_tokens: list[int], max_new_tokens: int) -> Generation:
        """A row: up to its first stop token (or without the padding after its end)."""
        stops = set(self.stop_token_ids)
        end = next((i for i, token in enumerate(new_tokens) if token in stops), None)
        kept = new_tokens[:end] if end is not None else [t for t in new_tokens if t != self.pad_token_id]
        return self.loaded.generation(kept, len(kept) >= max_new_tokens)


class ContinuousGenerator(TransformersGenerator):
    """Continuous batching (``continuous.ContinuousBatcher``): a slot refills as soon as its row ends, and each
    request's samples come from (seed, request key), whatever else is in the batch. Requests are encoded and
    their images processed on threads, ahead of the model."""

    engine = "continuous"

    def __init__(self, loaded: TransformersModel, compile_decoding="auto", attention: str = "auto"):
        """``attention``: the decoding attention (see ``ContinuousBatcher``): "auto", "sdpa" or "flex"."""
        from .continuous import COMPILE_AFTER_STEPS, unsupported_reason

        reason = unsupported_reason(loaded.model)
        if reason:
            raise ValueError(f"the continuous engine cannot drive this model: {reason}")
        super().__init__(loaded)
        # Decoding steps run before the step is compiled: 0 from the first, None never.
        if compile_decoding == "auto":
            self.compile_after_steps = COMPILE_AFTER_STEPS if self.device.type == "cuda" else None
        else:
            self.compile_after_steps = 0 if compile_decoding else None
        self.attention = attention
        self._batcher = None

    # ---- what the engine did: read-only, for reports and tests ----
    @property
    def last_run_stats(self) -> dict:
        """The counters of the last run (a copy; empty before the first): see ``continuous.run_stats``."""
        return dict(self._batcher.stats) if self._batcher is not None else {}

    @property
    def decoding_attention(self) -> str | None:
        """The decoding attention in use ("sdpa", "flex", "flex-when-compiled" or "eager"); None before the
        first run."""
        return self._batcher.attention if self._batcher is not None else None

    @property
    def decoding_compiled(self) -> bool:
        """Whether the decoding step runs compiled now."""
        return self._batcher is not None and self._batcher.compiled

    @property
    def cache_slots(self) -> int:
        """Rows of the key/value cache (0 before the first run); they never shrink."""
        return self._batcher.cache_slots if self._batcher is not None else 0

    @property
    def cache_capacity(self) -> int:
        """Tokens each row of the key/value cache holds (0 before the first run)."""
        cache = self._batcher.cache if self._batcher is not None else None
        return cache.capacity if cache is not None else 0

    def release_cache(self) -> None:
        """Drop the key/value cache and compiled step: the next run starts afresh."""
        self._batcher = None

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        from .continuous import ContinuousBatcher, PendingRequest, request_key

        slots = _slots(requests, slots)
        if self._batcher is None:
            self._batcher = ContinuousBatcher(
                self.model, self.stop_token_ids, self.banned_bias, self.compile_after_steps, self.attention
            )
        base_seed = 0 if seed is None else seed

        def pending(group: list[tuple[int, Request]]) -> list[PendingRequest]:
            """Requests on the same images: the images are processed once, and the prompt prefix up to
            and including the image tokens is run through the model once for all of them."""
            import torch

            encoded = [self.encode(request) for _, request in group]
            first_inputs = self.loaded.mm_inputs([group[0][1]], encoded[:1], torch.tensor([encoded[0]]))
            shared = shared_prefix_length(encoded, self.loaded.image_token_ids) if len(group) > 1 else 0
            items = []
            for position, ((index, request), ids) in enumerate(zip(group, encoded)):
                inputs = dict(first_inputs)
                if position and any(key in inputs for key in PER_TOKEN_INPUTS):  # per prompt: along its own ids
                    inputs.update(self.loaded.token_inputs(request, ids))
                limit = request.max_new_tokens or max_new_tokens
                key = request_key(base_seed, request.key if request.key is not None else str(index))
                # The ring is sized by the call's limit, so that calls with shorter requests reuse its shapes.
                items.append(
                    PendingRequest(
                        request,
                        ids,
                        inputs,
                        limit,
                        request.min_new_tokens,
                        key,
                        max(limit, max_new_tokens),
                        (group[0][0], shared) if shared else None,
                    )
                )
            return items

        queue = (item for items in _read_ahead(pending, _same_image_groups(requests), slots) for item in items)
        # The batcher turns gradients off around its own model calls only: nothing leaks into the caller's loop.
        for request, new_tokens, truncated in self._batcher.run(queue, slots, temperature, top_p, top_k):
            yield request, self.loaded.generation(new_tokens, truncated)


def continuous_or_plain(loaded: TransformersModel, compile_decoding="auto", attention: str = "auto") -> Generator:
    """The continuous engine on this model, or the plain one (with a warning) for a model it cannot drive."""
    from .continuous import unsupported_reason

    reason = unsupported_reason(loaded.model)
    if reason:
        logger.warning("continuous batching is off for this model (%s): generating in plain batches", reason)
        return PlainGenerator(loaded)
    return ContinuousGenerator(loaded, compile_decoding, attention)


def create_continuous(settings: GeneratorSettings) -> Generator:
    """``engine: continuous`` (``base.ENGINES``)."""
    return continuous_or_plain(TransformersModel.load(settings), settings.compile_decoding)


def create_plain(settings: GeneratorSettings) -> Generator:
    """``engine: plain`` (``base.ENGINES``)."""
    return PlainGenerator(TransformersModel.load(settings))


def generation_prompt(template, tokenizer, messages: list[dict], system: str | None) -> list[int]:
    """Token ids of a conversation up to the answer, as the template encodes it for training.

    A thinking template (LLaMA-Factory's ReasoningTemplate: qwen3_vl, glm4v...) trains on answers after an
    empty thought block (with its default enable_thinking it writes the block before every answer that has none);
    the prompt ends with that block here, so that the model answers at once, as in the texts it trains on, and
    writes no reasoning into a description or an answer. (With enable_thinking false the template puts the block
    into the prompt itself.)"""
    from llamafactory.data.template import ReasoningTemplate

    prompt_ids, _ = template.encode_oneturn(tokenizer, messages + [{"role": "assistant", "content": ""}], system, None)
    if isinstance(template, ReasoningTemplate) and template.enable_thinking:
        prompt_ids = prompt_ids + template.get_thought_word_ids(tokenizer)
    return prompt_ids


def find_last(tokens: list[int], part: list[int]) -> int | None:
    """Where the last occurrence of ``part`` in ``tokens`` starts (None: nowhere, or ``part`` is empty)."""
    for start in range(len(tokens) - len(part), -1, -1):
        if part and tokens[start : start + len(part)] == part:
            return start
    return None


def without_thought(kept: list[int], opening: list[int], closing: list[int]) -> list[int]:
    """The answer of generated tokens: what follows the last closed thought block (``opening`` ... ``closing``);
    nothing of a thought block that never closed (the answer never came)."""
    end = find_last(kept, closing)
    if end is not None:
        return kept[end + len(closing) :]
    start = find_last(kept, opening)
    return kept[:start] if start is not None else kept


def clean_response(tokenizer, template, kept: list[int], truncated: bool) -> Generation:
    """The generation of these new tokens (stop token excluded): decoded, without any reasoning a model wrote
    in its thought block (a thinking model may think whatever its prompt), nor any media placeholder."""
    opening, closing = (tokenizer.encode(word.strip(), add_special_tokens=False) for word in template.thought_words)
    text = tokenizer.decode(without_thought(kept, opening, closing), skip_special_tokens=True)
    from llamafactory.extras.constants import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER

    for placeholder in (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, AUDIO_PLACEHOLDER, template.mm_plugin.image_token):
        text = text.replace(placeholder, "")  # never store a placeholder inside a response
    return Generation(text=text.strip(), tokens=len(kept), truncated=truncated)


def _same_image_groups(requests):
    """(index, request) pairs, grouped: consecutive requests on the very same images (one object each,
    as ``pref`` sends the two generations of an image) form a group."""
    group: list = []
    for index, request in enumerate(requests):
        if (
            group
            and request.images
            and len(request.images) == len(group[0][1].images)
            and all(a is b for a, b in zip(request.images, group[0][1].images))
        ):
            group.append((index, request))
            continue
        if group:
            yield group
        group = [(index, request)]
    if group:
        yield group


def shared_prefix_length(encoded: list[list[int]], image_token_ids) -> int:
    """Tokens every prompt of a group starts with, if they include every image token (``image_token_ids``: the ids
    standing for images; else 0); at least one token of each prompt is left to run on its own (its logits start
    the answer)."""
    length = min(len(ids) for ids in encoded) - 1
    for position in range(length):
        if any(ids[position] != encoded[0][position] for ids in encoded[1:]):
            length = position
            break
    last_image_token = max((i for i, token in enumerate(encoded[0]) if token in image_token_ids), default=-1)
    return length if length > last_image_token >= 0 else 0


def _read_ahead(function, items, depth: int):
    """function(item) for each item, computed on worker threads up to ``depth`` items ahead of the
    consumer, in order (image processing releases the interpreter for most of its work)."""
    import os
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as worker:
        pending = deque()
        for item in items:
            pending.append(worker.submit(function, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
