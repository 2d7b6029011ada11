"""Batched image-grounded generation with LLaMA-Factory's own model loading, template and multimodal plugin.

Prompts are encoded exactly as LLaMA-Factory encodes training samples for the same ``template``
(placeholder expansion by the template's mm plugin, chat format by the template), so what the model
sees when it writes its descriptions is what it sees when it trains on them.
"""

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


def user_turn(prompt: str) -> str:
    """A user turn about one image: exactly one image placeholder, before the prompt."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    return f"{IMAGE_PLACEHOLDER}\n{prompt}"


def process_device():
    """This process's device: under torchrun (or any launcher that sets LOCAL_RANK), its own GPU."""
    import os

    import torch

    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


@dataclass
class Generation:
    text: str
    tokens: int  # new tokens, stop token excluded
    truncated: bool  # reached max_new_tokens without a stop token


@dataclass
class Request:
    """A conversation up to the answer to generate: user/assistant turns, one placeholder per image."""

    messages: list[dict]
    images: list = field(default_factory=list)  # PIL images, in placeholder order
    system: str | None = None  # None: the template's default system prompt, as in training

    @classmethod
    def single(cls, prompt: str, image) -> "Request":
        return cls([{"role": "user", "content": prompt}], [image])


class VisionLanguageGenerator:
    """One model; ``generate`` takes any number of requests, left-padded into one batch.

    ``load`` builds it the way LLaMA-Factory loads a model for inference (adapters merged); the
    constructor takes components already built (the benchmark's random-weight models).
    """

    def __init__(self, model, tokenizer, processor, template):
        if processor is None:
            raise ValueError("the model has no image processor: STIC needs a vision-language model")
        if template.mm_plugin.image_token is None:
            raise ValueError("the template has no image support; use the template of your VLM")
        self.model, self.tokenizer, self.processor, self.template = model, tokenizer, processor, template
        self.model.eval()
        self.stop_token_ids = self.template.get_stop_token_ids(self.tokenizer)
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.stop_token_ids[0]
        image_token_id = self.tokenizer.convert_tokens_to_ids(self.template.mm_plugin.image_token)
        # The model must never write an image token: a description holding one breaks training on it.
        self.banned_token_ids = [[image_token_id]] if isinstance(image_token_id, int) and image_token_id >= 0 else None

    @classmethod
    def from_config(cls, cfg) -> "VisionLanguageGenerator":
        """Load with a ``stic-cli`` generator configuration's model keys."""
        return cls.load(
            cfg.model_name_or_path, cfg.template, cfg.adapter_name_or_path, cfg.image_max_pixels,
            cfg.trust_remote_code, cfg.infer_dtype,
        )  # fmt: skip

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        template: str,
        adapter_name_or_path: str | None = None,
        image_max_pixels: int | None = None,
        trust_remote_code: bool = False,
        infer_dtype: str = "auto",
    ) -> "VisionLanguageGenerator":
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import get_infer_args
        from llamafactory.model import load_model, load_tokenizer

        args = dict(
            model_name_or_path=model_name_or_path,
            template=template,
            trust_remote_code=trust_remote_code,
            infer_dtype=infer_dtype,
        )
        if adapter_name_or_path:
            args["adapter_name_or_path"] = adapter_name_or_path
        if image_max_pixels:
            args["image_max_pixels"] = int(image_max_pixels)
        model_args, data_args, finetuning_args, _ = get_infer_args(args)
        model_args.device_map = {"": process_device()}  # one whole copy per process, not spread over every GPU
        try:
            tokenizer_module = load_tokenizer(model_args)
        except OSError as err:
            raise OSError(f"cannot load the tokenizer and processor of {model_name_or_path}: {err}") from err
        tokenizer, processor = tokenizer_module["tokenizer"], tokenizer_module["processor"]
        if processor is None:
            raise ValueError(f"{model_name_or_path} has no image processor: STIC needs a vision-language model")
        chat_template = get_template_and_fix_tokenizer(tokenizer, data_args)
        if chat_template.mm_plugin.image_token is None:
            raise ValueError(f"template `{template}` has no image support; use the template of your VLM")
        # With adapters and is_trainable=False, LLaMA-Factory merges them into the weights.
        model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
        return cls(model, tokenizer, processor, chat_template)

    @property
    def device(self):
        return self.model.device

    def encode(self, request: Request) -> list[int]:
        """Token ids of the conversation with its images, up to the assistant's first token."""
        plugin = self.template.mm_plugin
        messages = plugin.process_messages(request.messages, request.images, [], [], self.processor)
        prompt_ids, _ = self.template.encode_oneturn(
            self.tokenizer, messages + [{"role": "assistant", "content": ""}], request.system, None
        )
        prompt_ids, _ = plugin.process_token_ids(
            prompt_ids, None, request.images, [], [], self.tokenizer, self.processor
        )
        return prompt_ids

    def generate(
        self,
        requests: list[Request],
        max_new_tokens: int,
        temperature: float = 0.2,
        top_p: float | None = None,
        seed: int | None = None,
        logits_processor=None,
    ) -> list[Generation]:
        """``logits_processor``: extra transformers LogitsProcessors (the benchmark forces lengths with one)."""
        import torch

        if not requests:
            return []
        ids = [self.encode(request) for request in requests]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(tokens) :] = torch.tensor(tokens)
            attention_mask[row, width - len(tokens) :] = 1
        mm_inputs = self.template.mm_plugin.get_mm_inputs(
            images=[image for request in requests for image in request.images],
            videos=[],
            audios=[],
            imglens=[len(request.images) for request in requests],
            vidlens=[0] * len(requests),
            audlens=[0] * len(requests),
            batch_ids=ids,
            processor=self.processor,
        )
        dtype = self.model.dtype
        mm_inputs = {
            key: (value.to(self.device, dtype=dtype) if value.is_floating_point() else value.to(self.device))
            if isinstance(value, torch.Tensor)
            else value
            for key, value in mm_inputs.items()
        }
        sampling = temperature is not None and temperature > 0
        kwargs = dict(do_sample=sampling, max_new_tokens=max_new_tokens, num_beams=1)
        if sampling:
            kwargs.update(temperature=temperature, top_p=top_p if top_p is not None else 1.0, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                eos_token_id=self.stop_token_ids,
                pad_token_id=self.pad_token_id,
                bad_words_ids=self.banned_token_ids,
                logits_processor=logits_processor,
                **kwargs,
                **mm_inputs,
            )
        return [self._decode(row[width:].tolist(), max_new_tokens) for row in output]

    def _decode(self, new_tokens: list[int], max_new_tokens: int) -> Generation:
        stops = set(self.stop_token_ids)
        end = next((i for i, token in enumerate(new_tokens) if token in stops), None)
        truncated = end is None and len(new_tokens) >= max_new_tokens
        kept = new_tokens[:end] if end is not None else [t for t in new_tokens if t != self.pad_token_id]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        from llamafactory.extras.constants import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER

        for placeholder in (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, AUDIO_PLACEHOLDER, self.template.mm_plugin.image_token):
            text = text.replace(placeholder, "")  # never store a placeholder inside a response
        return Generation(text=text.strip(), tokens=len(kept), truncated=truncated)
