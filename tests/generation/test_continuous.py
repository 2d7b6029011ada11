"""The continuous-batching engine: its sampling against float64 references, and its generations against
transformers' own ``generate`` on the tiny models (float32 on the CPU, same logits, same tokens)."""

import math
import random

import pytest
import torch
from PIL import Image

from stic_plugin.generation.continuous import MASK32, hash32, request_key, sample_tokens, uniform_noise

from helpers import mixed_requests, tiny_generator


def naive_hash32(x: int) -> int:
    """The same mixing function, step by step on Python integers (no tensors, no int64 wrap-around)."""
    x ^= x >> 16
    x = (x * 0x21F0AAAD) % 2**32
    x ^= x >> 15
    x = (x * 0x735A2D97) % 2**32
    x ^= x >> 15
    return x


def test_hash_matches_a_naive_integer_computation():
    rng = random.Random(0)
    values = [0, 1, 2**32 - 1, 2**31] + [rng.randrange(2**32) for _ in range(2000)]
    got = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [naive_hash32(v) for v in values]


def test_noise_is_a_function_of_key_step_and_token_only():
    keys = torch.tensor([request_key(7, "a"), request_key(7, "b"), request_key(7, "a")], dtype=torch.int64)
    steps = torch.tensor([3, 3, 3])
    noise = uniform_noise(keys, steps, 50)
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    alone = uniform_noise(keys[1:2], steps[1:2], 50)
    assert torch.equal(alone[0], noise[1])  # whatever else is in the batch
    assert not torch.equal(uniform_noise(keys[:1], torch.tensor([4]), 50)[0], noise[0])
    assert float(noise.min()) > 0 and float(noise.max()) < 1
    # Reference: the 23 high bits of the naive hash chain, as float64.
    row_base = naive_hash32((int(keys[1]) ^ naive_hash32(3)) & MASK32)
    expected = [((naive_hash32((row_base + v * 0x2C1B3C6D) % 2**32) >> 9) + 0.5) / 2**23 for v in range(50)]
    assert noise[1].double().tolist() == pytest.approx(expected, abs=1e-12)


def _draw_frequencies(logits: list[float], temperature: float, top_p, draws: int, top_k=None) -> list[float]:
    row = torch.tensor([logits], dtype=torch.float32).repeat(draws, 1)
    keys = torch.tensor([request_key(1, f"row{i}") for i in range(draws)], dtype=torch.int64)
    tokens = sample_tokens(row, temperature, top_p, keys, torch.zeros(draws, dtype=torch.int64), top_k)
    counts = torch.bincount(tokens, minlength=len(logits)).double()
    return (counts / draws).tolist()


def _reference_distribution(logits: list[float], temperature: float, top_p, top_k=None) -> list[float]:
    """softmax(logits / T) in float64 over the top_k largest (ties kept), cut to the nucleus (fewest top tokens
    reaching top_p), renormalised."""
    scaled = [value / temperature for value in logits]
    if top_k:
        kth = sorted(scaled, reverse=True)[min(top_k, len(scaled)) - 1]
        scaled = [value if value >= kth else -math.inf for value in scaled]
    top = max(scaled)
    weights = [math.exp(value - top) for value in scaled]
    total = sum(weights)
    probs = [w / total for w in weights]
    if top_p is None:
        return probs
    kept, mass = set(), 0.0
    for index in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= top_p:
            break
        kept.add(index)
        mass += probs[index]
    kept_total = sum(probs[i] for i in kept)
    return [probs[i] / kept_total if i in kept else 0.0 for i in range(len(probs))]


@pytest.mark.parametrize(
    "temperature,top_p,top_k",
    [(1.0, None, None), (0.7, None, None), (1.3, 0.8, None), (0.5, 0.5, None), (1.0, None, 3), (1.2, 0.9, 5)],
)
def test_sampling_draws_the_tempered_nucleus_distribution(temperature, top_p, top_k):
    logits = [2.0, 1.5, 1.0, 0.2, -0.5, -1.0, 0.9, 0.0]
    expected = _reference_distribution(logits, temperature, top_p, top_k)
    got = _draw_frequencies(logits, temperature, top_p, draws=60_000, top_k=top_k)
    total_variation = sum(abs(a - b) for a, b in zip(got, expected)) / 2
    assert total_variation < 0.01, (got, expected)
    for observed, probability in zip(got, expected):
        if probability == 0.0:
            assert observed == 0.0  # outside the top k or the nucleus: never drawn


def naive_attention(query, key, value, visible, scale):
    """Float64 attention of one query per row and head, loops only; head h reads key/value head h // group."""
    rows, heads, _, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    out = torch.zeros(rows, 1, heads, dim, dtype=torch.float64)
    for row in range(rows):
        for head in range(heads):
            group = head // (heads // kv_heads)
            scores = [
                scale * float(query[row, head, 0].double() @ key[row, group, j].double()) if visible[row, j] else None
                for j in range(length)
            ]
            top = max(x for x in scores if x is not None)
            weights = [math.exp(x - top) if x is not None else 0.0 for x in scores]
            total = sum(weights)
            for d in range(dim):
                out[row, 0, head, d] = sum(w * float(value[row, group, j, d]) for j, w in enumerate(weights)) / total
    return out


def _attention_inputs(rows=3, heads=6, kv_heads=2, length=9, dim=4, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(rows, heads, 1, dim, dtype=dtype, generator=generator)
    key = torch.randn(rows, kv_heads, length, dim, dtype=dtype, generator=generator)
    value = torch.randn(rows, kv_heads, length, dim, dtype=dtype, generator=generator)
    visible = torch.rand(rows, length, generator=generator) < 0.6
    visible[:, 0] = True
    return query, key, value, visible


def test_grouped_decode_attention_matches_a_naive_float64_attention():
    from stic_plugin.generation.continuous import grouped_decode_attention

    query, key, value, visible = _attention_inputs()
    mask = torch.zeros(3, 1, 1, 9, dtype=torch.float64).masked_fill(~visible[:, None, None, :], -1e300)
    got, _ = grouped_decode_attention(None, query, key, value, mask, scaling=0.37)
    assert got.shape == (3, 1, 6, 4)
    expected = naive_attention(query, key, value, visible, 0.37)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_ring_block_mask_attention_matches_a_naive_float64_attention():
    """Whole blocks visible, some blocks partly visible, some not at all, a window wrapping the ring."""
    from stic_plugin.generation.continuous import BLOCK, flex_decode_attention, ring_block_mask

    capacity = 4 * BLOCK
    query, key, value, _ = _attention_inputs(rows=4, length=capacity, dim=8, dtype=torch.float32, seed=1)
    visible = torch.zeros(4, capacity, dtype=torch.bool)
    visible[0, 10:300] = True  # partial, full, partial
    visible[1, BLOCK : 2 * BLOCK] = True  # exactly one full block
    visible[2, capacity - 50 :] = True  # wraps: the end of the ring and its start
    visible[2, :70] = True
    visible[3, 5] = True  # one position
    block_mask = ring_block_mask(visible)
    got, _ = flex_decode_attention(None, query, key, value, block_mask, scaling=0.2)
    expected = naive_attention(query, key, value, visible, 0.2)
    assert torch.allclose(got.double(), expected, rtol=1e-4, atol=1e-5)
    # Blocks with nothing visible are skipped: slot 1 lists exactly its one full block and no partial one.
    assert block_mask.full_kv_num_blocks[1].item() == 1 and block_mask.kv_num_blocks[1].item() == 0
    assert block_mask.full_kv_indices[1, 0, 0, 0].item() == 1


def test_greedy_is_argmax():
    logits = torch.randn(5, 30, dtype=torch.float32)
    keys = torch.arange(5, dtype=torch.int64)
    assert torch.equal(sample_tokens(logits, 0.0, None, keys, keys), logits.argmax(-1))


# ---- the engine on the tiny models (generators: tests/generation/conftest.py) ----


@pytest.mark.parametrize("model", ["tiny-llava", "tiny-qwen2vl", "tiny-llava-next"])
def test_continuous_greedy_equals_transformers_generate(generators, model):
    plain, continuous = generators[model]["plain"], generators[model]["continuous"]
    assert continuous.engine == "continuous"
    text = continuous.model.config.get_text_config(decoder=True)
    assert text.num_key_value_heads < text.num_attention_heads  # so the grouped decoding attention is exercised
    requests = mixed_requests(11)
    expected = plain.generate(requests, 30, temperature=0, slots=len(requests))
    lengths = {generation.tokens for generation in expected}
    assert len(lengths) >= 4, "the test needs rows that end at different points"
    assert any(not g.truncated for g in expected) and any(g.truncated for g in expected)
    for slots in (1, 3, 16):
        got = continuous.generate(requests, 30, temperature=0, slots=slots)
        assert got == expected, f"slots={slots}"
        assert continuous.decoding_attention == "sdpa"  # on the CPU: the grouped sdpa decoding attention
        if slots == 3:  # rows refilled: the slots stayed busy
            stats = continuous.last_run_stats
            assert stats["prefills"] == len(requests)
            # The first token comes from the prompt's own forward; each later one (or the stop) from a step.
            decode_steps = sum(g.tokens - 1 + (not g.truncated) if g.tokens else 0 for g in got)
            assert stats["busy_slot_steps"] == decode_steps


def test_the_ring_wraps_around(generators):
    """One slot, many requests: the write position goes round the ring several times."""
    plain, continuous = generators["tiny-qwen2vl"]["plain"], generators["tiny-qwen2vl"]["continuous"]
    requests = mixed_requests(90)
    expected = plain.generate(requests, 30, temperature=0, slots=len(requests))
    assert continuous.generate(requests, 30, temperature=0, slots=1) == expected
    stats = continuous.last_run_stats
    assert stats["steps"] > 2 * stats["capacity"]


def test_a_longer_prompt_later_waits_for_a_larger_ring(generators):
    plain, continuous = generators["tiny-llava"]["plain"], generators["tiny-llava"]["continuous"]
    requests = mixed_requests(8, long_from=5)
    expected = plain.generate(requests, 30, temperature=0, slots=len(requests))
    got = continuous.generate(requests, 30, temperature=0, slots=3)
    assert got == expected
    assert continuous.last_run_stats["capacity"] >= max(len(continuous.encode(r)) for r in requests) + 30


def test_sampled_generations_do_not_depend_on_slots_or_order(generators):
    continuous = generators["tiny-llava"]["continuous"]
    requests = mixed_requests(9)
    reference = continuous.generate(requests, 30, temperature=1.0, top_p=0.9, seed=5, slots=2)
    shuffled = list(reversed(requests))
    again = continuous.generate(shuffled, 30, temperature=1.0, top_p=0.9, seed=5, slots=7)
    assert list(reversed(again)) == reference
    other_seed = continuous.generate(requests, 30, temperature=1.0, top_p=0.9, seed=6, slots=2)
    assert other_seed != reference


@pytest.mark.parametrize("model", ["tiny-llava", "tiny-qwen2vl", "tiny-llava-next"])
def test_requests_on_the_same_image_share_its_prefix(generators, model):
    """As pref sends them: two prompts on one image object; the prefix with the image runs once."""
    from stic_plugin.generation.base import Request, user_turn

    plain, continuous = generators[model]["plain"], generators[model]["continuous"]
    requests = []
    for index in range(5):
        image = Image.new("RGB", (448, 448) if index % 2 else (300, 200), (50 * index, 80, 120))
        requests.append(Request.single(user_turn(f"Describe image {index} step by step."), image, key=f"{index}:c"))
        requests.append(Request.single(user_turn("Tell a story about it."), image, key=f"{index}:r"))
    expected = plain.generate(requests, 30, temperature=0, slots=len(requests))
    assert continuous.generate(requests, 30, temperature=0, slots=3) == expected
    stats = continuous.last_run_stats
    assert stats["prefix_runs"] == 5 and stats["prefills"] == 10  # one image prefix per pair
    assert stats["shared_prefix_tokens"] > 10 * len(continuous.encode(requests[0])) // 2
    sampled = continuous.generate(requests, 30, temperature=1.0, seed=4, slots=3)
    alone = [continuous.generate([request], 30, temperature=1.0, seed=4)[0] for request in requests]
    assert sampled == alone  # sharing the prefix changes nothing in what is drawn


def test_a_smaller_call_reuses_the_cache(generators):
    """Fewer slots than an earlier call: the same cache (no new allocation, no new compiled shape)."""
    continuous = generators["tiny-llava"]["continuous"]
    requests = mixed_requests(8)
    continuous.generate(requests, 30, temperature=0, slots=6)
    cache = (continuous.cache_slots, continuous.cache_capacity)
    expected = generators["tiny-llava"]["plain"].generate(requests[:2], 30, temperature=0)
    assert continuous.generate(requests[:2], 30, temperature=0) == expected
    stats = continuous.last_run_stats
    assert stats["cache_allocations"] == 0 and (continuous.cache_slots, continuous.cache_capacity) == cache
    assert stats["slots"] >= 6


@pytest.mark.slow  # compiles the decoding step with inductor
@pytest.mark.xdist_group("inductor")  # on one worker: the later compilations reuse its caches
def test_compiled_decoding_gives_the_same_tokens_and_compiles_once(tiny):
    """torch.compile of the decoding step (inductor on the CPU here; CUDA graphs on a GPU)."""
    from torch._dynamo.utils import counters

    plain = tiny_generator(tiny["tiny-llava"], "llava", engine="plain")
    compiled = tiny_generator(tiny["tiny-llava"], "llava", compile_decoding=True)
    requests = mixed_requests(8)
    expected = plain.generate(requests, 30, temperature=0)
    assert compiled.generate(requests, 30, temperature=0, slots=3) == expected
    stats = compiled.last_run_stats
    assert compiled.decoding_compiled and stats["compiled_steps"] == stats["steps"] > 0  # every step; no fallback
    graphs = counters["stats"]["unique_graphs"]
    assert compiled.generate(list(reversed(requests)), 30, temperature=0, slots=3) == list(reversed(expected))
    assert counters["stats"]["unique_graphs"] == graphs  # a second call reuses the compiled step


@pytest.fixture
def attention_calls():
    """Counts the calls of the decoding attention functions (registered again around the test)."""
    from transformers import AttentionInterface

    from stic_plugin.generation import continuous

    continuous.register_decoding_attention()  # done: an engine built in the test keeps the counting ones

    calls = {continuous.GROUPED_DECODE_ATTENTION: 0, continuous.FLEX_DECODE_ATTENTION: 0}
    originals = {
        continuous.GROUPED_DECODE_ATTENTION: continuous.grouped_decode_attention,
        continuous.FLEX_DECODE_ATTENTION: continuous.flex_decode_attention,
    }

    def counting(name):
        def attention(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)

        return attention

    for name in originals:
        AttentionInterface.register(name, counting(name))
    yield calls
    for name, function in originals.items():
        AttentionInterface.register(name, function)


def test_flex_decoding_gives_the_same_tokens(tiny, generators, attention_calls):
    """The block-sparse decoding attention (run eagerly here: the reference implementation of flex)."""
    from stic_plugin.generation.continuous import FLEX_DECODE_ATTENTION, GROUPED_DECODE_ATTENTION

    plain, continuous = generators["tiny-qwen2vl"]["plain"], generators["tiny-qwen2vl"]["continuous"]
    flex = tiny_generator(tiny["tiny-qwen2vl"], "qwen2_vl", attention="flex")
    requests = mixed_requests(7)
    expected = plain.generate(requests, 30, temperature=0, slots=len(requests))
    assert flex.generate(requests, 30, temperature=0, slots=3) == expected
    assert flex.decoding_attention == "flex"
    layers = continuous.model.config.get_text_config(decoder=True).num_hidden_layers
    assert attention_calls[FLEX_DECODE_ATTENTION] == layers * flex.last_run_stats["steps"]
    before = attention_calls[GROUPED_DECODE_ATTENTION]
    assert continuous.generate(requests, 30, temperature=0, slots=3) == expected
    assert attention_calls[GROUPED_DECODE_ATTENTION] - before == layers * continuous.last_run_stats["steps"]


@pytest.mark.slow  # compiles the decoding step with inductor
@pytest.mark.xdist_group("inductor")  # on one worker: the later compilations reuse its caches
def test_auto_compilation_starts_after_some_eager_steps(tiny):
    """A run switches from eager to compiled steps midway, with the same tokens."""

    plain = tiny_generator(tiny["tiny-llava"], "llava", engine="plain")
    tiered = tiny_generator(tiny["tiny-llava"], "llava")
    tiered.compile_after_steps = 6
    requests = mixed_requests(6)
    expected = plain.generate(requests, 30, temperature=0)
    assert tiered.generate(requests, 30, temperature=0, slots=2) == expected
    stats = tiered.last_run_stats
    assert tiered.decoding_compiled and stats["steps"] - stats["compiled_steps"] == 6 and stats["compiled_steps"] > 0


@pytest.mark.slow  # compiles the decoding step with inductor
@pytest.mark.xdist_group("inductor")  # on one worker: the later compilations reuse its caches
def test_compiled_flex_decoding_gives_the_same_tokens(tiny):
    """The GPU path (compiled step, block-sparse flex attention), compiled here by inductor for the CPU."""
    plain = tiny_generator(tiny["tiny-qwen2vl"], "qwen2_vl", engine="plain")
    compiled = tiny_generator(tiny["tiny-qwen2vl"], "qwen2_vl", compile_decoding=True, attention="flex")
    requests = mixed_requests(7)
    assert compiled.generate(requests, 30, temperature=0, slots=3) == plain.generate(requests, 30, temperature=0)
    # Sampling runs inside the compiled step: the same draws as the uncompiled engine.
    eager = tiny_generator(tiny["tiny-qwen2vl"], "qwen2_vl")
    sampled = compiled.generate(requests, 30, temperature=0.8, top_p=0.9, seed=3, slots=3)
    assert sampled == eager.generate(requests, 30, temperature=0.8, top_p=0.9, seed=3, slots=3)
    stats = compiled.last_run_stats
    assert compiled.decoding_attention == "flex" and compiled.decoding_compiled
    assert stats["compiled_steps"] == stats["steps"] > 0


def test_older_transformers_fall_back_to_plain_batches(generators, monkeypatch):
    import transformers

    from stic_plugin.generation.continuous import unsupported_reason

    model = generators["tiny-llava"]["continuous"].model
    assert unsupported_reason(model) is None
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    assert "needs transformers 5" in unsupported_reason(model)


def test_a_finished_row_hands_its_slot_to_the_next_request(generators):
    """Two slots, one long request and five short ones: the short ones pass through the second slot
    while the long one decodes, so the run takes as many steps as the long request alone."""
    from stic_plugin.generation.base import Request, user_turn

    continuous = generators["tiny-llava"]["continuous"]
    lengths = [30, 3, 3, 3, 3, 3]
    requests = [
        Request.single(user_turn(f"Describe {i}."), Image.new("RGB", (64, 64)), max_new_tokens=n, min_new_tokens=n)
        for i, n in enumerate(lengths)
    ]
    outputs = continuous.generate(requests, 30, temperature=0, slots=2)
    assert [output.tokens for output in outputs] == lengths
    stats = continuous.last_run_stats
    # Each request's first token comes from its prompt's forward, the others from decoding steps.
    assert stats["steps"] == lengths[0] - 1  # fixed batches of two would take 29 + 2 + 2 steps
    assert stats["busy_slot_steps"] == sum(n - 1 for n in lengths)


def test_the_models_own_generation_config_changes_no_engine(generators, monkeypatch):
    """A checkpoint's generation_config (a repetition penalty, say) is applied by neither engine: the texts are
    those of the request's settings alone, the same on every engine."""
    plain, continuous = generators["tiny-llava"]["plain"], generators["tiny-llava"]["continuous"]
    requests = mixed_requests(6)
    expected = continuous.generate(requests, 20, temperature=0, slots=6)
    monkeypatch.setattr(plain.model.generation_config, "repetition_penalty", 5.0)
    monkeypatch.setattr(plain.model.generation_config, "no_repeat_ngram_size", 1)
    assert plain.generate(requests, 20, temperature=0, slots=6) == expected


def test_a_cache_larger_than_the_free_memory_is_refused_on_every_device_before_it_is_allocated(generators):
    """Before: only on CUDA; on the CPU, max_new_tokens=100000000000 died in the allocator with a traceback."""
    from stic_plugin.generation.continuous import CacheTooLarge

    continuous = generators["tiny-llava"]["continuous"]
    with pytest.raises(CacheTooLarge, match=r"GiB are free on cpu: lower batch_size or max_new_tokens"):
        continuous.generate(mixed_requests(2), 100_000_000_000, temperature=0, slots=2)
    assert continuous.generate(mixed_requests(2), 5, temperature=0, slots=2)  # and it still generates
