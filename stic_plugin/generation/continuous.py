"""Continuous batching for image-grounded generation: a row that finishes hands its slot to the next request.

A fixed batch keeps decoding padding for every row that has stopped until its longest row ends; with
descriptions of 100 to 1,000 tokens most of such a batch is idle. Here a fixed number of slots decode
together, one token per slot per step, and a request enters a slot as soon as one frees up.

The key/value cache of the slots is one preallocated tensor per layer, ``(slots, kv_heads, capacity,
head_dim)``, used as a ring: each decode step writes every slot at the same ring position, and each
slot attends only to its own positions (a per-slot mask). A new request's prompt is run on its own
(the full multimodal forward, images included) and its keys and values are copied into the ring
positions just before the next write. Rotary embeddings are applied before caching, so where a token
sits in the ring does not matter, only which positions the mask lets a slot see.

Shapes never change between steps, so the decoding step, sampling included, can be compiled (CUDA
graphs included). Compiled steps on a GPU attend through flex attention with a block-sparse mask, so
that each slot reads only the cache blocks holding its own tokens, not the whole ring.

Sampling draws its randomness from (seed, request key, token index) by a counter-based hash, not from
a global generator: what a request gets does not depend on which requests share its batch or slot.
"""

import logging
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MASK32 = 0xFFFFFFFF
# With compilation on "auto": decoding steps run eagerly first. A run shorter than this never waits
# for a compilation (tens of seconds for a 7B model) that it could not repay.
COMPILE_AFTER_STEPS = 1000
# Each new cache shape compiles the step again; past this many, decoding stays uncompiled.
MAX_COMPILED_SHAPES = 4
# Odd multipliers below 2**31 (a 32-bit value times one stays inside int64) with good avalanche.
_HASH_MULTIPLIERS = (0x21F0AAAD, 0x735A2D97)
_VOCAB_STRIDE = 0x2C1B3C6D


def hash32(x):
    """A 32-bit integer mixing function on int64 tensors (or Python ints) holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _HASH_MULTIPLIERS[0]) & MASK32
    x = x ^ (x >> 15)
    x = (x * _HASH_MULTIPLIERS[1]) & MASK32
    return x ^ (x >> 15)


def request_key(seed: int, key: str) -> int:
    """The 32-bit stream of one request: from the run's seed and the request's own key."""
    return zlib.crc32(f"{seed}:{key}".encode())


def uniform_noise(row_keys, steps, vocab_size: int):
    """(rows, vocab) uniforms in (0, 1): a function of (row key, token index, vocabulary id) only."""
    import torch

    row_base = hash32((row_keys ^ hash32(steps & MASK32)) & MASK32)
    vocab = torch.arange(vocab_size, device=row_keys.device, dtype=torch.int64)
    bits = hash32((row_base[:, None] + vocab[None, :] * _VOCAB_STRIDE) & MASK32)
    return ((bits >> 9).to(torch.float32) + 0.5) / float(1 << 23)  # 23 bits + 0.5: exact in float32


def sample_tokens(logits, temperature: float, top_p: float | None, row_keys, steps, top_k: int | None = None):
    """Next token of each row: greedy when ``temperature`` is 0, else a draw from softmax(logits / T)
    restricted to the ``top_k`` most likely tokens (ties at the k-th kept), then to the nucleus (the fewest most
    likely tokens whose probability reaches ``top_p``), in transformers' order.

    The draw is the Gumbel-max trick on counter-based noise, so it is an exact sample of that
    distribution and repeats for the same (row key, step) whatever the other rows are.
    """
    import torch

    if not temperature:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_k:
        kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, -torch.inf)
    if top_p is not None and top_p < 1.0:
        ordered, order = scaled.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the more likely tokens
        ordered = ordered.masked_fill(before >= top_p, -torch.inf)
        scaled = torch.full_like(scaled, -torch.inf).scatter(1, order, ordered)
    gumbel = -torch.log(-torch.log(uniform_noise(row_keys, steps, scaled.shape[-1])))
    return (scaled + gumbel).argmax(dim=-1)


class SlotKVCache:
    """Keys and values of every slot, one ring per slot; what a transformers attention layer calls.

    Only ``update`` is called by the decoder layers when positions and a 4D mask are given.
    """

    def __init__(self, layer_shapes: list[tuple[int, int, int]], slots: int, capacity: int, dtype, device):
        import torch

        self.capacity = capacity
        self.keys = [
            torch.zeros(slots, heads, capacity, kdim, dtype=dtype, device=device) for heads, kdim, _ in layer_shapes
        ]
        self.values = [
            torch.zeros(slots, heads, capacity, vdim, dtype=dtype, device=device) for heads, _, vdim in layer_shapes
        ]
        self.write_at = torch.zeros(1, dtype=torch.long, device=device)  # the ring position of this step
        if device.type == "cuda":  # fixed addresses, so that a CUDA graph can be replayed over them
            for tensor in (*self.keys, *self.values, self.write_at):
                torch._dynamo.mark_static_address(tensor)

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.write_at, key_states)
        self.values[layer_idx].index_copy_(2, self.write_at, value_states)
        return self.keys[layer_idx], self.values[layer_idx]

    def put(self, slot: int, positions, layers: list[tuple]):
        """Copy one prompt's keys and values, ``(1, heads, length, dim)`` per layer, to ``positions``."""
        for index, (key, value) in enumerate(layers):
            self.keys[index][slot].index_copy_(1, positions, key[0].to(self.keys[index].dtype))
            self.values[index][slot].index_copy_(1, positions, value[0].to(self.values[index].dtype))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


GROUPED_DECODE_ATTENTION = "stic_grouped_decode_sdpa"


def grouped_decode_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """transformers' sdpa attention, except for one new token per row against grouped keys and values.

    With grouped-query attention (Mistral, Qwen2-VL) and a mask, transformers copies every key and
    value once per query head of its group before calling sdpa: for decoding, a full copy of the cache
    per layer and step. Here the group's query heads become the query positions of one sdpa call on
    the shared keys and values instead: the same products, no copy.
    """
    import torch

    rows, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if length != 1 or kv_heads == heads:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # head h reads key/value head h // group size
    output = torch.nn.functional.scaled_dot_product_attention(
        grouped, key, value, attn_mask=attention_mask, scale=scaling
    )
    return output.reshape(rows, 1, heads, dim), None


FLEX_DECODE_ATTENTION = "stic_flex_decode"
BLOCK = 128  # key/value block of the flex decoding kernel; ring capacities are multiples of it


def ring_block_mask(valid):
    """A flex-attention BlockMask from the (slots, capacity) map of positions each slot may attend to.

    Blocks wholly visible are "full" (no per-position test), blocks partly visible are tested with
    ``valid`` itself, the rest are skipped: a slot reads only the blocks holding its own tokens.
    """
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    slots, capacity = valid.shape
    blocks = valid.view(slots, capacity // BLOCK, BLOCK)
    full = blocks.all(dim=-1)
    partial = blocks.any(dim=-1) & ~full

    def listed(flags):  # (count, indices with the flagged blocks first), as BlockMask wants them
        count = flags.sum(dim=-1, dtype=torch.int32)[:, None, None]
        order = torch.argsort((~flags).to(torch.int8), dim=-1, stable=True).to(torch.int32)[:, None, None, :]
        return count, order

    def may_attend(batch, head, query, key):
        return valid[batch, key]

    count, indices = listed(partial)
    full_count, full_indices = listed(full)
    return BlockMask.from_kv_blocks(
        count,
        indices,
        full_count,
        full_indices,
        BLOCK_SIZE=BLOCK,
        mask_mod=may_attend,
        seq_lengths=(1, capacity),
        compute_q_blocks=False,
    )


_attention_registered = False


def register_decoding_attention() -> None:
    """Make both decoding attention functions known to transformers by name (once per process)."""
    global _attention_registered
    if _attention_registered:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(GROUPED_DECODE_ATTENTION, grouped_decode_attention)
    AttentionInterface.register(FLEX_DECODE_ATTENTION, flex_decode_attention)
    _attention_registered = True


def flex_decode_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """Attention of one new token per slot with a ring BlockMask: only the slot's own blocks are read,
    grouped keys and values are shared by their query heads (no copies)."""
    from torch.nn.attention.flex_attention import flex_attention

    output = flex_attention(
        query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1]
    )
    return output.transpose(1, 2).contiguous(), None


def cache_layers(cache) -> list[tuple]:
    """(keys, values) of each layer of a transformers DynamicCache, across its versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def decoder_parts(model):
    """(language model, output head) of a vision-language model, or None where the layout is unknown."""
    inner = getattr(model, "model", None)
    language_model = getattr(inner, "language_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if language_model is None or head is None:
        return None
    return language_model, head


def unsupported_reason(model) -> str | None:
    """Why continuous batching cannot drive this model (it then falls back to plain ``generate``)."""
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        return f"transformers {transformers.__version__}: continuous batching needs transformers 5"
    if decoder_parts(model) is None:
        return f"{type(model).__name__} has no separate language model and output head"
    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    text_attention = getattr(decoder_parts(model)[0].config, "_attn_implementation", attention)
    if text_attention not in ("sdpa", "eager"):
        return f"the attention implementation is {text_attention}; continuous batching needs sdpa or eager"
    text_config = (
        model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    )
    if getattr(text_config, "sliding_window", None) and getattr(text_config, "use_sliding_window", True):
        return "sliding-window attention is not supported"
    return layers_reason(model, text_config)


def layers_reason(model, text_config) -> str | None:
    """Why the text model's layers keep a cache the ring cannot hold: cross-attention to the image (Mllama: its
    keys are the image's, not the prompt's), or layers other than self-attention (LFM2's convolutions, linear
    attention), whose cache is a state rather than keys and values per position."""
    if getattr(text_config, "cross_attention_layers", None):
        return "its text model reads the image through cross-attention layers, whose cache continuous batching lacks"
    layers = getattr(decoder_parts(model)[0], "layers", None) or []
    other = sorted({type(layer).__name__ for layer in layers if not hasattr(layer, "self_attn")})
    if other:
        return (
            f"its text model has layers without self-attention ({', '.join(other)}: convolutions or linear attention), "
            "whose state continuous batching does not hold"
        )
    return None


def inputs_to_device(inputs: dict, device, dtype) -> dict:
    """The processor's tensors on ``device``, the floating-point ones in ``dtype`` (the model's); other values
    as they are. Both engines move a request's inputs with it."""
    import torch

    return {
        key: value.to(device, dtype=dtype if value.is_floating_point() else None)
        if isinstance(value, torch.Tensor)
        else value
        for key, value in inputs.items()
    }


# The position of a prompt's first token, where a model does not count from 0 (transformers' PaliGemma counts
# from 1 in its forward and its generate): the decoding steps, given their positions, continue its count.
FIRST_POSITION = {"paligemma": 1}

# Processor inputs with one value per prompt token (token types): each prompt has its own, and a prompt prefix
# takes its share of them.
PER_TOKEN_INPUTS = ("token_type_ids", "mm_token_type_ids")


class CacheTooLarge(RuntimeError):
    """The key/value cache for the slots does not fit in the free memory of its device."""


def free_memory(device) -> int | None:
    """Bytes free for a new tensor on ``device``: the accelerator's own memory (CUDA, XPU, ...), or the system's
    available memory for the CPU and Apple's unified memory; None where the device does not say."""
    import torch

    if device.type in ("cpu", "mps"):
        import psutil

        return psutil.virtual_memory().available
    backend = getattr(torch, device.type, None)
    if not hasattr(backend, "mem_get_info"):
        return None
    if hasattr(backend, "empty_cache"):
        backend.empty_cache()  # what this process cached is free for the cache too
    return backend.mem_get_info(device)[0]


@dataclass
class PendingRequest:
    """One request ready for the model: prompt ids, its processor outputs (CPU tensors) and limits."""

    tag: object
    ids: list[int]
    mm_inputs: dict
    max_new_tokens: int
    min_new_tokens: int
    key: int  # 32-bit sampling stream
    reserve: int  # new tokens to make room for in the ring (at least max_new_tokens)
    prefix: tuple | None = None  # (group, length): the first `length` ids are shared by the group's requests


@dataclass
class _Slot:
    item: PendingRequest
    tokens: list


def run_stats(rows: int) -> dict:
    """Counters of one run: decoding steps, slot-steps that produced a token, cache rows, prompts run,
    ring size, prompt tokens taken from a shared prefix, shared prefixes run, steps run compiled, and
    caches allocated (0 when the run reused the cache of an earlier one)."""
    return {
        "steps": 0,
        "busy_slot_steps": 0,
        "slots": rows,
        "prefills": 0,
        "capacity": 0,
        "shared_prefix_tokens": 0,
        "prefix_runs": 0,
        "compiled_steps": 0,
        "cache_allocations": 0,
    }


def round_up(value: int, multiple: int = BLOCK) -> int:
    return -(-value // multiple) * multiple


class ContinuousBatcher:
    """Decodes a stream of pending requests through ``slots`` concurrent rows.

    ``stop_token_ids`` end a row (they are not part of its output); ``banned`` is a (vocab,) additive
    float tensor applied to every step's logits (-inf for ids that must never be written).
    """

    def __init__(
        self, model, stop_token_ids: list[int], banned, compile_after_steps: int | None = None, attention: str = "auto"
    ):
        """``compile_after_steps``: decoding steps run eagerly before the step is compiled (0: from the
        first; None: never), so that a short run does not wait for a compilation it cannot repay.
        ``attention``: "sdpa" (a dense mask over the whole ring), "flex" (block-sparse: each slot reads
        only its own blocks; fast once compiled on a GPU), or "auto": flex for compiled steps on a GPU."""
        import torch

        self.model = model
        self.language_model, self.head = decoder_parts(model)
        self.stop_ids = torch.tensor(sorted(set(stop_token_ids)), device=model.device)
        self.stop_set = set(stop_token_ids)
        self.banned = banned.to(model.device)
        self.device, self.dtype = model.device, model.dtype
        inner = model.model
        self.multimodal_rope = hasattr(inner, "get_rope_index")
        self.first_position = FIRST_POSITION.get(getattr(model.config, "model_type", None), 0)
        self.compile_after_steps = compile_after_steps
        self.steps_in_process = 0
        self._compiled = None
        self._compiled_shapes: set = set()
        self.text_config = self.language_model.config
        self.prefill_attention = self.text_config._attn_implementation
        # Decoding attention: where the text model runs sdpa, on grouped keys without copies, or flex.
        register_decoding_attention()
        if self.prefill_attention != "sdpa":
            attention = "eager"
        elif attention == "auto":
            attention = "flex-when-compiled" if self.device.type == "cuda" else "sdpa"
        self.attention = attention
        self.cache: SlotKVCache | None = None  # kept between runs: same shapes, no new compilation
        self.cache_slots = 0
        self.stats = run_stats(0)
        self._prefix = None  # (group, layers, delta) of the last shared prompt prefix
        self.sampling = (0.0, None, None)  # (temperature, top_p, top_k) of the run: constants of the compiled step

    @property
    def compiled(self) -> bool:
        """Whether decoding steps now run compiled (compiled once enough steps ran, and not fallen back)."""
        return self._compiled is not None and self.compile_after_steps is not None

    # ---- the model calls ----
    def _prefill(self, item: PendingRequest):
        """The multimodal forward on one prompt: (logits of its next token, per-layer K/V, next position).

        A prompt whose prefix (images included) it shares with the previous one of its group starts
        from that prefix's keys and values: only its own remaining tokens are run."""
        import torch
        from transformers import DynamicCache

        ids = torch.tensor([item.ids], device=self.device)
        cache = DynamicCache(config=self.model.config)
        with torch.no_grad():
            if item.prefix is None:
                if self.multimodal_rope:  # transformers keeps the last prompt's deltas; a text-only one sets none
                    self.model.model.rope_deltas = None
                output = self.model(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                    **inputs_to_device(item.mm_inputs, self.device, self.dtype),
                )
                delta = self._rope_delta()
            else:
                group, length = item.prefix
                if self._prefix is None or self._prefix[0] != group:
                    inputs = inputs_to_device(item.mm_inputs, self.device, self.dtype)
                    self._prefix = (group, *self._run_prefix(ids[:, :length], inputs))
                    self.stats["prefix_runs"] += 1
                _, layers, delta = self._prefix
                for index, (key, value) in enumerate(layers):
                    cache.update(key, value, index)  # the suffix's keys are concatenated: the stored ones stay
                # Explicit positions: the suffix's text continues after the prefix (and its image grid).
                positions = (
                    torch.arange(length, len(item.ids), device=self.device)[None, :] + delta + self.first_position
                )
                if self.multimodal_rope:
                    positions = positions[None].expand(3, 1, -1)
                output = self.model(
                    input_ids=ids[:, length:],
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                self.stats["shared_prefix_tokens"] += length
        return output.logits[:, -1].float(), cache_layers(cache), len(item.ids) + delta + self.first_position

    def _run_prefix(self, prefix_ids, inputs):
        """Keys and values (and the position delta) of a prompt prefix holding every image."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        if self.multimodal_rope:
            self.model.model.rope_deltas = None
        width = prefix_ids.shape[1]
        inputs = {key: value[:, :width] if key in PER_TOKEN_INPUTS else value for key, value in inputs.items()}
        self.model(
            input_ids=prefix_ids,
            attention_mask=torch.ones_like(prefix_ids),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **inputs,
        )
        return cache_layers(cache), self._rope_delta()

    def _rope_delta(self) -> int:
        """How far text positions after the images are from token indices (2-D image positions only)."""
        if not self.multimodal_rope:
            return 0
        deltas = getattr(self.model.model, "rope_deltas", None)
        return 0 if deltas is None else int(deltas.reshape(-1)[0])

    def _step(self, tokens, positions, valid, generated, min_new, keys, flex: bool):
        """One decoding step of every slot, sampling included: the next token of each slot."""
        import torch

        if flex:
            mask = ring_block_mask(valid)
        else:
            mask = torch.zeros(valid.shape[0], 1, 1, valid.shape[1], dtype=self.dtype, device=valid.device)
            mask = mask.masked_fill(~valid[:, None, None, :], torch.finfo(self.dtype).min)
        hidden = self.language_model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        ).last_hidden_state
        logits = self.head(hidden[:, -1]).float()
        return self._next_tokens(logits, generated, min_new, keys, *self.sampling)

    def _step_flex(self, *args):
        return self._step(*args, flex=True)

    def _step_dense(self, *args):
        return self._step(*args, flex=False)

    def _decode_step(self, *args):
        """The step, compiled once enough steps have run in this process (if compilation is on)."""
        import torch

        compiled = self.compile_after_steps is not None and self.steps_in_process >= self.compile_after_steps
        self.steps_in_process += 1
        if compiled and args[2].shape not in self._compiled_shapes:
            if len(self._compiled_shapes) >= MAX_COMPILED_SHAPES:  # torch would silently stop compiling anyway
                logger.info("the cache changed shape %d times: decoding uncompiled from now on", MAX_COMPILED_SHAPES)
                self.compile_after_steps, compiled = None, False
                if self.attention == "flex-when-compiled":  # uncompiled flex is a slow reference
                    self.attention = "sdpa"
            else:
                self._compiled_shapes.add(args[2].shape)
        flex = self.attention == "flex" or (self.attention == "flex-when-compiled" and compiled)
        if flex:
            self.text_config._attn_implementation = FLEX_DECODE_ATTENTION
        elif self.attention != "eager":
            self.text_config._attn_implementation = GROUPED_DECODE_ATTENTION
        try:
            with torch.no_grad():
                return self._run_step(compiled, flex, args)
        finally:
            self.text_config._attn_implementation = self.prefill_attention

    def _run_step(self, compiled: bool, flex: bool, args):
        import torch

        if compiled:
            if self._compiled is None:
                logger.info("compiling the decoding step (once per process and cache shape)")
                self._compiled = torch.compile(
                    self._step_flex if flex else self._step_dense, mode="reduce-overhead", dynamic=False
                )
            try:
                tokens = self._compiled(*args).clone()  # the graph's output buffer is reused by the next replay
                self.stats["compiled_steps"] += 1
                return tokens
            except Exception as err:  # noqa: BLE001 - any compiler failure: decoding still works uncompiled
                logger.warning(
                    "compiled decoding failed (%s: %s); decoding without compilation", type(err).__name__, err
                )
                self.compile_after_steps = None
                if flex and self.attention == "flex-when-compiled":  # eager flex is a slow reference
                    self.attention = "sdpa"
                    self.text_config._attn_implementation = GROUPED_DECODE_ATTENTION
                    flex = False
        return (self._step_flex if flex else self._step_dense)(*args)

    def _next_tokens(self, logits, generated, min_new, keys, temperature, top_p, top_k=None):
        import torch

        logits = logits + self.banned
        too_early = generated < min_new  # rows that may not stop yet (no test on the host: no wait for the GPU)
        logits[:, self.stop_ids] = torch.where(too_early[:, None], -torch.inf, logits[:, self.stop_ids])
        return sample_tokens(logits, temperature, top_p, keys, generated, top_k)

    def _allocate(self, slots: int, capacity: int, layers: list[tuple]):
        import torch

        shapes = [(key.shape[1], key.shape[-1], value.shape[-1]) for key, value in layers]
        self.cache = None  # free the old one first
        element = torch.empty(0, dtype=self.dtype).element_size()
        needed = slots * capacity * element * sum(heads * (kdim + vdim) for heads, kdim, vdim in shapes)
        free = free_memory(self.device)
        if free is not None and needed > 0.9 * free:
            raise CacheTooLarge(
                f"the key/value cache for {slots} sequences of up to {capacity} tokens needs {needed / 2**30:.1f} "
                f"GiB and {free / 2**30:.1f} GiB are free on {self.device.type}: lower batch_size or max_new_tokens"
            )
        self.cache = SlotKVCache(shapes, slots, capacity, self.dtype, self.device)
        self.cache_slots = slots
        self.stats["cache_allocations"] += 1
        logger.info(
            "continuous batching: %d slots of %d tokens (%.1f GiB of key/value cache)",
            slots,
            capacity,
            self.cache.nbytes() / 2**30,
        )

    # ---- the loop ----
    def run(
        self,
        items: Iterator[PendingRequest],
        slots: int,
        temperature: float,
        top_p: float | None,
        top_k: int | None = None,
    ) -> Iterator[tuple[object, list[int], bool]]:
        """(tag, new tokens without the stop token, truncated) per request, in the order they finish."""
        try:
            yield from self._run(items, slots, temperature, top_p, top_k)
        finally:
            self._prefix = None  # a stored prompt prefix does not outlive the run

    def _run(self, items, slots, temperature, top_p, top_k):
        import torch

        source = iter(items)
        waiting: deque[PendingRequest] = deque()
        exhausted = False

        def look_ahead():
            nonlocal exhausted
            while not exhausted and len(waiting) < slots:
                try:
                    waiting.append(next(source))
                except StopIteration:
                    exhausted = True

        look_ahead()
        if not waiting:
            return
        # The cache's rows never shrink in a process: a smaller call leaves rows idle rather than
        # allocating (and compiling for) a new shape. Requests enter only the first ``slots`` rows.
        rows = max(slots, self.cache_slots) if self.cache is not None else slots
        self.stats = run_stats(rows)
        self._prefix = None
        active: list[_Slot | None] = [None] * rows
        device = self.device
        tokens = torch.zeros(rows, dtype=torch.long, device=device)
        positions = torch.zeros(rows, dtype=torch.long, device=device)
        generated = torch.zeros(rows, dtype=torch.long, device=device)
        min_new = torch.zeros(rows, dtype=torch.long, device=device)
        keys = torch.zeros(rows, dtype=torch.long, device=device)
        step = 0  # global write counter; the ring position is step % capacity
        capacity = self.cache.capacity if self.cache is not None and self.cache_slots == rows else 0
        valid = torch.zeros(rows, capacity, dtype=torch.bool, device=device) if capacity else None

        def room(item: PendingRequest) -> int:
            return len(item.ids) + max(item.reserve, item.max_new_tokens)

        self.sampling = (float(temperature or 0.0), top_p, top_k)

        def finish(slot_index: int, truncated: bool):
            slot = active[slot_index]
            active[slot_index] = None
            return slot.item.tag, slot.tokens, truncated

        while True:
            look_ahead()
            finished = []
            # Admit waiting requests into free slots; one longer than the ring waits for the slots to drain.
            for slot_index in range(slots):
                if active[slot_index] is not None or not waiting:
                    continue
                item = waiting[0]
                if room(item) > capacity:
                    if any(active):
                        break
                    logits, layers, next_position = self._prefill(item)
                    capacity = round_up(max(room(queued) for queued in waiting))  # one growth for the queue
                    self._allocate(rows, capacity, layers)
                    valid = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
                else:
                    logits, layers, next_position = self._prefill(item)
                waiting.popleft()
                self.stats["prefills"] += 1
                self.stats["capacity"] = capacity
                length = len(item.ids)
                where = (step - length + torch.arange(length, device=device)) % capacity
                self.cache.put(slot_index, where, layers)
                valid[slot_index] = False
                valid[slot_index, where] = True
                keys[slot_index] = item.key
                generated[slot_index] = 0
                min_new[slot_index] = item.min_new_tokens
                first = self._next_tokens(
                    logits,
                    generated[slot_index : slot_index + 1],
                    min_new[slot_index : slot_index + 1],
                    keys[slot_index : slot_index + 1],
                    temperature,
                    top_p,
                    top_k,
                )
                token = int(first[0])
                active[slot_index] = _Slot(item, [])
                if token in self.stop_set:
                    finished.append(finish(slot_index, False))
                    continue
                active[slot_index].tokens.append(token)
                if item.max_new_tokens <= 1:
                    finished.append(finish(slot_index, True))
                    continue
                tokens[slot_index] = token
                positions[slot_index] = next_position
                generated[slot_index] = 1
                look_ahead()
            yield from finished
            if not any(active):
                if waiting or not exhausted:
                    continue
                return

            # One decoding step for every slot (free ones compute garbage that nobody reads).
            ring = step % capacity
            self.cache.write_at.fill_(ring)
            valid[:, ring] = True
            chosen = self._decode_step(tokens, positions, valid, generated, min_new, keys)
            step += 1
            self.stats["steps"] = step
            self.stats["busy_slot_steps"] += sum(slot is not None for slot in active)
            tokens.copy_(chosen)
            positions += 1
            generated += 1
            for slot_index, token in enumerate(chosen.tolist()):
                slot = active[slot_index]
                if slot is None:
                    continue
                if token in self.stop_set:
                    yield finish(slot_index, False)
                    continue
                slot.tokens.append(token)
                if len(slot.tokens) >= slot.item.max_new_tokens:
                    yield finish(slot_index, True)
