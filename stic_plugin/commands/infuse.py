"""``stic-cli infuse``: stage-2 description-infused SFT data (paper Algorithm 2).

Run: ``stic-cli infuse recipes/llava-1.5-7b/infuse.yaml llava_file=llava_v1_5_mix665k.json image_folder=/data``.
The stage-1 model (``model_name_or_path`` + ``adapter_name_or_path``) describes each sampled image; the
description goes into the first user turn; every other turn and every answer is kept as it is (the record is
``method.infusion.infused_record``'s).
"""

from collections import Counter

from ..assets import dataset_entry, read_prompts
from ..data.sources import Sample, check_input_file, image_root, load_samples, source_signature
from ..generation.base import GeneratorSettings, create_generator
from ..method.infusion import infuse_messages, infused_record, read_infusion_format
from ..pipeline.describer import ImageDescriber, Sampling, bad_image_entry, load_images
from ..pipeline.image_inputs import names_images
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
from .config import InfuseConfig


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


class InfuseJob(Job):
    """Each sample: one description request per image not described yet (an image shared by samples is
    described once); the sample's record once all its images are described."""

    progress, unit = "infuse", "sample"

    def __init__(self, cfg: InfuseConfig, describer: ImageDescriber, infusion_format: str, dataset_dir):
        self.cfg, self.describer, self.infusion_format, self.dataset_dir = cfg, describer, infusion_format, dataset_dir
        self.waiting: dict[str, list[Sample]] = {}  # image path -> the samples that wait for its description
        self.missing: dict[str, int] = {}  # sample key -> how many of its images are still being described
        self.named = names_images(cfg)

    def prepare(self, batch: list[Sample]) -> dict:
        known = self.describer.descriptions
        paths = [p for s in batch for p in s.images if p not in known]
        return load_images(paths, self.cfg.max_file_pixels, self.describer.image_root, self.named, self.cfg.ship_images)

    def outcome(self, sample: Sample) -> Outcome:
        if not sample.images:  # drawn only with keep_text_only: kept unchanged
            return Outcome(
                record=infused_record(sample, sample.messages, self.dataset_dir, []), counts={"text-only": 1}
            )
        from llamafactory.extras.constants import IMAGE_PLACEHOLDER

        descriptions = [self.describer.descriptions[path] for path in sample.images]
        texts = [d["description"] for d in descriptions]
        messages = infuse_messages(
            sample.messages, texts, self.infusion_format, IMAGE_PLACEHOLDER, self.cfg.image_placement
        )
        return Outcome(record=infused_record(sample, messages, self.dataset_dir, descriptions), counts={"infused": 1})

    def start(self, sample: Sample, images: dict):
        skipped = bad_image_entry(sample, images | self.describer.unreadable)
        if skipped is not None:
            yield Outcome(skipped=skipped)
            return
        needed = [path for path in dict.fromkeys(sample.images) if path not in self.describer.descriptions]
        if not needed:
            yield self.outcome(sample)
            return
        self.missing[sample.key] = len(needed)
        # Every wait is registered before any request is handed over: the engine may finish a request before it
        # asks for the next one.
        first_asks = [path for path in needed if path not in self.waiting]
        for path in needed:
            self.waiting.setdefault(path, []).append(sample)
        for path in first_asks:  # the first sample to need an image: its one request
            yield self.describer.request(path, images[path])

    def finish(self, request, generation):
        path = self.describer.remember(request.tag, generation)
        for sample in self.waiting.pop(path):
            left = self.missing.pop(sample.key, 0)
            if not left:  # skipped already: another of its images could not be read
                continue
            if generation.unreadable is not None:  # read where the engine runs, and bad there
                yield Outcome(skipped=bad_image_entry(sample, self.describer.unreadable))
            elif left > 1:
                self.missing[sample.key] = left - 1
            else:
                yield self.outcome(sample)


def output_settings(cfg: InfuseConfig, prompts: list[str], infusion_format: str) -> tuple[dict, dict]:
    """(what decides the output's content, its dataset_info.json entry)."""
    fingerprint = {
        **cfg.generation_fingerprint(),
        "prompts": prompts,
        "infusion_format": infusion_format,
        "source_files": source_signature(cfg),
    }
    return fingerprint, {"file_name": cfg.dataset_name, **dataset_entry("stic_sft")}


def preflight(cfg: InfuseConfig) -> None:
    """What the run would refuse about its input and output, refused at once, with nothing written."""
    check_input_file(cfg)
    prompts = read_prompts(cfg.description_prompts_file, "description")
    check_output(cfg, cfg.dataset_name, *output_settings(cfg, prompts, read_infusion_format(cfg.infusion_format_file)))


def run_infuse(cfg: InfuseConfig) -> int:
    infusion_format = read_infusion_format(cfg.infusion_format_file)
    prompts = read_prompts(cfg.description_prompts_file, "description")
    samples = draw_samples(load_samples(cfg), cfg.num_samples, cfg.keep_text_only, cfg.seed)
    fingerprint, entry = output_settings(cfg, prompts, infusion_format)
    output = start_run(cfg, cfg.dataset_name, fingerprint, dataset_entry=entry)
    todo = todo_for_this_process(output, samples, lambda s: s.key, lambda r: str(r["stic"]["sample"]), cfg.overwrite)
    generator = lambda: create_generator(GeneratorSettings.of(cfg))  # noqa: E731 - loaded when first needed
    # Descriptions of earlier runs are reused on resume, never after overwrite=true (the model may have changed).
    describer = ImageDescriber(
        generator,
        prompts,
        Sampling.of(cfg),
        cfg.max_new_tokens,
        output.meta_dir,
        output.records_path.name,
        reuse=not cfg.overwrite,
        image_root=image_root(cfg),
    )
    job = InfuseJob(cfg, describer, infusion_format, output.dataset_dir)
    pipeline = Pipeline(output, job, lambda: describer.generator, cfg.max_new_tokens, Sampling.of(cfg), cfg.batch_size)
    tally: Counter = pipeline.run(todo)
    describer.close()
    tally.update(describer.counts)
    summaries.infuse_summary(output, cfg.dataset_name, tally, pipeline.seconds)
    return finish_run(output, tally["written"], bool(todo), entry)
