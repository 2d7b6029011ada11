"""`stic-cli infuse` end to end on the tiny models: one run as users run it (a subprocess, marked slow),
the others in this process (``stic``)."""

import json
from pathlib import Path

import pytest
import yaml

from stic_plugin.assets import default_infusion_format_file
from stic_plugin.method.infusion import infuse_messages, read_infusion_format

from helpers import key_values, random_lora_adapter, read_records, run_cli

FORMAT = read_infusion_format(default_infusion_format_file())


def llava_records():
    return [
        {
            "id": "multi-turn",
            "image": "image_000.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat color is it?"},
                {"from": "gpt", "value": "Red."},
                {"from": "human", "value": "And the shape?"},
                {"from": "gpt", "value": "Round, with <b>edges</b>."},
            ],
        },
        {
            "id": "placeholder-last",
            "image": "image_001.png",
            "conversations": [
                {"from": "human", "value": "Describe briefly.\n<image>"},
                {"from": "gpt", "value": "Shapes."},
            ],
        },
        {"id": "text-only", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {
            "id": "same-image",
            "image": "image_000.png",
            "conversations": [{"from": "human", "value": "<image>\nSame picture?"}, {"from": "gpt", "value": "Yes."}],
        },
        {
            "id": "two-images",
            "image": ["image_002.png", "image_003.png"],
            "conversations": [
                {"from": "human", "value": "<image><image>\nCompare."},
                {"from": "gpt", "value": "Alike."},
            ],
        },
        {
            "id": "broken",
            "image": "broken.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "?"}],
        },
    ]


def infuse_args(tiny, llava_file, image_folder, dataset_dir, **keys):
    values = dict(
        model_name_or_path=tiny["tiny-llava"],
        template="llava",
        llava_file=str(llava_file),
        image_folder=str(image_folder),
        dataset_dir=str(dataset_dir),
        max_new_tokens=10,
        batch_size=2,
    )
    values.update(keys)
    return ["stic-cli", "infuse"] + [f"{key}={value}" for key, value in values.items()]


@pytest.mark.slow
def test_infuse_writes_exact_records_that_train(tiny, tmp_path):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(tiny["images"], images)
    (images / "broken.png").write_bytes(b"")
    llava_file = tmp_path / "mix.json"
    llava_file.write_text(json.dumps(llava_records()))
    data = tmp_path / "data"
    result = run_cli(infuse_args(tiny, llava_file, images, data, keep_text_only="true"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    records = {record["stic"]["sample"]: record for record in read_records(data / "stic_sft")}
    assert sorted(records) == [0, 1, 2, 3, 4]  # the broken image's sample is skipped
    skipped = [json.loads(line) for line in next((data / "stic_sft.stic").glob("skipped-*")).read_text().splitlines()]
    assert [(s["key"], s["reason"]) for s in skipped] == [("5", "empty file")]

    source = llava_records()
    for index, record in records.items():
        conversation = [
            {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
            for t in source[index]["conversations"]
        ]
        descriptions = record["stic"]["descriptions"]  # a list, not JSON in a string
        assert record["messages"] == infuse_messages(conversation, descriptions, FORMAT, "<image>")
        assert record["messages"][1:] == conversation[1:]  # every other turn byte-identical (no image in them)
        assert len(record["images"]) == len(descriptions)
    assert records[0]["messages"][0]["content"].startswith("<image>\nImage description:\n")
    # the placeholder after the question goes first, as LLaVA trains: the image before its description
    assert records[1]["messages"][0]["content"].startswith("<image>\nImage description:\n")
    assert records[1]["messages"][0]["content"].endswith("\n\nDescribe briefly.")
    assert records[2]["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert "Image 1: " in records[4]["messages"][0]["content"] and "Image 2: " in records[4]["messages"][0]["content"]
    assert records[0]["stic"]["descriptions"] == records[3]["stic"]["descriptions"]  # one image, one description
    described = [
        json.loads(line) for line in next((data / "stic_sft.stic").glob("descriptions-*")).read_text().splitlines()
    ]
    assert len(described) == 4  # images 000, 001, 002, 003: each once

    info = json.loads((data / "dataset_info.json").read_text())
    recipe = {
        "model_name_or_path": tiny["tiny-llava"],
        "template": "llava",
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "dataset": "stic_sft",
        "dataset_dir": str(data),
        "cutoff_len": 512,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "logging_steps": 1,
        "report_to": "none",
        "use_cpu": True,
    }
    assert info["stic_sft"]["file_name"] == "stic_sft"
    (tmp_path / "stage2.yaml").write_text(yaml.safe_dump(recipe))
    result = run_cli(["llamafactory-cli", "train", str(tmp_path / "stage2.yaml")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    again = run_cli(infuse_args(tiny, llava_file, images, data, keep_text_only="true"), cwd=tmp_path)  # resume
    assert again.returncode == 0 and len(read_records(data / "stic_sft")) == 5
    # 5 written are kept; the skipped one is tried again (its file may have been fixed since) and skipped again
    assert "5 already done, 1 to do" in again.stderr


def test_infuse_from_a_named_dataset_applies_the_stage1_adapter(tiny, tmp_path, stic):
    adapter = random_lora_adapter(tiny["tiny-llava"], tmp_path / "adapter")
    data_in = tmp_path / "source"
    data_in.mkdir()
    (data_in / "mix.json").write_text(json.dumps(llava_records()[:2]))
    (data_in / "dataset_info.json").write_text(json.dumps({"mix": {"file_name": "mix.json", "formatting": "llava"}}))
    base = [
        "stic-cli",
        "infuse",
        f"model_name_or_path={tiny['tiny-llava']}",
        "template=llava",
        "dataset=mix",
        f"source_dataset_dir={data_in}",
        f"media_dir={tiny['images']}",
        f"dataset_dir={tmp_path / 'out'}",
        "temperature=0",
        "max_new_tokens=12",
    ]
    outputs = {}
    for name, extra in (("base", {}), ("tuned", {"adapter_name_or_path": str(adapter)})):
        result = stic(*base, f"dataset_name={name}", *key_values(**extra))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[name] = [record["stic"]["descriptions"] for record in read_records(tmp_path / "out" / name)]
    assert len(outputs["base"]) == len(outputs["tuned"]) == 2
    assert outputs["base"] != outputs["tuned"]
    # greedy decoding is deterministic: the difference is the adapter, not chance
    again = stic(*base, "dataset_name=base2")
    assert again.returncode == 0
    assert [r["stic"]["descriptions"] for r in read_records(tmp_path / "out" / "base2")] == outputs["base"]


def test_infuse_overwrite_describes_again(tiny, tmp_path, stic):
    (tmp_path / "mix.json").write_text(json.dumps(llava_records()[:2]))
    args = infuse_args(tiny, tmp_path / "mix.json", tiny["images"], tmp_path / "data")
    assert stic(*args).returncode == 0
    again = stic(*args + ["overwrite=true", "temperature=0"])
    assert again.returncode == 0, again.stderr[-2000:]
    stats = json.loads((tmp_path / "data" / "stic_sft.stats.json").read_text())
    assert stats["last_process"]["images_described"] == 2  # nothing reused from the replaced run
    assert len(read_records(tmp_path / "data" / "stic_sft")) == 2


def test_a_wrong_image_folder_names_the_folders_searched_and_a_rerun_in_the_right_one_writes_everything(
    tiny, tmp_path, stic, monkeypatch
):
    """Before: "missing file: image_000.png (image_000.png)", and the rerun with the images in place found every
    sample "already done" and wrote nothing."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mix.json").write_text(json.dumps(llava_records()[:2]))
    images = tmp_path / "images"
    images.mkdir()
    args = infuse_args(tiny, "mix.json", "images", "data")
    first = stic(*args)
    assert first.returncode == 1
    searched = f"image_000.png is in neither {images} nor the current folder {tmp_path}"
    assert f"skipped sample 0: missing file: {searched}" in first.stderr
    skips = [json.loads(line) for line in next((tmp_path / "data" / "stic_sft.stic").glob("skipped-*")).open()]
    assert {skip["detail"] for skip in skips} == {searched, searched.replace("image_000", "image_001")}
    for name in ("image_000.png", "image_001.png"):
        shutil.copy(Path(tiny["images"]) / name, images / name)
    again = stic(*args, "max_new_tokens=12")  # another setting too: the run that wrote nothing binds none
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 already done, 2 to do" in again.stderr
    assert len(read_records(tmp_path / "data" / "stic_sft")) == 2
    assert json.loads((tmp_path / "data" / "stic_sft.stats.json").read_text())["skipped"] == {}


@pytest.mark.parametrize("engine", ["plain", "continuous"])
def test_every_sample_is_written_whatever_the_engine_finishes_first(tiny, tmp_path, stic, engine):
    """One image in flight at a time: the plain engine finishes each description before it asks for the next
    request, and samples that share an image, in one batch or in two, are each written once."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(tiny["images"], images)
    (images / "broken.png").write_bytes(b"")
    (tmp_path / "mix.json").write_text(json.dumps(llava_records()))
    args = infuse_args(tiny, tmp_path / "mix.json", images, tmp_path / "data", batch_size=1, engine=engine)
    result = stic(*args, "keep_text_only=true")
    assert result.returncode == 0, result.stderr[-2000:]
    records = {record["stic"]["sample"]: record for record in read_records(tmp_path / "data" / "stic_sft")}
    assert sorted(records) == [0, 1, 2, 3, 4]
    assert records[0]["stic"]["descriptions"] == records[3]["stic"]["descriptions"]  # image_000, described once
    stats = json.loads((tmp_path / "data" / "stic_sft.stats.json").read_text())
    assert stats["last_process"]["images_described"] == 4


def test_image_placement_front_by_default_keep_on_request(tiny, tmp_path, stic):
    """mix665k's first record puts the placeholder after the question; the authors' model saw the image first."""
    record = {
        "id": "000000033471",
        "image": "image_000.png",
        "conversations": [
            {"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
            {"from": "gpt", "value": "White and red."},
        ],
    }
    (tmp_path / "mix.json").write_text(json.dumps([record]))
    args = infuse_args(tiny, tmp_path / "mix.json", tiny["images"], tmp_path / "data", temperature=0)
    assert stic(*args).returncode == 0
    assert stic(*args, "image_placement=keep", "dataset_name=kept").returncode == 0
    (front,) = read_records(tmp_path / "data" / "stic_sft")
    (kept,) = read_records(tmp_path / "data" / "kept")
    description = front["messages"][0]["content"].split("\n")[2]
    assert front["messages"][0]["content"] == (
        f"<image>\nImage description:\n{description}\n\nWhat are the colors of the bus in the image?"
    )
    assert kept["messages"][0]["content"] == (
        f"Image description:\n{description}\n\nWhat are the colors of the bus in the image?\n<image>"
    )


def test_num_samples_counts_image_samples_and_text_only_ones_come_on_top(tiny, tmp_path, stic):
    """Algorithm 2 describes an image for each sample: the 5k of the paper are image samples."""
    rows = [
        {
            "id": f"img-{i}",
            "image": f"image_00{i % 8}.png",
            "conversations": [{"from": "human", "value": f"<image>\nQ{i}"}, {"from": "gpt", "value": f"A{i}"}],
        }
        for i in range(10)
    ] + [
        {"id": f"txt-{i}", "conversations": [{"from": "human", "value": f"T{i}"}, {"from": "gpt", "value": "ok"}]}
        for i in range(20)
    ]
    (tmp_path / "mix.json").write_text(json.dumps(rows))
    args = infuse_args(tiny, tmp_path / "mix.json", tiny["images"], tmp_path / "data", num_samples=4, max_new_tokens=4)
    result = stic(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(tmp_path / "data" / "stic_sft")
    assert len(records) == 4 and all(record["images"] for record in records)

    result = stic(*args, "keep_text_only=true", "dataset_name=with_text")
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(tmp_path / "data" / "with_text")
    with_images = [r for r in records if r["images"]]
    text_only = [r for r in records if not r["images"]]
    assert len(with_images) == 4 and len(text_only) == 8  # on top, in the input's proportion (20 to 10)
    assert {r["stic"]["sample"] for r in with_images} == {
        r["stic"]["sample"] for r in read_records(tmp_path / "data" / "stic_sft")
    }
    stats = json.loads((tmp_path / "data" / "with_text.stats.json").read_text())
    assert (stats["samples"], stats["samples_with_images"], stats["text_only"]) == (12, 4, 8)
    assert "4 with images (described), 8 text-only" in result.stdout


def test_an_input_without_images_is_an_error(tiny, tmp_path, stic):
    rows = [{"id": "t", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]
    (tmp_path / "mix.json").write_text(json.dumps(rows))
    result = stic(*infuse_args(tiny, tmp_path / "mix.json", tiny["images"], tmp_path / "data"))
    assert result.returncode == 2 and "no sample with an image (1 text-only sample(s) only" in result.stderr


@pytest.mark.parametrize("source", ["llava_file", "dataset"])
def test_the_same_data_in_another_folder_gets_the_same_prompts_and_descriptions(tiny, tmp_path, stic, source):
    """Prompts and sampling seeds are drawn from each image's path below the input's image folder, not from
    where that folder lies: a copy of the data elsewhere is described alike, text for text."""
    import shutil

    descriptions = {}
    for copy in ("first", "second/deeper"):
        folder = tmp_path / copy
        shutil.copytree(tiny["images"], folder / "images")
        records = llava_records()[:2] + llava_records()[4:5]  # three samples, four images
        for record in records:
            names = record["image"] if isinstance(record["image"], list) else [record["image"]]
            record["image"] = [f"images/{name}" for name in names]
        (folder / "mix.json").write_text(json.dumps(records))
        if source == "dataset":
            info = {"mix": {"file_name": "mix.json", "formatting": "llava"}}
            (folder / "dataset_info.json").write_text(json.dumps(info))
            keys = ["dataset=mix", f"source_dataset_dir={folder}"]
        else:
            keys = [f"llava_file={folder / 'mix.json'}"]
        result = stic(
            "infuse",
            f"model_name_or_path={tiny['tiny-llava']}",
            "template=llava",
            *keys,
            f"dataset_dir={folder / 'out'}",
            "temperature=1.0",
            "max_new_tokens=12",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        written = sorted(read_records(folder / "out" / "stic_sft"), key=lambda record: record["stic"]["sample"])
        descriptions[copy] = [
            (record["stic"]["description_prompts"], record["stic"]["descriptions"]) for record in written
        ]
    assert len(descriptions["first"]) == 3
    prompts = {prompt for record_prompts, _ in descriptions["first"] for prompt in record_prompts}
    assert len(prompts) > 1  # prompts were drawn, not one for all
    assert descriptions["first"] == descriptions["second/deeper"]


def test_on_ray_the_images_travel_as_names_and_one_the_workers_cannot_read_skips_each_of_its_samples_once(tmp_path):
    """``executor: ray``: the command reads no pixels; an image found bad where a Ray worker reads it skips every
    sample that shows it (those waiting, and those that come later), once, and the others are infused."""
    from PIL import Image

    from stic_plugin.commands.config import InfuseConfig
    from stic_plugin.commands.infuse import InfuseJob
    from stic_plugin.data.sources import Sample
    from stic_plugin.generation.base import Generation, Request, UnreadableImage
    from stic_plugin.pipeline.describer import ImageDescriber, Sampling
    from stic_plugin.pipeline.image_inputs import ImageFile

    good, bad = str(tmp_path / "good.png"), str(tmp_path / "bad.png")
    for path in (good, bad):
        Image.new("RGB", (8, 8)).save(path)
    cfg = InfuseConfig(
        model_name_or_path="m", template="llava", llava_file=str(tmp_path / "in.json"), engine="vllm", executor="ray"
    )
    describer = ImageDescriber(None, ["Describe."], Sampling(0.0, None, 0, 4, None), 8)
    job = InfuseJob(cfg, describer, FORMAT, tmp_path)

    def sample(index: int, *images: str) -> Sample:
        return Sample(index, [{"role": "user", "content": "<image>" * len(images) + "Q"}], list(images))

    both, only_good, only_bad, later = sample(0, good, bad), sample(1, good), sample(2, bad), sample(3, bad)
    prepared = job.prepare([both, only_good, only_bad])
    assert all(isinstance(image, ImageFile) and image.file == image.path for image in prepared.values())
    requests = [r for s in (both, only_good, only_bad) for r in job.start(s, prepared)]
    assert all(isinstance(r, Request) for r in requests) and [r.tag for r in requests] == [good, bad]
    assert [image.path for r in requests for image in r.images] == [good, bad]

    described = list(job.finish(requests[0], Generation("A gray square.", 4, False)))
    assert [o.record is not None for o in described] == [True]  # only_good; both still waits for bad.png
    failed = list(job.finish(requests[1], Generation("", 0, False, UnreadableImage("unreadable", "no such node"))))
    assert [(o.skipped["key"], o.skipped["path"], o.skipped["reason"]) for o in failed] == [
        ("0", bad, "unreadable"),
        ("2", bad, "unreadable"),
    ]
    assert [o.skipped["key"] for o in job.start(later, job.prepare([later]))] == ["3"]  # no new request
    assert not job.missing and not job.waiting
