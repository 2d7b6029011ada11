"""What ``pref``, ``infuse`` and ``dar`` write about a run when it ends: ``NAME.stats.json`` (everything in the
output so far, every process's, and this process's speed), the summary on the console, and ``pref``'s plot of
the response lengths."""

import io
import json
import logging
from collections import Counter
from pathlib import Path

from ..data.metrics import accuracy, scorable
from ..data.output import DROPPED, ShardedOutput, atomic_write_bytes, atomic_write_text

logger = logging.getLogger("stic_plugin")


def pref_stats(output: ShardedOutput, name: str, run: Counter, seconds: float, listing) -> dict:
    """``NAME.stats.json`` of ``pref``: everything in the output (all processes so far), plus this process's
    speed; and the lengths plot."""
    rank, world = output.rank, output.world_size
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
    for entry in output.open_skips(lambda record: record["stic"]["image"]):
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
        # left out of the listing of image_dir or image_list: links to a folder, other names of an image, already listed
        "links_not_followed": {
            "folders": len(listing.folder_links),
            "images": len(listing.file_links),
            "examples": listing.folder_links[:3] + [f"{link} = {kept}" for link, kept in listing.file_links[:3]],
        },
        "last_process": {
            "rank": rank,
            "world_size": world,
            "seconds": round(seconds, 3),
            "pairs_written": run["written"],
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


def print_pref(stats: dict, output: ShardedOutput) -> None:
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
            f"{links['images']} other name(s) of an image already listed counted once "
            f"(e.g. {'; '.join(links['examples'])})"
        )
    lines += [
        f"  this process:     {last['pairs_written']} pairs, {last['output_tokens']} output tokens in "
        f"{last['seconds']:.1f} s ({last['output_tokens_per_second']:.1f} tokens/s)",
        f"  statistics:       {output.stats_path}",
    ]
    print("\n".join(lines), flush=True)


def infuse_summary(output: ShardedOutput, name: str, run: Counter, seconds: float) -> None:
    """``NAME.stats.json`` of ``infuse``, and its summary on the console."""
    written = text_only = truncated = 0
    for record in output.records():
        written += 1
        text_only += not record["images"]
        truncated += any(record["stic"].get("descriptions_truncated", []))
    skipped, dropped = Counter(), Counter()
    for entry in output.open_skips(lambda record: str(record["stic"]["sample"])):
        (dropped if entry["kind"] == DROPPED else skipped)[entry["reason"]] += 1
    stats = {
        "dataset": name,
        "samples": written,
        "samples_with_images": written - text_only,
        "text_only": text_only,
        "descriptions_truncated": truncated,  # samples with a description cut at max_new_tokens (flagged)
        "skipped": dict(sorted(skipped.items())),
        "dropped": dict(sorted(dropped.items())),
        "last_process": {
            "rank": output.rank,
            "world_size": output.world_size,
            "seconds": round(seconds, 3),
            "infused": run["infused"],
            "text_only_kept": run["text-only"],
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
        f"  this process:     {last['infused']} infused, {last['text_only_kept']} text-only kept, "
        f"{last['images_described']} images described, {last['output_tokens']} output tokens in "
        f"{last['seconds']:.1f} s ({last['output_tokens_per_second']:.1f} tokens/s)\n"
        f"  truncated:        {truncated} sample(s) with a description cut at max_new_tokens (flagged in the records)\n"
        f"  skipped:          {stats['skipped'] or 'none'}\n"
        f"  dropped:          {stats['dropped'] or 'none'}\n"
        f"  statistics:       {output.stats_path}",
        flush=True,
    )


def dar_summary(cfg, output: ShardedOutput, run: Counter, seconds: float) -> None:
    """``NAME.stats.json`` of ``dar`` (with the accuracy where answers are known), and its summary."""
    records = list(output.records())
    stats = {
        "predictions": len(records),
        "mode": "describe-and-respond" if cfg.dar else "direct",
        "truncated_answers": sum(bool(r.get("truncated")) for r in records),
        "truncated_descriptions": sum(bool(r.get("description_truncated")) for r in records),
        "skipped": dict(Counter(entry["reason"] for entry in output.open_skips(lambda record: str(record["id"])))),
        "last_process": {
            "rank": output.rank,
            "answered": run["answered"],
            "seconds": round(seconds, 3),
            "images_described": run["images described"],
        },
    }
    lines = [f"stic-cli dar: {len(records)} predictions ({stats['mode']}) in {output.data_dir}"]
    if cfg.metric != "none":
        correct, counted = accuracy([(r["prediction"], r["reference"]) for r in records], cfg.metric)
        unscorable = sum(1 for r in records if r["reference"] and not scorable(r["reference"], cfg.metric))
        stats.update(
            metric=cfg.metric,
            correct=correct,
            counted=counted,
            unscorable_references=unscorable,
            accuracy=round(correct / counted, 6) if counted else None,
        )
        if counted:
            lines.append(f"  accuracy ({cfg.metric}): {correct / counted:.4f} ({correct}/{counted})")
        else:
            lines.append(f"  accuracy ({cfg.metric}): no prediction has a reference answer it can score")
        if unscorable:
            lines.append(
                f"  not scored:       {unscorable} reference(s) that `{cfg.metric}` cannot read (e.g. no letter)"
            )
    # Only what was cut: answering directly describes nothing, and questions without images have no description.
    cut = []
    if stats["truncated_answers"]:
        cut.append(f"{stats['truncated_answers']} answer(s) at max_new_tokens={cfg.max_new_tokens}")
    if stats["truncated_descriptions"]:
        cut.append(
            f"{stats['truncated_descriptions']} prediction(s) with a description cut at description_max_new_tokens="
            f"{cfg.description_max_new_tokens}"
        )
    if cut:
        lines.append(f"  truncated:        {', '.join(cut)} (flagged in the predictions)")
    if stats["skipped"]:
        lines.append(f"  skipped questions (not answered, not counted): {stats['skipped']}")
    atomic_write_text(output.stats_path, json.dumps(stats, indent=2) + "\n")
    lines.append(f"  statistics:       {output.stats_path}")
    print("\n".join(lines), flush=True)
