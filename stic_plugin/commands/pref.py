"""``stic-cli pref``: STIC stage-1 preference data from unlabeled images (paper Algorithm 1).

Run: ``stic-cli pref recipes/llava-1.5-7b/pref.yaml image_dir=/data/coco/train2014 max_samples=6000``,
or under ``torchrun --nproc-per-node 8 $(which stic-cli) pref ...`` on several GPUs. Each image gives one pair:
the preferred description (the step-by-step prompt, on the clean image) and the dispreferred one (a
hallucination prompt, or the training prompt on a corrupted image), stored under the training prompt; the
record is ``method.pairs.pair_record``'s.
"""

import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ..assets import dataset_entry, read_prompts
from ..data.images import BadImage, ImageItem, list_images
from ..generation.base import GeneratorSettings, Request, create_generator, user_turn
from ..method.pairs import NEGATIVE_CORRUPTION, PairPlan, drop_reason, pair_record, plan_pair
from ..pipeline.describer import Sampling
from ..pipeline.image_inputs import corrupted, named_image, names_images, read_image
from ..pipeline.run import (
    Job,
    Outcome,
    Pipeline,
    check_output,
    finish_run,
    sample_reproducibly,
    start_run,
    todo_for_this_process,
)
from . import summaries
from .config import PrefConfig

logger = logging.getLogger("stic_plugin.pref")


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


@dataclass
class PairInputs:
    """One readable image, its plan, and the image the rejected response is written from."""

    item: ImageItem
    plan: PairPlan
    image: object
    rejected_image: object


def skip_entry(item: ImageItem, kind: str, reason: str, detail: str = "") -> dict:
    return dict(key=item.key, path=item.path, kind=kind, reason=reason, detail=detail)


class PairJob(Job):
    """Each image: its two generations (one stream: both sides of every image); the pair's record once both
    are done, or the reason it is dropped."""

    progress, unit = "pref", "image"

    def __init__(self, cfg: PrefConfig, prompts: dict, dataset_dir):
        self.cfg, self.prompts, self.dataset_dir = cfg, prompts, dataset_dir
        self.first_finished: dict[str, tuple] = {}  # image key -> (side, generation) of the side done first
        self.named = names_images(cfg)

    def prepare(self, items: list[ImageItem]) -> dict:
        """Read the batch's images and corrupt where planned (or name them, with the corruption to apply, where
        the engines read the files): key -> PairInputs, or the skip entry of a bad file."""
        prepared = {}
        for item in items:
            if item.unusable:  # not read: its path cannot even be written down as text
                prepared[item.key] = skip_entry(item, "skipped", item.unusable)
                continue
            plan = plan_for(item.key, self.cfg, self.prompts)
            try:
                image, rejected = self.images(item, plan)
            except BadImage as bad:
                prepared[item.key] = skip_entry(item, "skipped", bad.reason, bad.detail)
                continue
            prepared[item.key] = PairInputs(item, plan, image, rejected)
        return prepared

    def images(self, item: ImageItem, plan: PairPlan) -> tuple:
        """(the clean image, the one the rejected response is written from); raises BadImage."""
        corrupt = plan.negative == NEGATIVE_CORRUPTION
        if self.named:
            image = named_image(item.path, self.cfg.max_file_pixels, self.cfg.ship_images)
            if isinstance(image, BadImage):
                raise image
            return image, replace(
                image, corruption=plan.corruption, corruption_params=plan.corruption_params
            ) if corrupt else image
        image = read_image(item.path, self.cfg.max_file_pixels)
        return image, corrupted(image, plan.corruption, plan.corruption_params) if corrupt else image

    def start(self, item: ImageItem, prepared: dict):
        one = prepared[item.key]
        if isinstance(one, dict):
            logger.warning("skipped %s: %s %s", one["key"], one["reason"], one["detail"])
            yield Outcome(skipped=one)
            return
        # Each generation draws from its own stream, named by the image: the same samples whatever the batch
        # size, the number of processes or the order of finishing.
        yield Request.single(user_turn(one.plan.preferred_prompt), one.image, key=f"{item.key}:chosen", tag=(one, 0))
        rejected = user_turn(one.plan.rejected_prompt)
        yield Request.single(rejected, one.rejected_image, key=f"{item.key}:rejected", tag=(one, 1))

    def finish(self, request: Request, generation):
        one, side = request.tag
        other = self.first_finished.pop(one.item.key, None)
        if other is None:
            self.first_finished[one.item.key] = (side, generation)
            return
        chosen, rejected = (generation, other[1]) if side == 0 else (other[1], generation)
        unreadable = chosen.unreadable or rejected.unreadable  # read where the engine runs, and bad there
        if unreadable is not None:
            logger.warning("skipped %s: %s", one.item.key, unreadable)
            yield Outcome(skipped=skip_entry(one.item, "skipped", unreadable.reason, unreadable.detail))
            return
        counts = {"output tokens": chosen.tokens + rejected.tokens}
        reason = drop_reason(chosen, rejected, self.cfg.on_truncated)
        if reason:
            yield Outcome(skipped=skip_entry(one.item, "dropped", reason), counts=counts)
            return
        yield Outcome(record=pair_record(one.plan, one.item.path, chosen, rejected, self.dataset_dir), counts=counts)


def read_prompt_sets(cfg: PrefConfig) -> dict:
    return {
        "preferred": read_prompts(cfg.preferred_prompt_file, "preferred"),
        "captioning": read_prompts(cfg.captioning_prompts_file, "captioning"),
        "hallucination": read_prompts(cfg.hallucination_prompts_file, "hallucination"),
    }


def output_settings(cfg: PrefConfig, prompts: dict) -> tuple[dict, dict]:
    """(what decides the output's content, its dataset_info.json entry)."""
    fingerprint = {**cfg.generation_fingerprint(), "prompts": prompts}
    return fingerprint, {"file_name": cfg.dataset_name, **dataset_entry("stic_pref")}


def preflight(cfg: PrefConfig) -> None:
    """What the run would refuse about its input and output, refused at once, with nothing written."""
    if cfg.image_dir is not None and not Path(cfg.image_dir).is_dir():
        raise ValueError(f"`image_dir`: {Path(cfg.image_dir).absolute()} is not a folder")
    if cfg.image_list is not None and not Path(cfg.image_list).is_file():
        raise ValueError(f"`image_list`: {Path(cfg.image_list).absolute()} is not a file")
    check_output(cfg, cfg.dataset_name, *output_settings(cfg, read_prompt_sets(cfg)))


def run_pref(cfg: PrefConfig) -> int:
    prompts = read_prompt_sets(cfg)
    listing = list_images(cfg.image_dir, cfg.image_list, cfg.image_root, cfg.image_column)
    items = sample_reproducibly(sorted(listing.items, key=lambda item: item.key), cfg.max_samples, cfg.seed, "images")
    if not items:
        raise ValueError(f"no image files found in {cfg.image_dir or cfg.image_list}")
    fingerprint, entry = output_settings(cfg, prompts)
    output = start_run(cfg, cfg.dataset_name, fingerprint, dataset_entry=entry)
    todo = todo_for_this_process(output, items, lambda item: item.key, lambda r: r["stic"]["image"], cfg.overwrite)
    tally, seconds = Counter(), 0.0
    if todo:  # two generations per image decoding together
        sampling = replace(Sampling.of(cfg), slots=2 * min(cfg.batch_size, len(todo)))
        job = PairJob(cfg, prompts, output.dataset_dir)
        make_generator = lambda: create_generator(GeneratorSettings.of(cfg))  # noqa: E731 - loaded when needed
        pipeline = Pipeline(output, job, make_generator, cfg.max_new_tokens, sampling, cfg.batch_size)
        tally, seconds = pipeline.run(todo), pipeline.seconds
    stats = summaries.pref_stats(output, cfg.dataset_name, tally, seconds, listing)
    summaries.print_pref(stats, output)
    return finish_run(output, tally["written"], bool(todo), entry)
