"""``stic-cli infuse``: stage-2 description-infused SFT data (paper Algorithm 2).

Run: ``stic-cli infuse recipes/llava-1.5-7b/infuse.yaml llava_file=llava_v1_5_mix665k.json image_folder=/data``.
The stage-1 model (``model_name_or_path`` + ``adapter_name_or_path``) describes each sampled image;
the description goes into the first user turn; every other turn and every answer is kept as it is.
One output record (sharegpt)::

    {"messages": [
        {"role": "user", "content": "<image>\\nImage description:\\nA red bus ...\\n\\nWhat color is the bus?"},
        {"role": "assistant", "content": "Red."}],
     "images": ["../coco/train2017/000000033471.jpg"],
     "stic": {"sample": 1234, "descriptions": ["A red bus ..."],
              "description_prompts": ["Explain what is depicted in the photograph."]}}
"""

import json
import os
import time
from collections import Counter

from ..assets import dataset_entry, read_prompts
from ..data.describe import ImageDescriber, bad_image_entry, load_images
from ..data.infusion import infuse_messages, read_infusion_format
from ..data.output import atomic_write_text
from ..data.runs import finish_run, my_todo, prefetched_batches, progress_name, sample_reproducibly, start_run
from ..data.sources import Sample, image_root, load_samples, source_signature
from .config import InfuseConfig


def relative_images(paths: list[str], dataset_dir) -> list[str]:
    out = []
    for path in paths:
        try:
            out.append(os.path.relpath(path, dataset_dir))
        except ValueError:  # another drive
            out.append(path)
    return out


def sft_record(sample: Sample, messages: list[dict], dataset_dir, descriptions: list[dict]) -> dict:
    system = [{"role": "system", "content": sample.system}] if sample.system else []
    return {
        "messages": system + messages,
        "images": relative_images(sample.images, dataset_dir),
        # One description (and its prompt) per image, as the images: empty lists for a text-only sample, as its
        # images; the same keys in every record, so that the JSON reader finds one schema.
        "stic": {
            "sample": sample.index,
            "descriptions": [d["description"] for d in descriptions],
            "description_prompts": [d["prompt"] for d in descriptions],
        },
    }


def draw_samples(samples: list[Sample], num_samples: int | None, keep_text_only: bool, seed: int) -> list[Sample]:
    """``num_samples`` samples with images (Algorithm 2 describes an image for each, as the authors' generator
    does), drawn with ``seed``; with ``keep_text_only``, text-only samples on top, in their input's proportion
    to the image samples (all of them when every image sample is taken). In input order."""
    with_images = [sample for sample in samples if sample.images]
    text_only = [sample for sample in samples if not sample.images]
    if not with_images:
        hint = f" ({len(text_only)} text-only sample(s) only: there is nothing to describe)" if text_only else ""
        raise ValueError(f"the input holds no sample with an image{hint}")
    drawn = sample_reproducibly(with_images, num_samples, seed, "infuse")
    if keep_text_only and text_only:
        share = len(text_only)
        if num_samples is not None and num_samples < len(with_images):
            share = round(num_samples * len(text_only) / len(with_images))
        drawn += sample_reproducibly(text_only, share, seed, "infuse:text-only")
    return sorted(drawn, key=lambda sample: sample.index)


def run_infuse(cfg: InfuseConfig) -> int:
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    infusion_format = read_infusion_format(cfg.infusion_format_file)
    prompts = read_prompts(cfg.description_prompts_file, "description")
    samples = draw_samples(load_samples(cfg), cfg.num_samples, cfg.keep_text_only, cfg.seed)
    fingerprint = {
        **cfg.generation_fingerprint(),
        "prompts": prompts,
        "infusion_format": infusion_format,
        "source_files": source_signature(cfg),
    }
    entry = {"file_name": cfg.dataset_name, **dataset_entry("stic_sft")}
    output = start_run(cfg, cfg.dataset_name, fingerprint, dataset_entry=entry)
    todo = my_todo(output, samples, lambda s: s.key, lambda record: str(record["stic"]["sample"]), cfg.overwrite)

    def make_generator():
        from ..generation.backends import load_generator

        return load_generator(cfg)

    part = output.records_path.name
    # Descriptions of earlier runs are reused on resume, never after overwrite=true (the model may have changed).
    describer = ImageDescriber(
        make_generator,
        prompts,
        cfg,
        cfg.max_new_tokens,
        output.meta_dir,
        part,
        reuse=not cfg.overwrite,
        image_root=image_root(cfg),
    )
    from tqdm import tqdm

    run = Counter()
    started = time.time()
    records, skipped_log = output.open_writers()
    progress = tqdm(total=len(todo), unit="sample", desc=progress_name("infuse", output.rank, output.world_size))
    waiting: dict[str, list[Sample]] = {}  # image path -> the samples that wait for its description
    missing: dict[str, int] = {}  # sample key -> how many of its images are still being described

    def write(sample: Sample) -> None:
        if not sample.images:  # drawn only with keep_text_only: kept unchanged
            records.write(sft_record(sample, sample.messages, output.dataset_dir, []))
            run["text-only kept"] += 1
        else:
            descriptions = [describer.descriptions[path] for path in sample.images]
            texts = [d["description"] for d in descriptions]
            messages = infuse_messages(sample.messages, texts, infusion_format, IMAGE_PLACEHOLDER, cfg.image_placement)
            records.write(sft_record(sample, messages, output.dataset_dir, descriptions))
            run["infused"] += 1
        progress.update(1)

    def requests():
        """One description request per image not described yet, as one stream over every sample; images
        are read a batch ahead, on a thread. Samples that need no new description are written here."""
        batches = prefetched_batches(
            todo,
            cfg.batch_size,
            lambda batch: load_images(
                [path for s in batch for path in s.images if path not in describer.descriptions], cfg.max_image_pixels
            ),
            None,
        )
        for batch, images in batches:
            for sample in batch:
                skipped = bad_image_entry(sample, images)
                if skipped is not None:
                    skipped_log.write(skipped)
                    run[f"skipped: {skipped['reason']}"] += 1
                    progress.update(1)
                    continue
                needed = [path for path in dict.fromkeys(sample.images) if path not in describer.descriptions]
                if not needed:
                    write(sample)
                    continue
                missing[sample.key] = len(needed)
                # Every wait is registered before any request is handed over: the engine may finish a request
                # before it asks for the next one.
                first_asks = [path for path in needed if path not in waiting]
                for path in needed:
                    waiting.setdefault(path, []).append(sample)
                for path in first_asks:  # the first sample to need an image: its one request
                    yield describer.request(path, images[path])

    with records, skipped_log:
        for path in describer.describe_stream(requests()):
            for sample in waiting.pop(path):
                missing[sample.key] -= 1
                if not missing[sample.key]:
                    del missing[sample.key]
                    write(sample)
    progress.close()
    describer.close()
    seconds = time.time() - started
    run.update(describer.counts)
    write_summary(output, cfg.dataset_name, run, seconds)
    written = run["infused"] + run["text-only kept"]
    return finish_run(output, written, bool(todo), entry)


def write_summary(output, name: str, run: Counter, seconds: float) -> None:
    written = text_only = 0
    for record in output.records():
        written += 1
        text_only += not record["images"]
    skipped, dropped = Counter(), Counter()
    for entry in output.skipped():
        (dropped if entry["kind"] == "dropped" else skipped)[entry["reason"]] += 1
    stats = {
        "dataset": name,
        "samples": written,
        "samples_with_images": written - text_only,
        "text_only": text_only,
        "skipped": dict(sorted(skipped.items())),
        "dropped": dict(sorted(dropped.items())),
        "last_process": {
            "rank": output.rank,
            "world_size": output.world_size,
            "seconds": round(seconds, 3),
            "infused": run["infused"],
            "text_only_kept": run["text-only kept"],
            "images_described": run["images described"],
            "output_tokens": run["output tokens"],
            "output_tokens_per_second": round(run["output tokens"] / seconds, 2) if seconds > 0 else 0.0,
        },
    }
    atomic_write_text(output.stats_path, json.dumps(stats, indent=2) + "\n")
    last = stats["last_process"]
    print(
        f"stic-cli infuse: {written} samples in {output.data_dir}: {written - text_only} with images (described), "
        f"{text_only} text-only (keep_text_only)\n"
        f"  this process:   {last['infused']} infused, {last['text_only_kept']} text-only kept, "
        f"{last['images_described']} images described, {last['output_tokens']} output tokens in "
        f"{last['seconds']:.1f} s ({last['output_tokens_per_second']:.1f} tokens/s)\n"
        f"  skipped:        {stats['skipped'] or 'none'}\n"
        f"  dropped:        {stats['dropped'] or 'none'}\n"
        f"  statistics:     {output.stats_path}",
        flush=True,
    )
