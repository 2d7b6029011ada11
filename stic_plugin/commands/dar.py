"""``stic-cli dar``: describe-and-respond inference (the paper's DaR).

Run: ``stic-cli dar recipes/llava-1.5-7b/dar.yaml dataset=my_questions metric=choice`` (``dar=false`` answers
directly, to compare both on the same model). Pass 1 describes each image (the image is sent); pass 2
answers with the description infused into the question exactly as in stage 2. One prediction::

    {"id": 17, "question": "<image>\\nWhich animal is shown?\\nA. cat\\nB. dog", "description": "A small dog ...",
     "prediction": "B", "reference": "B", "truncated": false, "description_truncated": false}
"""

import json
import time
from collections import Counter

from ..data.describe import (
    DescribeAndRespond,
    ImageDescriber,
    Question,
    bad_image_entry,
    lazy_stream,
    load_images,
)
from ..data.infusion import read_infusion_format
from ..data.metrics import accuracy, scorable
from ..data.output import atomic_write_text
from ..data.runs import finish_run, my_todo, prefetched_batches, progress_name, sample_reproducibly, start_run
from ..data.sources import Sample, image_root, load_samples, source_signature
from .config import DarConfig


def question_and_reference(sample: Sample) -> tuple[list[dict], str | None]:
    """The conversation to answer, and the reference answer when the data has one."""
    messages = sample.messages
    if messages and messages[-1]["role"] == "assistant":
        return messages[:-1], (messages[-1]["content"] or None)
    return messages, None


def run_dar(cfg: DarConfig) -> int:
    from tqdm import tqdm

    from ..generation.backends import load_generator
    from ..generation.images import BadImage

    infusion_format = read_infusion_format(cfg.infusion_format_file)
    samples = sample_reproducibly(load_samples(cfg, unanswered_ok=True), cfg.num_samples, cfg.seed, "dar")
    if not samples:
        raise ValueError("the input holds no question")
    fingerprint = {
        **cfg.generation_fingerprint(),
        "infusion_format": infusion_format,
        "source_files": source_signature(cfg),
    }
    fingerprint.pop("metric")  # scoring again with another metric needs no new predictions
    output = start_run(cfg, cfg.predictions_name, fingerprint, name_key="predictions_name")
    todo = my_todo(output, samples, lambda s: s.key, lambda record: str(record["id"]), cfg.overwrite)

    # The describer loads the model when first needed; the answers use the same model. Descriptions are logged
    # in the output's folder, so that a resumed run answers from them instead of describing again.
    describer = ImageDescriber(
        lambda: load_generator(cfg),
        [cfg.description_prompt],
        cfg,
        cfg.description_max_new_tokens,
        output.meta_dir,
        output.records_path.name,
        reuse=not cfg.overwrite,
        image_root=image_root(cfg),
    )
    responder = DescribeAndRespond(describer, infusion_format, cfg.image_placement, cfg.dar)
    run = Counter()
    started = time.time()
    mode = "dar" if cfg.dar else "answer"

    def read_images(batch, skip_described: bool):
        return load_images(
            [p for s in batch for p in s.images if not (skip_described and p in describer.descriptions)],
            cfg.max_image_pixels,
        )

    if cfg.dar:  # pass 1: every image's description, as one stream (bad images are skipped in pass 2)

        def description_requests():
            requested = set()
            describing = progress_name("describe", output.rank, output.world_size)
            for _, images in prefetched_batches(todo, cfg.batch_size, lambda b: read_images(b, True), describing):
                for path, image in images.items():
                    if not isinstance(image, BadImage) and path not in requested:
                        requested.add(path)
                        yield describer.request(path, image)

        for _ in describer.describe_stream(description_requests()):
            pass

    predictions, skipped_log = output.open_writers()
    progress = tqdm(total=len(todo), unit="question", desc=progress_name(mode, output.rank, output.world_size))

    def answer_requests():
        """Pass 2: every question, as one stream; bad images are logged here."""
        for batch, images in prefetched_batches(todo, cfg.batch_size, lambda b: read_images(b, False), None):
            for sample in batch:
                skipped = bad_image_entry(sample, images)
                if skipped is not None:
                    skipped_log.write(skipped)
                    run[f"skipped: {skipped['reason']}"] += 1
                    progress.update(1)
                    continue
                messages, reference = question_and_reference(sample)
                question = Question(messages, sample.images, sample.system or None, key=f"answer:{sample.key}")
                request = responder.request(question, images)
                request.tag = (sample, reference, question)
                yield request

    with predictions, skipped_log:
        answers = lazy_stream(
            lambda: responder.generator,
            answer_requests(),
            cfg.max_new_tokens,
            cfg.temperature,
            cfg.top_p,
            seed=cfg.seed,
            slots=cfg.batch_size,
        )
        for request, answer in answers:
            sample, reference, asked = request.tag
            descriptions = responder.descriptions_of(asked)
            question = next((m["content"] for m in sample.messages if m["role"] == "user"), "")
            predictions.write(
                {
                    "id": sample.index,
                    "source_id": sample.source_id,
                    "question": question,
                    "description": "\n\n".join(descriptions),
                    "prediction": answer.text,
                    "reference": reference,
                    # Cut at max_new_tokens (an open-ended answer scored short) / description_max_new_tokens.
                    "truncated": answer.truncated,
                    "description_truncated": any(describer.descriptions[p]["truncated"] for p in sample.images)
                    if cfg.dar
                    else False,
                }
            )
            run["answered"] += 1
            run["output tokens"] += answer.tokens
            progress.update(1)
    progress.close()
    describer.close()
    run.update(describer.counts)
    write_summary(cfg, output, run, time.time() - started)
    return finish_run(output, run["answered"], bool(todo))


def write_summary(cfg: DarConfig, output, run: Counter, seconds: float) -> None:
    records = list(output.records())
    stats = {
        "predictions": len(records),
        "mode": "describe-and-respond" if cfg.dar else "direct",
        "truncated_answers": sum(bool(r.get("truncated")) for r in records),
        "truncated_descriptions": sum(bool(r.get("description_truncated")) for r in records),
        "skipped": dict(Counter(entry["reason"] for entry in output.skipped())),
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
            lines.append(f"  not scored: {unscorable} reference(s) that `{cfg.metric}` cannot read (e.g. no letter)")
    if stats["truncated_answers"] or stats["truncated_descriptions"]:
        lines.append(
            f"  truncated: {stats['truncated_answers']} answer(s) at max_new_tokens={cfg.max_new_tokens}, "
            f"{stats['truncated_descriptions']} description(s) at description_max_new_tokens="
            f"{cfg.description_max_new_tokens} (flagged in the predictions)"
        )
    if stats["skipped"]:
        lines.append(f"  skipped questions (not answered, not counted): {stats['skipped']}")
    atomic_write_text(output.stats_path, json.dumps(stats, indent=2) + "\n")
    lines.append(f"  statistics: {output.stats_path}")
    print("\n".join(lines), flush=True)
