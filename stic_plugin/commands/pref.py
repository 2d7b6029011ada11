"""``stic-cli pref``: STIC stage-1 preference data from unlabeled images (paper Algorithm 1).

Run: ``stic-cli pref recipes/llava-1.5-7b/pref.yaml image_dir=/data/coco/train2014 max_samples=6000``,
or under ``torchrun --nproc-per-node 8 $(which stic-cli) pref ...`` on several GPUs. One output record::

    {"messages": [{"role": "user", "content": "<image>\\nInterpret the scene shown in the image."}],
     "chosen": {"role": "assistant", "content": "The image shows ..."},
     "rejected": {"role": "assistant", "content": "..."},
     "images": ["../coco/COCO_train2014_000000000009.jpg"],
     "stic": {"image": "COCO_train2014_000000000009.jpg", "negative": "corruption", "bad_prompt": "",
              "corruption": "color_jitter",
              "corruption_params": {"shorter_side": 0, "brightness": 1.21, "hue": -0.07, "order": "hue,brightness"},
              ...}}
"""

import io
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..assets import dataset_entry, read_prompts
from ..data.output import ShardedOutput, atomic_write_bytes, atomic_write_text
from ..data.runs import finish_run, my_todo, prefetched_batches, progress_name, sample_reproducibly, start_run
from ..generation.corruption import corruption_record
from ..generation.engine import user_turn
from ..generation.images import (
    BadImage,
    FolderScan,
    ImageItem,
    as_training_rgb,
    images_in_list,
    load_image,
    lossy_training_conversion,
    scan_folder,
)
from ..generation.planning import NEGATIVE_CORRUPTION, PairPlan, plan_pair
from .config import PrefConfig

logger = logging.getLogger("stic_plugin.pref")

DROPPED = "dropped"
SKIPPED = "skipped"


def select_images(items: list[ImageItem], max_samples: int | None, seed: int) -> list[ImageItem]:
    """All images (sorted by key), or ``max_samples`` of them drawn with ``seed``: the same in every process."""
    return sample_reproducibly(sorted(items, key=lambda item: item.key), max_samples, seed, "images")


def list_source_images(cfg) -> FolderScan:
    """The images to describe; from a folder, with the links left out of the listing (for the summary)."""
    if cfg.image_dir is not None:
        scan = scan_folder(cfg.image_dir)
        for link in scan.folder_links:
            logger.info("not followed: %s leads to a folder already listed", link)
        for link, kept in scan.file_links:
            logger.info("counted once: %s is the same file as %s", link, kept)
        return scan
    return FolderScan(images_in_list(cfg.image_list, cfg.image_root, cfg.image_column))


@dataclass
class PairInputs:
    """One readable image of a batch, its plan, and the image the rejected response is written from."""

    item: ImageItem
    plan: PairPlan
    image: object
    rejected_image: object


def read_and_corrupt(items: list[ImageItem], cfg: PrefConfig, prompts: dict) -> tuple[list[PairInputs], list[dict]]:
    """Read the images of one batch and corrupt where planned; bad files become skip entries."""
    from ..generation.corruption import apply_corruption

    ready, skipped = [], []
    for item in items:
        if item.unusable:  # not read: its path cannot even be written down as text
            skipped.append(dict(key=item.key, path=item.path, kind=SKIPPED, reason=item.unusable, detail=""))
            continue
        plan = plan_for(item.key, cfg, prompts)
        try:
            image = load_image(item.path, cfg.max_image_pixels)
        except BadImage as bad:
            skipped.append(dict(key=item.key, path=item.path, kind=SKIPPED, reason=bad.reason, detail=bad.detail))
            continue
        loss = lossy_training_conversion(image)
        if loss:
            logger.warning("%s: %s", item.key, loss)
        rejected_image = image
        if plan.negative == NEGATIVE_CORRUPTION:
            rejected_image = apply_corruption(as_training_rgb(image), plan.corruption, plan.corruption_params)
        ready.append(PairInputs(item, plan, image, rejected_image))
    return ready, skipped


def plan_for(key: str, cfg: PrefConfig, prompts: dict) -> PairPlan:
    return plan_pair(
        cfg.seed,
        key,
        prompts["preferred"],
        prompts["captioning"],
        prompts["hallucination"],
        cfg.corruption_prob,
        cfg.corruptions,
        cfg.low_resolution_size,
        cfg.jitter_brightness,
        cfg.jitter_hue,
    )


def build_record(inputs: PairInputs, chosen, rejected, dataset_dir: Path) -> dict:
    plan = inputs.plan
    try:
        image_path = os.path.relpath(inputs.item.path, dataset_dir)
    except ValueError:  # another drive
        image_path = inputs.item.path
    return {
        "messages": [{"role": "user", "content": user_turn(plan.training_prompt)}],
        "chosen": {"role": "assistant", "content": chosen.text},
        "rejected": {"role": "assistant", "content": rejected.text},
        "images": [image_path],
        # Fixed keys and types (no nulls), so any JSON reader infers one schema for the whole file.
        "stic": {
            "image": plan.key,
            "negative": plan.negative,
            "preferred_prompt": plan.preferred_prompt,
            "bad_prompt": plan.bad_prompt or "",
            "corruption": plan.corruption or "",
            "corruption_params": corruption_record(plan.corruption_params),
            "chosen_tokens": chosen.tokens,
            "rejected_tokens": rejected.tokens,
            "chosen_truncated": chosen.truncated,
            "rejected_truncated": rejected.truncated,
        },
    }


def drop_reason(chosen, rejected, on_truncated: str) -> str | None:
    """Pairs that cannot teach anything, or that the user asked to leave out."""
    if not chosen.text:
        return "empty chosen"
    if not rejected.text:
        return "empty rejected"
    if chosen.text == rejected.text:
        return "chosen identical to rejected"
    if chosen.truncated and on_truncated == "drop":
        return "chosen truncated"
    return None


def run_pref(cfg: PrefConfig) -> int:
    prompts = {
        "preferred": read_prompts(cfg.preferred_prompt_file, "preferred"),
        "captioning": read_prompts(cfg.captioning_prompts_file, "captioning"),
        "hallucination": read_prompts(cfg.hallucination_prompts_file, "hallucination"),
    }
    listing = list_source_images(cfg)
    items = select_images(listing.items, cfg.max_samples, cfg.seed)
    if not items:
        raise ValueError(f"no image files found in {cfg.image_dir or cfg.image_list}")
    fingerprint = {**cfg.generation_fingerprint(), "prompts": prompts}
    entry = {"file_name": cfg.dataset_name, **dataset_entry("stic_pref")}
    output = start_run(cfg, cfg.dataset_name, fingerprint, dataset_entry=entry)
    rank, world = output.rank, output.world_size
    todo = my_todo(output, items, lambda item: item.key, lambda record: record["stic"]["image"], cfg.overwrite)

    run = Counter()
    seconds = 0.0
    if todo:
        from tqdm import tqdm

        from ..generation.backends import load_generator
        from ..generation.engine import Request

        generator = load_generator(cfg)
        started = time.time()  # generation speed, model loading excluded
        records, skipped_log = output.open_writers()
        # Images are read and corrupted on a thread, a batch ahead of the model.
        batches = prefetched_batches(todo, cfg.batch_size, lambda batch: read_and_corrupt(batch, cfg, prompts), None)
        progress = tqdm(total=len(todo), unit="image", desc=progress_name("pref", rank, world))

        def requests():
            """Both generations of every readable image, as one stream; unreadable images are logged here."""
            for _, (ready, skipped) in batches:
                for entry in skipped:
                    logger.warning("skipped %s: %s %s", entry["key"], entry["reason"], entry["detail"])
                    skipped_log.write(entry)
                    run[f"skipped: {entry['reason']}"] += 1
                    progress.update(1)
                for one in ready:
                    # Each generation draws from its own stream, named by the image: the same samples
                    # whatever the batch size, the number of processes or the order of finishing.
                    key = one.item.key
                    yield Request.single(
                        user_turn(one.plan.preferred_prompt), one.image, key=f"{key}:chosen", tag=(one, "chosen")
                    )
                    yield Request.single(
                        user_turn(one.plan.rejected_prompt),
                        one.rejected_image,
                        key=f"{key}:rejected",
                        tag=(one, "rejected"),
                    )

        halves: dict[str, dict] = {}  # image key -> the generation that finished first
        with records, skipped_log:
            stream = generator.generate_stream(
                requests(),
                cfg.max_new_tokens,
                cfg.temperature,
                cfg.top_p,
                seed=cfg.seed,
                slots=2 * min(cfg.batch_size, len(todo)),
            )
            for request, generation in stream:
                inputs, side = request.tag
                pair = halves.setdefault(inputs.item.key, {})
                pair[side] = generation
                if len(pair) < 2:
                    continue
                del halves[inputs.item.key]
                progress.update(1)
                chosen, rejected = pair["chosen"], pair["rejected"]
                run["output tokens"] += chosen.tokens + rejected.tokens
                reason = drop_reason(chosen, rejected, cfg.on_truncated)
                if reason:
                    skipped_log.write(
                        dict(key=inputs.item.key, path=inputs.item.path, kind=DROPPED, reason=reason, detail="")
                    )
                    run[f"dropped: {reason}"] += 1
                    continue
                records.write(build_record(inputs, chosen, rejected, output.dataset_dir))
                run["pairs written"] += 1
        progress.close()
        seconds = time.time() - started

    stats = write_stats(output, cfg.dataset_name, rank, world, run, seconds, listing)
    print_summary(stats, output)
    return finish_run(output, run["pairs written"], bool(todo), entry)


def write_stats(
    output: ShardedOutput, name: str, rank: int, world: int, run: Counter, seconds: float, listing: FolderScan
) -> dict:
    """Statistics of everything in the output (all processes so far), plus this process's speed."""
    by_negative: dict[str, dict] = {}
    truncated = 0
    records = 0
    for record in output.records():
        meta = record["stic"]
        records += 1
        entry = by_negative.setdefault(meta["negative"], {"pairs": 0, "chosen_tokens": [], "rejected_tokens": []})
        entry["pairs"] += 1
        entry["chosen_tokens"].append(meta["chosen_tokens"])
        entry["rejected_tokens"].append(meta["rejected_tokens"])
        truncated += bool(meta["chosen_truncated"])
    skipped, dropped = Counter(), Counter()
    for entry in output.skipped():
        (dropped if entry["kind"] == DROPPED else skipped)[entry["reason"]] += 1
    stats = {
        "dataset": name,
        "pairs": records,
        "pairs_by_negative": {k: v["pairs"] for k, v in sorted(by_negative.items())},
        "mean_tokens": {
            k: {"chosen": _mean(v["chosen_tokens"]), "rejected": _mean(v["rejected_tokens"])}
            for k, v in sorted(by_negative.items())
        },
        "chosen_truncated": truncated,
        "skipped": dict(sorted(skipped.items())),
        "dropped": dict(sorted(dropped.items())),
        # left out of the listing of image_dir: links to a folder or an image already listed
        "links_not_followed": {
            "folders": len(listing.folder_links),
            "images": len(listing.file_links),
            "examples": listing.folder_links[:3] + [f"{link} = {kept}" for link, kept in listing.file_links[:3]],
        },
        "last_process": {
            "rank": rank,
            "world_size": world,
            "seconds": round(seconds, 3),
            "pairs_written": run["pairs written"],
            "output_tokens": run["output tokens"],
            "output_tokens_per_second": round(run["output tokens"] / seconds, 2) if seconds > 0 else 0.0,
        },
    }
    atomic_write_text(output.stats_path, json.dumps(stats, indent=2) + "\n")
    plot_lengths(by_negative, output.dataset_dir / f"{name}.lengths.png")
    return stats


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def lengths_figure(by_negative: dict):
    """Response lengths, chosen against rejected, one panel per negative type: the two side by side in each
    bin (overlaid bars would hide one behind the other)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(by_negative), figsize=(5 * len(by_negative), 3.5), squeeze=False)
    for axis, (negative, entry) in zip(axes[0], sorted(by_negative.items())):
        axis.hist(
            [entry["chosen_tokens"], entry["rejected_tokens"]],
            bins=30,
            label=["chosen", "rejected"],
            color=["tab:blue", "tab:orange"],
        )
        axis.set_title(f"negative: {negative} ({entry['pairs']} pairs)")
        axis.set_xlabel("response length (tokens)")
        axis.set_ylabel("pairs")
        axis.legend()
    figure.tight_layout()
    return figure


def plot_lengths(by_negative: dict, path: Path) -> None:
    """``NAME.lengths.png``: see ``lengths_figure``."""
    if not by_negative:
        return
    import matplotlib.pyplot as plt

    figure = lengths_figure(by_negative)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    try:
        atomic_write_bytes(path, buffer.getvalue())  # a private temporary file: processes may finish together
    except OSError as err:
        logger.warning("could not write %s: %s", path, err)


def print_summary(stats: dict, output: ShardedOutput) -> None:
    last = stats["last_process"]
    lines = [
        f"stic-cli pref: {stats['pairs']} pairs in {output.data_dir}"
        + (" so far (the other processes may still be writing)" if last["world_size"] > 1 else ""),
        f"  by negative type: {stats['pairs_by_negative']}",
        f"  skipped images:   {stats['skipped'] or 'none'}",
        f"  dropped pairs:    {stats['dropped'] or 'none'}",
        f"  chosen truncated: {stats['chosen_truncated']}",
    ]
    links = stats["links_not_followed"]
    if links["folders"] or links["images"]:
        lines.append(
            f"  links:            {links['folders']} link(s) to a folder already listed not followed, "
            f"{links['images']} link(s) to an image already listed counted once (e.g. {'; '.join(links['examples'])})"
        )
    lines += [
        f"  this process:     {last['pairs_written']} pairs, {last['output_tokens']} output tokens in "
        f"{last['seconds']:.1f} s ({last['output_tokens_per_second']:.1f} tokens/s)",
        f"  statistics:       {output.stats_path}",
    ]
    print("\n".join(lines), flush=True)
