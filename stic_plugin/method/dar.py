"""Describe-and-respond (the paper's DaR), shared by ``stic-cli dar`` and the lmms-eval model: pass 1 describes
each image (the image is sent), pass 2 answers with the description(s) infused into the first user turn exactly
as in stage 2 (the image first, then the description, then the question)."""

from dataclasses import dataclass

from ..generation.base import Request
from .infusion import infuse_messages


@dataclass
class Question:
    """A conversation to answer, up to the answer; its images named by keys into the batch's images."""

    messages: list[dict]
    images: list[str]  # keys (paths, or any name), in placeholder order
    system: str | None = None  # None: the template's default system prompt
    key: str | None = None  # names the answer's sampling stream


class DescribeAndRespond:
    """The requests of both passes. ``describer``: what describes each image once (``ImageDescriber``); with
    ``describe_first=False`` it answers directly, the image first too."""

    def __init__(self, describer, infusion_format: str, placement: str = "front", describe_first: bool = True):
        self.describer, self.infusion_format, self.placement = describer, infusion_format, placement
        self.describe_first = describe_first

    @property
    def generator(self):
        return self.describer.generator

    def descriptions_of(self, question: Question) -> list[str]:
        return (
            [self.describer.descriptions[key]["description"] for key in question.images] if self.describe_first else []
        )

    def request(self, question: Question, images: dict) -> Request:
        """The answer pass's request (the images described already when ``describe_first``)."""
        from llamafactory.extras.constants import IMAGE_PLACEHOLDER

        messages = infuse_messages(
            question.messages, self.descriptions_of(question), self.infusion_format, IMAGE_PLACEHOLDER, self.placement
        )
        return Request(messages, [images[key] for key in question.images], question.system, key=question.key)

    def answer(
        self, questions: list[Question], images: dict, max_new_tokens: int, temperature: float, top_p, seed, slots
    ) -> list:
        """One Generation per question, in order. ``images``: key -> image (a BadImage is never described)."""
        if self.describe_first:
            self.describer.describe(images)
        requests = [self.request(question, images) for question in questions]
        return self.generator.generate(requests, max_new_tokens, temperature, top_p, seed=seed, slots=slots)
