"""``stic-cli dar``: describe-and-respond inference (the paper's DaR).

Run: ``stic-cli dar recipes/llava-1.5-7b/dar.yaml dataset=my_questions metric=choice`` (``dar=false`` answers
directly, to compare both on the same model). Pass 1 describes each image (the image is sent); pass 2
answers with the description infused into the question exactly as in stage 2 (``method.dar``). One prediction::

    {"id": 17, "question": "<image>\\nWhich animal is shown?\\nA. cat\\nB. dog", "description": "A small dog ...",
     "prediction": "B", "reference": "B", "truncated": false, "description_truncated": false}
"""

from ..data.images import BadImage
from ..data.sources import Sample, check_input_file, image_root, load_samples, source_signature
from ..generation.base import GeneratorSettings, create_generator
from ..method.dar import DescribeAndRespond, Question
from ..method.infusion import read_infusion_format
from ..pipeline.describer import ImageDescriber, Sampling, bad_image_entry, load_images
from ..pipeline.image_inputs import names_images
from ..pipeline.run import (
    Job,
    Outcome,
    Pipeline,
    check_output,
    finish_run,
    prefetched_batches,
    progress_name,
    sample_reproducibly,
    start_run,
    todo_for_this_process,
)
from . import summaries
from .config import DarConfig


def question_and_reference(sample: Sample) -> tuple[list[dict], str | None]:
    """The conversation to answer, and the reference answer when the data has one."""
    messages = sample.messages
    if messages and messages[-1]["role"] == "assistant":
        return messages[:-1], (messages[-1]["content"] or None)
    return messages, None


class AnswerJob(Job):
    """Pass 2: each question answered (after its images' descriptions when ``dar``); its prediction."""

    unit = "question"

    def __init__(self, cfg: DarConfig, responder: DescribeAndRespond):
        self.cfg, self.responder, self.describer = cfg, responder, responder.describer
        self.progress = "dar" if cfg.dar else "answer"
        self.named = names_images(cfg)

    def prepare(self, batch: list[Sample]) -> dict:
        paths = [path for sample in batch for path in sample.images]
        return load_images(paths, self.cfg.max_file_pixels, self.describer.image_root, self.named, self.cfg.ship_images)

    def start(self, sample: Sample, images: dict):
        skipped = bad_image_entry(sample, images | self.describer.unreadable)
        if skipped is not None:
            yield Outcome(skipped=skipped)
            return
        messages, reference = question_and_reference(sample)
        question = Question(messages, sample.images, sample.system or None, key=f"answer:{sample.key}")
        request = self.responder.request(question, images)
        request.tag = (sample, reference, question)
        yield request

    def finish(self, request, answer):
        sample, reference, asked = request.tag
        if answer.unreadable is not None:  # read where the engine runs, and bad there
            self.describer.remember(sample.images[answer.unreadable.image], answer)
            yield Outcome(skipped=bad_image_entry(sample, self.describer.unreadable))
            return
        described = self.cfg.dar and any(self.describer.descriptions[p]["truncated"] for p in sample.images)
        prediction = {
            "id": sample.index,
            "source_id": sample.source_id,
            "question": next((m["content"] for m in sample.messages if m["role"] == "user"), ""),
            "description": "\n\n".join(self.responder.descriptions_of(asked)),
            "prediction": answer.text,
            "reference": reference,
            # Cut at max_new_tokens (an open-ended answer scored short) / description_max_new_tokens.
            "truncated": answer.truncated,
            "description_truncated": bool(described),
        }
        yield Outcome(record=prediction, counts={"answered": 1, "output tokens": answer.tokens})


def describe_every_image(cfg: DarConfig, describer: ImageDescriber, todo: list[Sample], output) -> None:
    """Pass 1: every image's description, as one stream (bad images are skipped in pass 2)."""

    def read(batch):
        paths = [p for s in batch for p in s.images if p not in describer.descriptions]
        return load_images(paths, cfg.max_file_pixels, describer.image_root, names_images(cfg), cfg.ship_images)

    def requests():
        requested = set()
        describing = progress_name("describe", output.rank, output.world_size)
        for _, images in prefetched_batches(todo, cfg.batch_size, read, describing):
            for path, image in images.items():
                if not isinstance(image, BadImage) and path not in requested:
                    requested.add(path)
                    yield describer.request(path, image)

    for _ in describer.describe_stream(requests()):
        pass


def output_fingerprint(cfg: DarConfig, infusion_format: str) -> dict:
    """What decides the predictions."""
    fingerprint = {
        **cfg.generation_fingerprint(),
        "infusion_format": infusion_format,
        "source_files": source_signature(cfg),
    }
    fingerprint.pop("metric")  # scoring again with another metric needs no new predictions
    return fingerprint


def preflight(cfg: DarConfig) -> None:
    """What the run would refuse about its input and output, refused at once, with nothing written."""
    check_input_file(cfg)
    fingerprint = output_fingerprint(cfg, read_infusion_format(cfg.infusion_format_file))
    check_output(cfg, cfg.predictions_name, fingerprint, name_key="predictions_name")


def run_dar(cfg: DarConfig) -> int:
    infusion_format = read_infusion_format(cfg.infusion_format_file)
    samples = sample_reproducibly(load_samples(cfg, unanswered_ok=True), cfg.num_samples, cfg.seed, "dar")
    if not samples:
        raise ValueError("the input holds no question")
    fingerprint = output_fingerprint(cfg, infusion_format)
    output = start_run(cfg, cfg.predictions_name, fingerprint, name_key="predictions_name")
    todo = todo_for_this_process(output, samples, lambda s: s.key, lambda record: str(record["id"]), cfg.overwrite)
    # The describer loads the model when first needed; the answers use the same model. Descriptions are logged
    # in the output's folder, so that a resumed run answers from them instead of describing again.
    describer = ImageDescriber(
        lambda: create_generator(GeneratorSettings.of(cfg)),
        [cfg.description_prompt],
        Sampling.of(cfg),
        cfg.description_max_new_tokens,
        output.meta_dir,
        output.records_path.name,
        reuse=not cfg.overwrite,
        image_root=image_root(cfg),
    )
    if cfg.dar:
        describe_every_image(cfg, describer, todo, output)
    responder = DescribeAndRespond(describer, infusion_format, cfg.image_placement, describe_first=cfg.dar)
    job = AnswerJob(cfg, responder)
    pipeline = Pipeline(output, job, lambda: describer.generator, cfg.max_new_tokens, Sampling.of(cfg), cfg.batch_size)
    tally = pipeline.run(todo)
    describer.close()
    tally.update(describer.counts)
    summaries.dar_summary(cfg, output, tally, pipeline.seconds)
    return finish_run(output, tally["answered"], bool(todo))
