"""lmms-eval's model ``stic``: a LLaVA-1.5, LLaVA-1.6 or Qwen2-VL/2.5-VL checkpoint loaded with LLaMA-Factory's
loader and template (plus LoRA adapters), so that every prompt is encoded exactly as in training; it answers
directly or by describe-and-respond (``dar=true``, the code of ``stic-cli dar``), through the project's
generation engines.

This package registers it with lmms-eval (entry point group ``lmms_eval.models``), so lmms-eval's own command
line finds it too::

    lmms-eval --model stic --tasks scienceqa_img --log_samples --output_path eval_output \\
        --model_args model_name_or_path=llava-hf/llava-v1.6-mistral-7b-hf,template=llava_next_mistral,dar=true

lmms-eval splits ``--model_args`` at commas: quote a list of adapters, ``adapter_name_or_path="a,b"``.
It answers ``generate_until`` requests, the only kind the paper's seven tasks make; tasks whose
``output_type`` is ``loglikelihood`` or ``multiple_choice`` need log-likelihoods, which it does not compute.
"""

import json
from pathlib import Path

from lmms_eval.api.model import lmms

from ..assets import default_infusion_format_file
from ..constants import DAR_DESCRIPTION_PROMPT
from ..data.output import JsonlAppender
from ..generation.base import GeneratorSettings, create_generator
from ..method.dar import DescribeAndRespond, Question
from ..method.infusion import read_infusion_format
from ..method.keys import picture_key
from ..pipeline.describer import ImageDescriber, Sampling
from . import MODEL_ID
from .benchmarks import PAPER_TASKS

DEFAULT_MAX_NEW_TOKENS = 1024  # a task that sets no limit, as lmms-eval's own models
CHUNK = 256  # questions whose images are held in memory together; the engine keeps batch_size of them decoding


def _text(value):
    """A value from lmms-eval's --model_args: quotes around it (a comma-separated list) removed."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def with_placeholders(context: str, images: int) -> str:
    """The question with one image placeholder per image, first (as LLaMA-Factory and LLaVA put them)."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    if images == 0 or context.count(IMAGE_PLACEHOLDER) == images:
        return context
    return IMAGE_PLACEHOLDER * images + "\n" + context.replace(IMAGE_PLACEHOLDER, "")


def sampling(gen_kwargs: dict) -> tuple[int, float, float | None, list[str]]:
    """(max_new_tokens, temperature, top_p, stop strings) from a task's generation_kwargs."""
    max_new_tokens = int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") is False:
        temperature = 0.0
    top_p = gen_kwargs.get("top_p")
    top_p = float(top_p) if top_p is not None and temperature > 0 and float(top_p) < 1 else None
    until = gen_kwargs.get("until") or []
    return max_new_tokens, temperature, top_p, [until] if isinstance(until, str) else list(until)


def cut_at_stops(text: str, stops: list[str]) -> str:
    for stop in stops:
        if stop:
            text = text.split(stop)[0]
    return text


class SticModel(lmms):
    """The model behind ``lmms-eval --model stic`` and ``stic-cli eval`` (keys as in ``stic-cli eval --help``)."""

    is_simple = True

    def __init__(
        self,
        model_name_or_path: str,
        template: str,
        adapter_name_or_path: str | None = None,
        dar: bool = False,
        description_prompt: str = DAR_DESCRIPTION_PROMPT,
        description_max_new_tokens: int = 1024,
        image_placement: str = "front",
        infusion_format_file: str | None = None,
        batch_size: int = 8,
        engine: str = "continuous",
        compile_decoding="auto",
        infer_dtype: str = "auto",
        image_max_pixels: int = 768 * 768,
        trust_remote_code: bool = False,
        seed: int = 42,
        descriptions_file: str | None = None,
        max_batch_size=None,  # lmms-eval passes these two; batch_size is what counts here
        device=None,  # the device is chosen as stic-cli does: this process's GPU (LOCAL_RANK), else the CPU
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a whole number >= 1; got {batch_size!r}")
        if not isinstance(dar, bool):
            raise ValueError(f"`dar` must be true or false; got {dar!r}")
        self.settings = GeneratorSettings(
            model_name_or_path=str(_text(model_name_or_path)),
            template=str(template),
            adapter_name_or_path=_text(adapter_name_or_path) or None,
            image_max_pixels=int(image_max_pixels),
            trust_remote_code=bool(trust_remote_code),
            infer_dtype=str(infer_dtype),
            engine=str(engine),
            compile_decoding=compile_decoding,
            seed=int(seed),
        )
        # The description pass is greedy, as the authors' evaluation and the dar recipes.
        self.sampling = Sampling(temperature=0.0, top_p=None, seed=int(seed), slots=batch_size)
        self.dar = dar
        infusion_format = read_infusion_format(_text(infusion_format_file) or default_infusion_format_file())
        describer = ImageDescriber(
            lambda: create_generator(self.settings),
            [str(_text(description_prompt))],
            self.sampling,
            int(description_max_new_tokens),
        )
        self.responder = DescribeAndRespond(describer, infusion_format, str(image_placement), describe_first=dar)
        self.descriptions_file = _text(descriptions_file) or None

    @property
    def generator(self):
        """The model, loaded when first needed (``stic-cli eval`` loads it before the first task)."""
        return self.responder.generator

    @property
    def device(self):
        return self.generator.device

    # ---- what lmms-eval asks ----
    def generate_until(self, requests) -> list[str]:
        from tqdm import tqdm

        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}  # requests with the same generation settings decode together
        for index, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(index)
        # With dar and descriptions_file: what the first pass wrote about each question's images.
        log = JsonlAppender(Path(self.descriptions_file)) if self.dar and self.descriptions_file else None
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc=f"{MODEL_ID} answers")
        try:
            for indices in groups.values():
                max_new_tokens, temperature, top_p, stops = sampling(requests[indices[0]].args[1])
                for start in range(0, len(indices), CHUNK):
                    chunk = indices[start : start + CHUNK]
                    questions, images = self._questions([requests[index] for index in chunk])
                    generated = self.responder.answer(
                        questions,
                        images,
                        max_new_tokens,
                        temperature,
                        top_p,
                        self.sampling.seed,
                        self.sampling.slots,
                    )
                    for index, question, generation in zip(chunk, questions, generated):
                        answers[index] = cut_at_stops(generation.text, stops)
                        context, gen_kwargs = requests[index].args[:2]
                        self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answers[index])
                        if log is not None:
                            log.write(self._description_record(requests[index], question))
                    progress.update(len(chunk))
        finally:
            progress.close()
            if log is not None:
                log.close()
        return answers

    def _questions(self, requests) -> tuple[list[Question], dict]:
        from PIL import Image

        questions, images = [], {}
        for request in requests:
            context, _, doc_to_visual, doc_id, task, split = request.args
            visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
            keys = []
            for visual in visuals:
                if not isinstance(visual, Image.Image):
                    raise ValueError(
                        f"{task}: the {MODEL_ID} model answers questions about images; got {type(visual).__name__}"
                    )
                keys.append(picture_key(visual))
                images[keys[-1]] = visual
            messages = [{"role": "user", "content": with_placeholders(context, len(keys))}]
            questions.append(Question(messages, keys, key=f"answer:{task}:{split}:{doc_id}"))
        return questions, images

    def _description_record(self, request, question: Question) -> dict:
        described = [self.responder.describer.descriptions[key] for key in question.images]
        return {
            "task": request.args[4],
            "split": request.args[5],
            "doc_id": request.args[3],
            "descriptions": [entry["description"] for entry in described],
            "truncated": [entry["truncated"] for entry in described],
        }

    def clean(self):
        """lmms-eval calls this after each evaluation to free the model; stic-cli eval keeps it for the next task
        (one load for every task), and the memory goes when the process ends."""

    def loglikelihood(self, requests):
        raise NotImplementedError(
            f"the {MODEL_ID} model generates answers (generate_until) and computes no log-likelihoods: tasks whose "
            f"output_type is loglikelihood or multiple_choice need them; the paper's tasks ({', '.join(PAPER_TASKS)}) "
            "all generate"
        )

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"the {MODEL_ID} model answers single-round questions (generate_until)")
