"""`stic-cli pref` end to end on the tiny models.

As users run it, in a subprocess (marked slow): the shared output of one run (``pref_output``), a run
killed and resumed, and torchrun's shares. Everything else (choices, bad images, configuration errors,
protection of existing output) runs ``stic-cli`` in this process (``stic``).
"""

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image

from stic_plugin.tools.fixtures import make_images

from helpers import BIN, killed_after_records, llamafactory_dataset, pref_args, run_cli, subprocess_env


def read_output(dataset_dir: Path, name: str = "stic_pref"):
    records = []
    for part in sorted((dataset_dir / name).glob("*.jsonl")):
        records += [json.loads(line) for line in part.read_text().splitlines()]
    skipped = []
    for part in sorted((dataset_dir / f"{name}.stic").glob("skipped-*.jsonl")):
        skipped += [json.loads(line) for line in part.read_text().splitlines()]
    return records, skipped


@pytest.mark.slow
@pytest.mark.xdist_group("pref_output")  # one worker runs the shared pref output
def test_pref_output_loads_and_trains_with_stic_dpo(tiny, pref_output, tmp_path):
    data, result = pref_output.dataset_dir, pref_output.result  # dataset_info.json held {"mine": ...} before
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["mine"] == {"file_name": "mine.json"}  # other entries kept
    assert info["stic_pref"]["ranking"] is True and info["stic_pref"]["file_name"] == "stic_pref"

    records, skipped = read_output(data)
    assert len(records) + len(skipped) == 8 and len(records) >= 4
    # one schema for the JSON reader with every kind of pair in one file (trained on below)
    assert {r["stic"]["corruption"] or r["stic"]["negative"] for r in records} == {
        "hallucination",
        "low_resolution",
        "color_jitter",
    }
    for record in records:
        assert record["messages"][0]["content"].count("<image>") == 1
        assert "<image>" not in record["chosen"]["content"] + record["rejected"]["content"]
        assert (data / record["images"][0]).resolve().is_file()  # relative to dataset_dir
    stats = json.loads((data / "stic_pref.stats.json").read_text())
    assert stats["pairs"] == len(records) and sum(stats["pairs_by_negative"].values()) == len(records)
    assert (data / "stic_pref.lengths.png").stat().st_size > 0
    assert "tokens/s" in result.stdout

    recipe = {
        "model_name_or_path": tiny["tiny-llava"],
        "template": "llava",
        "stage": "stic_dpo",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "dataset": "stic_pref",
        "dataset_dir": str(data),
        "cutoff_len": 256,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "logging_steps": 1,
        "report_to": "none",
        "use_cpu": True,
    }
    (tmp_path / "stage1.yaml").write_text(yaml.safe_dump(recipe))
    result = run_cli(["llamafactory-cli", "train", str(tmp_path / "stage1.yaml")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stic/nll" in (tmp_path / "out" / "trainer_log.jsonl").read_text()


def test_choices_do_not_depend_on_batch_size(tiny, tmp_path, stic):
    from stic_plugin.assets import default_prompt_file, read_prompts
    from stic_plugin.method.corruption import corruption_record
    from stic_plugin.method.pairs import plan_pair

    images = tmp_path / "images"
    make_images(images, count=10, seed=5)
    plans, texts = {}, {}
    for batch_size in (1, 3):
        name = f"b{batch_size}"
        result = stic(*pref_args(tiny, images, tmp_path / "data", batch_size=batch_size, dataset_name=name))
        assert result.returncode == 0, result.stderr[-3000:]
        records, skipped = read_output(tmp_path / "data", name)
        assert len(records) + len(skipped) == 10
        plans[batch_size] = {
            r["stic"]["image"]: (
                r["messages"],
                r["stic"]["negative"],
                r["stic"]["bad_prompt"],
                r["stic"]["corruption"],
                r["stic"]["corruption_params"],
            )
            for r in records
        }
        texts[batch_size] = {r["stic"]["image"]: (r["chosen"]["content"], r["rejected"]["content"]) for r in records}
    common = set(plans[1]) & set(plans[3])
    assert len(common) >= 5
    assert {key: plans[1][key] for key in common} == {key: plans[3][key] for key in common}
    # and they are the documented function of (seed, image key)
    prompt_sets = [read_prompts(default_prompt_file(n), n) for n in ("preferred", "captioning", "hallucination")]
    for key in common:
        plan = plan_pair(42, key, *prompt_sets, 0.5, {"low_resolution": 0.5, "color_jitter": 0.5})
        assert plans[1][key][0][0]["content"] == "<image>\n" + plan.training_prompt
        assert plans[1][key][1:4] == (plan.negative, plan.bad_prompt or "", plan.corruption or "")
        assert plans[1][key][4] == corruption_record(plan.corruption_params)  # an object, not JSON in a string
    assert {plans[1][key][1] for key in common} == {"hallucination", "corruption"}
    # The continuous engine draws each generation from (seed, image, side): the sampled texts agree too.
    assert {key: texts[1][key] for key in common} == {key: texts[3][key] for key in common}


@pytest.mark.slow
def test_killed_run_resumes_with_every_image_exactly_once(tiny, tmp_path):
    images = tmp_path / "images"
    make_images(images, count=20, seed=9)
    data = tmp_path / "data"
    args = pref_args(tiny, images, data, batch_size=1, max_new_tokens=48)
    part = data / "stic_pref" / "part-00000-of-00001.jsonl"
    assert killed_after_records(args, tmp_path, part, 3, timeout=300) == 3

    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records, skipped = read_output(data)
    keys = [r["stic"]["image"] for r in records] + [s["key"] for s in skipped]
    assert Counter(keys) == Counter(f"image_{i:03d}.png" for i in range(20))
    assert "already done" in result.stderr


@pytest.mark.slow
def test_torchrun_processes_take_disjoint_shares(tiny, tmp_path):
    images = tmp_path / "images"
    make_images(images, count=9, seed=3)
    data = tmp_path / "data"
    args = pref_args(tiny, images, data)
    result = run_cli(
        ["torchrun", "--nproc-per-node", "2", "--master-port", "29561", str(BIN / "stic-cli")] + args[1:], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shares = {}
    for rank in (0, 1):
        part = data / "stic_pref" / f"part-{rank:05d}-of-00002.jsonl"
        skipped = data / "stic_pref.stic" / f"skipped-part-{rank:05d}-of-00002.jsonl"
        keys = [json.loads(line)["stic"]["image"] for line in part.read_text().splitlines()]
        if skipped.exists():
            keys += [json.loads(line)["key"] for line in skipped.read_text().splitlines()]
        shares[rank] = set(keys)
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {f"image_{i:03d}.png" for i in range(9)}


def test_broken_and_odd_images_are_skipped_or_converted(tiny, tmp_path, stic):
    import numpy as np

    images = tmp_path / "images"
    make_images(images, count=2, seed=1)
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.png").write_text("this is text")
    full = (images / "image_000.png").read_bytes()
    (images / "truncated.png").write_bytes(full[: len(full) // 2])
    Image.new("RGB", (1200, 1000), "green").save(images / "huge.png")
    Image.new("RGB", (4000, 1), "red").save(images / "stripe.png")  # 4000x1: CLIP's processor makes 1344000x336
    Image.new("L", (40, 40), 90).save(images / "gray.png")
    Image.new("CMYK", (40, 40), (0, 200, 200, 0)).save(images / "cmyk.jpg")
    Image.new("RGBA", (40, 40), (10, 200, 10, 128)).save(images / "rgba.png")
    Image.new("P", (40, 40)).save(images / "palette.png")
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(images / "deep16.png")
    data = tmp_path / "data"
    result = stic(*pref_args(tiny, images, data, max_image_pixels=1_000_000))
    assert result.returncode == 0, result.stderr[-3000:]
    records, skipped = read_output(data)
    reasons = {s["key"]: s["reason"] for s in skipped if s["kind"] == "skipped"}
    assert reasons == {
        "empty.jpg": "empty file",
        "notes.png": "not an image",
        "huge.png": "too many pixels",
        "stripe.png": "too elongated",
        "truncated.png": reasons.get("truncated.png"),
    }
    assert reasons["truncated.png"] in ("truncated", "unreadable")
    done = {r["stic"]["image"] for r in records} | {s["key"] for s in skipped if s["kind"] == "dropped"}
    assert done == {"image_000.png", "image_001.png", "gray.png", "cmyk.jpg", "rgba.png", "palette.png", "deep16.png"}
    stats = json.loads((data / "stic_pref.stats.json").read_text())
    assert sum(stats["skipped"].values()) == 5
    assert "skipped truncated.png" in result.stderr or "skipped truncated.png" in result.stdout


def test_configuration_errors_and_protection_of_existing_output(tiny, tmp_path, stic):
    data = tmp_path / "data"
    result = stic(*pref_args(tiny, tiny["images"], data, batch_sise=2))
    assert result.returncode == 2 and "Unknown key `batch_sise`. Did you mean `batch_size`?" in result.stderr
    result = stic(*pref_args(tiny, tiny["images"], data, image_list="x.txt"))
    assert result.returncode == 2 and "Set exactly one of `image_dir` and `image_list`" in result.stderr
    result = stic(*pref_args(tiny, tiny["images"], data, temperature="hot"))
    assert result.returncode == 2 and "`temperature` must be a number" in result.stderr

    assert stic(*pref_args(tiny, tiny["images"], data, max_samples=3)).returncode == 0
    first = (data / "stic_pref" / "part-00000-of-00001.jsonl").read_bytes()
    changed = stic(*pref_args(tiny, tiny["images"], data, max_samples=3, temperature=0.7))
    assert changed.returncode == 2 and "different configuration (changed: temperature)" in changed.stderr
    assert (data / "stic_pref" / "part-00000-of-00001.jsonl").read_bytes() == first
    replaced = stic(*pref_args(tiny, tiny["images"], data, max_samples=3, temperature=0.7, overwrite="true"))
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    records, skipped = read_output(data)
    assert len(records) + len(skipped) == 3

    (data / "dataset_info.json").write_text("{ not json")
    broken = stic(*pref_args(tiny, tiny["images"], data, dataset_name="other"))
    assert broken.returncode == 2 and "cannot be read as JSON" in broken.stderr
    assert (data / "dataset_info.json").read_text() == "{ not json"


def test_nothing_produced_exits_non_zero(tiny, tmp_path, stic):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    (images / "b.jpg").write_text("text")
    result = stic(*pref_args(tiny, images, tmp_path / "data"))
    assert result.returncode == 1
    assert "nothing could be produced" in result.stderr


@pytest.mark.slow
def test_code_in_the_model_folder_runs_only_with_trust_remote_code(tiny, tmp_path, stic):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny["tiny-llava"], model)
    marker = tmp_path / "remote_code_ran"
    (model / "shipped_code.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlavaConfig, LlavaForConditionalGeneration\n\n"
        "class ShippedConfig(LlavaConfig):\n    pass\n\n"
        "class ShippedModel(LlavaForConditionalGeneration):\n    config_class = ShippedConfig\n"
    )
    config = json.loads((model / "config.json").read_text())
    # as a model with its own code ships it: its config class and the model class that takes it
    config["auto_map"] = {
        "AutoConfig": "shipped_code.ShippedConfig",
        "AutoModelForCausalLM": "shipped_code.ShippedModel",
    }
    (model / "config.json").write_text(json.dumps(config))
    tiny_copy = dict(tiny, **{"tiny-llava": str(model)})

    result = stic(*pref_args(tiny_copy, tiny["images"], tmp_path / "data", max_samples=2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists()
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    # loading it left transformers' own classes unmarked: a later save in this process copies no source file
    assert all(vars(c).get("_auto_class") is None for c in (LlavaConfig, LlavaForConditionalGeneration))
    # In a process of its own: the shipped code, once run, stays registered with transformers for the process.
    trusted = run_cli(
        pref_args(tiny_copy, tiny["images"], tmp_path / "data2", max_samples=2, trust_remote_code="true"), cwd=tmp_path
    )
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.exists()  # the gate is real: with the key set, the shipped code does run


def test_pref_with_tiny_qwen2vl_loads_through_llamafactory(tiny, tmp_path, stic):
    data = tmp_path / "data"
    result = stic(*pref_args(tiny, tiny["images"], data, model="tiny-qwen2vl", template="qwen2_vl", max_samples=4))
    assert result.returncode == 0, result.stderr[-3000:]
    records, _ = read_output(data)
    assert records

    module, tokenizer_module = llamafactory_dataset(
        tiny["tiny-qwen2vl"], "qwen2_vl", "stic_pref", data, tmp_path / "out", stage="stic_dpo"
    )
    train = module["train_dataset"]
    assert len(train) == len(records)
    prompt = tokenizer_module["tokenizer"].decode(train[0]["chosen_input_ids"])
    assert prompt.count("<|image_pad|>") == 4 and "<|vision_start|>" in prompt  # the tiny Qwen2-VL's image tokens


def test_failed_start_does_not_lock_the_output_and_errors_are_messages(tiny, tmp_path, stic):
    data = tmp_path / "data"
    wrong = stic(*pref_args(tiny, tiny["images"], data, model_name_or_path=str(tmp_path / "no-such-model")))
    assert wrong.returncode == 2 and "stic-cli pref: error:" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (data / "dataset_info.json").exists()  # no entry for a dataset that does not exist
    fixed = stic(*pref_args(tiny, tiny["images"], data, max_samples=2))
    assert fixed.returncode == 0, fixed.stderr[-2000:]


def test_process_with_an_empty_share_exits_zero(tiny, tmp_path, stic, monkeypatch):
    images = tmp_path / "images"
    make_images(images, count=1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = stic(*pref_args(tiny, images, tmp_path / "data"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0 for process 1 of 2" in result.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("pref_output")  # one worker runs the shared pref output
def test_dataset_info_keeps_its_file_mode(pref_output):
    info = pref_output.dataset_dir / "dataset_info.json"  # written before the run with mode 0644
    assert "stic_pref" in json.loads(info.read_text())
    assert info.stat().st_mode & 0o777 == 0o644


def test_an_existing_entry_of_the_same_name_is_never_replaced(tiny, tmp_path, stic):
    data = tmp_path / "data"
    data.mkdir()
    mine = {"stic_pref": {"file_name": "my_own_pairs.json", "ranking": True}}
    (data / "dataset_info.json").write_text(json.dumps(mine))
    result = stic(*pref_args(tiny, tiny["images"], data))
    assert result.returncode == 2 and "already has an entry `stic_pref` for other data" in result.stderr
    assert json.loads((data / "dataset_info.json").read_text()) == mine
    assert not (data / "stic_pref").exists()  # stopped before generating anything


def test_a_second_run_on_the_same_output_stops_at_once(tiny, tmp_path, stic):
    """While one run writes the output, another stops before loading anything, naming the first."""
    import socket
    import sys

    data = tmp_path / "data"
    lock = data / "stic_pref.stic" / "part-00000-of-00001.lock"
    hold = (
        "import sys, time\nfrom pathlib import Path\nfrom stic_plugin.data.output import PartLock\n"
        "PartLock(Path(sys.argv[1])).acquire()\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    first = subprocess.Popen([sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        second = stic(*pref_args(tiny, tiny["images"], data))
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert f"process {first.pid} on host {socket.gethostname()} (since" in second.stderr
    assert not (data / "stic_pref").exists()  # nothing written, nothing cleared
    # the first run died holding it: the next run takes the lock over, says so, and writes
    again = stic(*pref_args(tiny, tiny["images"], data, max_samples=2))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"taking over the lock of process {first.pid}" in again.stderr


@pytest.mark.slow
def test_two_runs_started_together_write_every_pair_once(tiny, tmp_path):
    """Two `stic-cli pref` on one output: one writes, the other stops at once naming it (before: both exited 0
    and every pair was written twice)."""
    data = tmp_path / "data"
    args = pref_args(tiny, tiny["images"], data)
    processes = [
        subprocess.Popen(args, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(process.wait(timeout=600), process.stderr.read().decode()) for process in processes]
    assert sorted(code for code, _ in results) == [0, 2], results
    writer = processes[[code for code, _ in results].index(0)]
    refused = next(stderr for code, stderr in results if code == 2)
    assert f"process {writer.pid} on host" in refused
    records, skipped = read_output(data)
    keys = [r["stic"]["image"] for r in records] + [s["key"] for s in skipped]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 8
    assert json.loads((data / "stic_pref.stats.json").read_text())["pairs"] == len(records)


def test_odd_file_trees_a_link_loop_and_a_name_that_is_not_utf8(tiny, tmp_path, stic):
    """Before: `loop -> .` made 82 images of 2, and a name that is not UTF-8 stopped every run."""
    import os

    images = tmp_path / "images"
    make_images(images, count=2, seed=4)
    (images / "loop").symlink_to(".")
    (images / "again.png").symlink_to("image_000.png")
    bad = os.path.join(os.fsencode(images), b"photo_\xff\xfe.png")
    Image.new("RGB", (16, 16), "red").save(bad.decode("utf-8", "surrogateescape"))
    data = tmp_path / "data"
    for run in range(2):  # the second run resumes: only the file it could not use is tried again, the same summary
        result = stic(*pref_args(tiny, images, data))
        assert result.returncode == 0, result.stderr[-3000:]
        records, skipped = read_output(data)
        done = [r["stic"]["image"] for r in records] + [s["key"] for s in skipped if s["kind"] == "dropped"]
        assert sorted(done) == ["image_000.png", "image_001.png"]
        assert [(s["key"], s["reason"]) for s in skipped if s["kind"] == "skipped"] == [
            ("photo_\\xff\\xfe.png", "file name is not valid UTF-8")
        ] * (run + 1)  # logged again by the run that tried it again
        assert "skipped photo_\\xff\\xfe.png: file name is not valid UTF-8" in result.stderr
        assert "1 link(s) to a folder already listed not followed, 1 other name(s) of an image" in result.stdout
    assert "2 already done, 1 to do" in result.stderr
    stats = json.loads((data / "stic_pref.stats.json").read_text())
    assert stats["links_not_followed"]["folders"] == 1 and stats["links_not_followed"]["images"] == 1
    assert stats["skipped"] == {"file name is not valid UTF-8": 1}


def test_a_dataset_info_that_cannot_be_written_stops_before_generating(tiny, tmp_path, stic):
    """Before: a locked dataset_info.json was found only after every pair was made."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    info = data / "dataset_info.json"
    info.write_text("{}")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(info)]).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        result = stic(*pref_args(tiny, tiny["images"], data))
    finally:
        subprocess.run(["chattr", "-i", str(info)], check=True)
    assert result.returncode == 2 and "dataset_info.json cannot be written" in result.stderr
    assert not (data / "stic_pref").exists()


def test_ctrl_c_ends_with_one_line_and_the_run_resumes(tiny, tmp_path, stic, monkeypatch):
    """Before: a 40-line traceback."""
    from stic_plugin.generation.transformers_engine import ContinuousGenerator

    stream = ContinuousGenerator.generate_stream

    def interrupted(self, *args, **kwargs):
        for index, result in enumerate(stream(self, *args, **kwargs)):
            if index == 2:  # both generations of one image are out: one pair written
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(ContinuousGenerator, "generate_stream", interrupted)
    data = tmp_path / "data"
    result = stic(*pref_args(tiny, tiny["images"], data, batch_size=1))
    assert result.returncode == 130
    lines = [line for line in result.stderr.splitlines() if "interrupted" in line or "Traceback" in line]
    assert lines == ["stic-cli pref: interrupted: 1 written; run the same command to resume"]
    monkeypatch.setattr(ContinuousGenerator, "generate_stream", stream)
    again = stic(*pref_args(tiny, tiny["images"], data, batch_size=1))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 already done, 7 to do" in again.stderr  # and the lock was released: no take-over
    assert "taking over" not in again.stderr


def test_a_garbled_line_is_reported_and_the_output_loads_again(tiny, tmp_path, stic):
    from datasets import load_dataset

    data = tmp_path / "data"
    assert stic(*pref_args(tiny, tiny["images"], data, max_samples=3)).returncode == 0
    part = data / "stic_pref" / "part-00000-of-00001.jsonl"
    lines = part.read_bytes().splitlines(keepends=True)
    part.write_bytes(lines[0] + b'{"messages": [\xff\xfe broken\n' + b"".join(lines[1:]))
    with pytest.raises(Exception):  # noqa: B017 - whatever datasets raises for it
        load_dataset("json", data_files=[str(part)], split="train")
    again = stic(*pref_args(tiny, tiny["images"], data, max_samples=3))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{part}, line 2: not valid JSON" in again.stderr
    assert len(load_dataset("json", data_files=[str(part)], split="train")) == len(lines)
    assert b"broken" in (data / "stic_pref.stic" / f"garbled-{part.name}.txt").read_bytes()


def test_the_lengths_plot_shows_chosen_and_rejected_side_by_side():
    """Before: the rejected bars were drawn over the chosen ones and hid them."""
    from stic_plugin.commands.summaries import lengths_figure

    by_negative = {
        "hallucination": {"pairs": 3, "chosen_tokens": [100, 120, 300], "rejected_tokens": [100, 125, 310]},
        "corruption": {"pairs": 2, "chosen_tokens": [50, 80], "rejected_tokens": [55, 80]},
    }
    figure = lengths_figure(by_negative)
    for axis in figure.axes:
        chosen, rejected = axis.containers  # one bar per bin and side
        assert len(chosen) == len(rejected)
        for left, right in zip(chosen, rejected):
            assert left.get_x() + left.get_width() <= right.get_x() + 1e-9  # next to it, not on top
        assert "/" not in axis.get_title()
