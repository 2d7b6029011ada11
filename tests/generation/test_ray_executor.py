"""``executor: ray``: the rows handed to Ray Data, and ``stic-cli pref``, ``infuse`` and ``dar`` with
``engine=vllm executor=ray`` on Ray instances of this machine with vLLM's CPU build (marked slow): dar starts one of
its own, as a command does without a cluster; pref and infuse join one through RAY_ADDRESS, as a cluster is joined."""

import json
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stic_plugin.data.images import EMPTY
from stic_plugin.generation import ray_executor
from stic_plugin.generation.base import Request
from stic_plugin.pipeline.image_inputs import ImageFile

from helpers import (
    VLLM_ENV,
    VLLM_IN_PROCESS,
    killed_after_records,
    needs_ray,
    pref_command,
    run_vllm,
    subprocess_env,
    texts_by_image,
)

# A Ray instance of this machine, started as `ray.init()` in a command starts one, that prints where it listens and
# stays up until its input ends.
RAY_INSTANCE = """
import sys
import ray
ray.init(address="local", include_dashboard=False, log_to_driver=False)
print("RAY_ADDRESS=" + ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="module")
def ray_address():
    """One Ray instance that commands join through RAY_ADDRESS, as they join a cluster, instead of each starting its
    own: each saves Ray's start and that of Ray Data's own actors, which the instance keeps (seconds each). Its
    workers, the engines among them, inherit its settings: those the tests give vLLM."""
    import os

    instance = subprocess.Popen(
        [sys.executable, "-c", RAY_INSTANCE],
        env=subprocess_env(**VLLM_ENV),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = iter(instance.stdout.readline, "")  # Ray may print lines of its own first
        address = next((line.strip().split("=", 1)[1] for line in lines if line.startswith("RAY_ADDRESS=")), None)
        assert address, f"the Ray instance did not start (exit status {instance.poll()})"
        yield address
    finally:
        instance.stdin.close()
        try:
            instance.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(instance.pid, signal.SIGKILL)  # what its shutdown left behind, if anything
        except ProcessLookupError:
            pass


def named_request(count: int, images: list, lora=None) -> dict:
    """What ``RayVllmGenerator.named`` sends for a request about ``count`` images, as a Ray worker unpickles it."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    messages = [{"role": "user", "content": IMAGE_PLACEHOLDER * count + "Describe."}]
    sampling = {"max_tokens": 8, "min_tokens": 0, "stop_token_ids": [2], "seed": 5}
    named = {"messages": messages, "system": None, "images": images, "sampling_keys": sampling, "lora": lora}
    return pickle.loads(pickle.dumps(named))


def ray_worker(loaded, bias: dict | None = None) -> "ray_executor.RowMaker":
    """The stage a Ray worker runs, for a tiny model loaded by the transformers engines (the template changed as
    the vllm engine changes it: one placeholder per image, which vLLM expands)."""
    import copy

    template = copy.copy(loaded.template)
    template.mm_plugin = copy.copy(template.mm_plugin)
    template.mm_plugin.expand_mm_tokens = False
    processor = loaded.processor
    maker = ray_executor.RowMaker(
        template, loaded.tokenizer, processor, processor.image_max_pixels, processor.image_min_pixels, bias or {}
    )
    return pickle.loads(pickle.dumps(maker))  # as it travels to the workers


def test_a_worker_s_row_holds_the_prompt_the_read_pictures_the_sampling_keys_and_the_bias(tiny, tmp_path):
    from helpers import tiny_model

    picture = Image.effect_noise((40, 30), 60).convert("RGB")
    picture.save(tmp_path / "a.png")
    named = ImageFile(str(tmp_path / "a.png"), 10**8)
    bias = {32000: -100.0, 5: -100.0}
    loaded = tiny_model(tiny["tiny-llava"], "llava")
    worker = ray_worker(loaded, bias)
    image_id = loaded.tokenizer.convert_tokens_to_ids(loaded.template.mm_plugin.image_token)

    two = worker.row(3, named_request(2, [named, ray_executor.png_bytes(picture)], lora="/adapters/a"))
    assert two[ray_executor.INDEX] == 3 and two["model"] == "/adapters/a"
    assert two["tokenized_prompt"].count(image_id) == 2  # one placeholder per image: vLLM expands it
    images = two["multimodal_data"]["image"]
    assert len(images) == 2 and all(np.array_equal(np.asarray(image), np.asarray(picture)) for image in images)
    assert two["sampling_params"] == {"max_tokens": 8, "min_tokens": 0, "stop_token_ids": [2], "seed": 5} | {
        "logit_bias": bias
    }
    assert two[ray_executor.UNREADABLE] == b""
    one = worker.row(0, named_request(1, [named]))
    assert isinstance(one["multimodal_data"]["image"], Image.Image)  # one image, as vLLM is given it locally
    assert one["tokenized_prompt"].count(image_id) == 1 and "model" not in one
    text_only = worker.row(1, named_request(0, []))
    assert text_only["multimodal_data"] is None and image_id not in text_only["tokenized_prompt"]
    batch = {ray_executor.INDEX: np.array([7, 8]), ray_executor.REQUEST: [pickle.dumps(named_request(1, [named]))] * 2}
    assert list(worker(batch)[ray_executor.INDEX]) == [7, 8]


def test_a_request_whose_image_a_worker_cannot_read_becomes_a_one_token_row_that_says_why(tiny, tmp_path):
    from helpers import tiny_model

    Image.effect_noise((40, 30), 60).convert("RGB").save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    images = [ImageFile(str(tmp_path / "good.png"), 10**8), ImageFile(str(tmp_path / "empty.png"), 10**8)]
    row = ray_worker(tiny_model(tiny["tiny-llava"], "llava")).row(0, named_request(2, images))
    assert len(row["tokenized_prompt"]) == 1 and row["multimodal_data"] is None
    assert row["sampling_params"]["max_tokens"] == 1
    unreadable = pickle.loads(row[ray_executor.UNREADABLE])
    assert (unreadable.reason, unreadable.image) == (EMPTY, 1)  # the request's second image


def test_a_node_that_cannot_read_the_images_or_lacks_the_project_is_named_with_the_way_out():
    assert ray_executor.node_problem("10.0.0.2", False, []) is None
    lacks = ray_executor.node_problem("10.0.0.2", True, [])
    assert "10.0.0.2" in lacks and "install it on every node" in lacks and "\n" not in lacks
    blind = ray_executor.node_problem("10.0.0.2", False, ["/home/me/images/a.png"])
    assert "10.0.0.2 cannot read /home/me/images/a.png" in blind and "\n" not in blind
    assert "mounts at the same path" in blind and "`ship_images: true`" in blind


class FakeCluster:
    """Ray as ``check_nodes`` uses it: alive nodes, each answering the probe with what it lacks (``blind``: the
    nodes that read no file)."""

    def __init__(self, blind: set):
        self.blind, self.probed = blind, []
        self.alive = [{"Alive": True, "NodeID": f"{n:056x}", "NodeManagerAddress": f"10.0.0.{n}"} for n in (1, 2)]

    def nodes(self):
        return self.alive + [{"Alive": False, "NodeID": f"{9:056x}", "NodeManagerAddress": "10.0.0.9"}]

    def remote(self, num_cpus):
        cluster = self

        class Probe:
            def __init__(self, function):
                self.function = function

            def options(self, scheduling_strategy):
                self.node = scheduling_strategy.node_id
                return self

            def remote(self, files):
                cluster.probed.append((self.node, list(files)))
                lacks_project, unreadable = self.function(files)
                return lacks_project, list(files) if self.node in cluster.blind else unreadable

        return Probe

    def get(self, answers):
        return answers


def test_before_the_first_request_every_node_is_asked_whether_it_reads_the_image_files(tmp_path):
    pytest.importorskip("ray")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    named = Request.single("<image>x", ImageFile(str(tmp_path / "a.png"), 10**8))
    missing_here = Request.single("<image>x", ImageFile(str(tmp_path / "gone.png"), 10**8))
    text_only = Request([{"role": "user", "content": "x"}])

    def generator(cluster):
        made = object.__new__(ray_executor.RayVllmGenerator)
        made.ray, made.nodes_checked, made.files_checked = cluster, False, False
        return made

    cluster = FakeCluster(blind=set())
    checked = generator(cluster)
    for request in (text_only, missing_here, named, named):
        checked.check_nodes(request)
    # the project at the first request; the files at the first that names files this machine reads; then never
    first, second = f"{1:056x}", f"{2:056x}"
    assert cluster.probed == [
        (first, []),
        (second, []),
        (first, [str(tmp_path / "a.png")]),
        (second, [str(tmp_path / "a.png")]),
    ]

    blind = generator(FakeCluster(blind={second}))
    with pytest.raises(ValueError, match=r"Ray node 10\.0\.0\.2 cannot read .*a\.png.*`ship_images: true`"):
        blind.check_nodes(named)
    shipped = Request.single("<image>x", ImageFile(str(tmp_path / "a.png"), 10**8, data=b"png"))
    blind.check_nodes(shipped)  # the bytes travel with the request: no file to read there


def test_ray_workers_read_corrupt_and_scale_the_pixels_the_transformers_engines_feed_the_model(tiny, tmp_path):
    """pref with ``executor: ray`` hands Ray only names (the path, the drawn corruption); what a worker makes of
    them is, pixel for pixel, what the transformers engines hand the model's processor, clean and corrupted."""
    import torch

    from stic_plugin.commands.config import PrefConfig
    from stic_plugin.commands.pref import PairJob, read_prompt_sets
    from stic_plugin.data.images import list_images

    from helpers import odd_images, tiny_model

    folder = tmp_path / "images"
    odd_images(folder)
    Image.effect_noise((900, 700), 80).convert("RGB").save(folder / "large.png")  # scaled down by the plugin
    keys = dict(model_name_or_path="m", template="llava", image_dir=str(folder), corruption_prob=1.0, seed=1)
    local = PrefConfig(**keys)
    on_ray = PrefConfig(**keys, engine="vllm", executor="ray")
    items = list_images(local.image_dir, None, None, local.image_column).items
    expected = PairJob(local, read_prompt_sets(local), tmp_path).prepare(items)
    named = PairJob(on_ray, read_prompt_sets(on_ray), tmp_path).prepare(items)
    corruptions = set()
    for model, template in (("tiny-llava", "llava"), ("tiny-qwen2vl", "qwen2_vl")):
        loaded = tiny_model(tiny[model], template)
        plugin, processor, worker = loaded.template.mm_plugin, loaded.processor, ray_worker(loaded)
        for key, pair in expected.items():
            sent = named[key]
            for image, name in ((pair.image, sent.image), (pair.rejected_image, sent.rejected_image)):
                assert isinstance(name, ImageFile) and len(pickle.dumps(name)) < 1000  # a name, not pixels
                from_worker = worker.prompt(named_request(1, [name]))["multimodal_data"]["image"]
                # what the plugin hands the processor in the transformers engines (its _get_mm_inputs)
                (handed,) = plugin._regularize_images(
                    [image], image_max_pixels=processor.image_max_pixels, image_min_pixels=processor.image_min_pixels
                )["images"]
                assert np.array_equal(np.asarray(from_worker), np.asarray(handed)), (model, key)
                tensors = [
                    processor.image_processor(picture, return_tensors="pt")["pixel_values"]
                    for picture in (from_worker, handed)
                ]
                assert torch.equal(*tensors), (model, key)
            corruptions.add(sent.rejected_image.corruption)
    large = expected["large.png"]
    assert not np.array_equal(np.asarray(large.rejected_image), np.asarray(large.image.convert("RGB")))
    assert corruptions == {"low_resolution", "color_jitter"}


def test_without_ray_executor_ray_stops_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'ray\[data\]==2.58.1'"):
        ray_executor.require_ray()


def test_under_torchrun_executor_ray_refuses_to_start(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="without torchrun"):
        ray_executor.RayVllmGenerator(None)


class EchoOnRay(ray_executor.RayVllmGenerator):
    """The stream of ``RayVllmGenerator`` on a Ray instance of this process, an echo in place of vLLM's engines:
    each result gives back the request's index as its one token."""

    def __init__(self, ray):
        self.ray, self.concurrency, self.nodes_checked, self.files_checked = ray, 1, True, True

    def named(self, index, request, *sampling) -> bytes:
        return pickle.dumps(request.key)

    def dataset(self, feed, batch_size: int):
        def echo(batch):
            indexes = [int(index) for index in batch[ray_executor.INDEX]]
            return {ray_executor.INDEX: indexes, "tokens": indexes, ray_executor.UNREADABLE: [b""] * len(indexes)}

        rows = ray_executor.feed_dataset(self.ray, feed, batch_size)
        return rows.map_batches(echo, batch_size=batch_size, batch_format="numpy", num_cpus=0)

    def finished_row(self, result, max_new_tokens):
        return int(result["tokens"])


@needs_ray
@pytest.mark.slow
@VLLM_IN_PROCESS  # on the worker of the Ray instance (ray_address)
def test_requests_enter_ray_as_a_stream_and_each_comes_back_once_while_the_rest_wait(ray_address):
    import ray

    ray.init(address=ray_address, log_to_driver=False)
    try:
        generator, read = EchoOnRay(ray), []

        def requests():
            for index in range(100):
                read.append(index)
                yield Request([{"role": "user", "content": "x"}], key=f"r{index}")

        window = generator.window(2)
        seen = []
        for request, token in generator.generate_stream(requests(), 1, slots=2):
            if not seen:
                assert len(read) <= window  # the first result, while most requests are still unread
            assert request.key == f"r{token}"
            seen.append(token)
        assert sorted(seen) == list(range(100))
    finally:
        ray.shutdown()


@needs_ray
@pytest.mark.slow
@VLLM_IN_PROCESS  # on one worker: the Ray instance (ray_address) and vLLM in this process (vllm_here)
def test_pref_on_ray_writes_what_vllm_writes_with_a_lora_through_a_kill_and_resume(
    vllm_models, ray_address, vllm_here, tmp_path
):
    from helpers import random_lora_adapter

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    adapter = random_lora_adapter(model, tmp_path / "adapter", language_model_only=True)
    common = dict(adapter_name_or_path=adapter, max_samples=6)
    local = tmp_path / "local"
    vllm_here(pref_command(model, "llava", images, local, batch_size=4, **common))
    expected = texts_by_image(local)
    assert len(expected) == 6

    # On Ray: one image (two requests) per Ray Data batch, killed once a pair is written, resumed with
    # three images per batch and two engines side by side.
    on_ray = tmp_path / "ray"
    part = on_ray / "stic_pref" / "part-00000-of-00001.jsonl"
    first = pref_command(model, "llava", images, on_ray, batch_size=1, executor="ray", **common)
    assert killed_after_records(first, tmp_path, part, 1, RAY_ADDRESS=ray_address, **VLLM_ENV) == 1
    resumed = pref_command(model, "llava", images, on_ray, batch_size=3, executor="ray", concurrency=2, **common)
    result = run_vllm(resumed, tmp_path, RAY_ADDRESS=ray_address)
    assert "already done" in result.stderr
    log = (on_ray / "stic_pref.stic" / "log-00000-of-00001.txt").read_text()
    assert f"vLLM engine(s) on the Ray cluster at {ray_address}" in log  # the instance, not one of its own
    keys = [json.loads(line)["stic"]["image"] for line in part.read_text().splitlines()]
    assert sorted(keys) == sorted(expected)  # every image exactly once
    assert texts_by_image(on_ray) == expected  # the adapter's texts, as vLLM in this process writes them
    # Ray Data gives no finish reason: a text that ran out of tokens is told from one that stopped as vLLM tells it.
    stats = [json.loads((folder / "stic_pref.stats.json").read_text()) for folder in (local, on_ray)]
    assert [s["chosen_truncated"] for s in stats] == [stats[0]["chosen_truncated"]] * 2
    assert stats[1]["mean_tokens"] == stats[0]["mean_tokens"]


@needs_ray
@pytest.mark.slow
@VLLM_IN_PROCESS
def test_dar_on_ray_describes_then_answers_as_vllm_does(vllm_models, vllm_here, tmp_path):
    """dar's two streams (the descriptions, then the answers that read them) on Ray, against vLLM in this process.
    Without RAY_ADDRESS, as on a machine with no cluster: the command starts a Ray instance of its own."""
    from helpers import key_values, read_records

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    questions = [
        {
            "id": f"q{i}",
            "image": f"image_{i:03d}.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a"}],
        }
        for i in range(4)
    ]
    source = tmp_path / "questions.json"
    source.write_text(json.dumps(questions))
    common = dict(model_name_or_path=model, template="llava", llava_file=source, image_folder=images, dar=True)
    common.update(engine="vllm", infer_dtype="float32", temperature=0, max_new_tokens=12, description_max_new_tokens=16)
    predictions = {}
    for executor in ("local", "ray"):
        folder = tmp_path / executor
        args = ["stic-cli", "dar", *key_values(**common, dataset_dir=folder, executor=executor)]
        vllm_here(args) if executor == "local" else run_vllm(args, tmp_path)
        records = read_records(folder / "dar")
        predictions[executor] = {r["id"]: (r["description"], r["prediction"]) for r in records}
    log = (tmp_path / "ray" / "dar.stic" / "log-00000-of-00001.txt").read_text()
    assert "vLLM engine(s) on a new Ray instance at" in log  # the command's own
    assert len(predictions["ray"]) == 4 and all(description for description, _ in predictions["ray"].values())
    assert predictions["ray"] == predictions["local"]


@needs_ray
@pytest.mark.slow
@VLLM_IN_PROCESS  # on one worker: the Ray instance (ray_address) and vLLM in this process (vllm_here)
def test_infuse_on_ray_describes_as_vllm_does_and_skips_what_the_workers_cannot_read(
    vllm_models, ray_address, vllm_here, tmp_path
):
    """infuse's description requests name their images; Ray's workers read them, and an empty file, found bad
    there and not in the command, skips its sample as the command skips it with ``engine: vllm``. (A kill and a
    resume on Ray: the pref test above; infuse's own resume: tests/commands/test_infuse.py.)"""
    from helpers import key_values, read_records

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    (tmp_path / "empty.png").write_bytes(b"")
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "Shapes."}]
    source = [
        {"id": "one", "image": "image_000.png", "conversations": turns},
        {"id": "two-images", "image": ["image_001.png", "image_002.png"], "conversations": turns},
        {"id": "empty", "image": str(tmp_path / "empty.png"), "conversations": turns},
        {"id": "again", "image": "image_000.png", "conversations": turns},
        {"id": "three", "image": "image_003.png", "conversations": turns},
    ]
    source[1]["conversations"] = [{"from": "human", "value": "<image><image>\nCompare."}, turns[1]]
    llava_file = tmp_path / "mix.json"
    llava_file.write_text(json.dumps(source))
    common = dict(model_name_or_path=model, template="llava", llava_file=llava_file, image_folder=images)
    common.update(engine="vllm", infer_dtype="float32", max_new_tokens=12, temperature=0.7, batch_size=1)

    def outputs(data):
        records = {r["stic"]["sample"]: r["stic"]["descriptions"] for r in read_records(data / "stic_sft")}
        skipped = [json.loads(line) for part in (data / "stic_sft.stic").glob("skipped-*") for line in part.open()]
        return records, sorted((s["key"], s["reason"]) for s in skipped)

    local = tmp_path / "local"
    vllm_here(["stic-cli", "infuse", *key_values(**common, dataset_dir=local)])
    expected = outputs(local)
    assert len(expected[0]) == 4 and [key for key, _ in expected[1]] == ["2"]

    on_ray = tmp_path / "ray"
    run_vllm(
        ["stic-cli", "infuse", *key_values(**common, dataset_dir=on_ray, executor="ray")],
        tmp_path,
        RAY_ADDRESS=ray_address,
    )
    part = on_ray / "stic_sft" / "part-00000-of-00001.jsonl"
    assert len(part.read_text().splitlines()) == 4  # each sample once
    assert outputs(on_ray) == expected
