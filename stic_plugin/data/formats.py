"""Dataset formatters registered into LLaMA-Factory: ``formatting: llava`` and ``formatting: stic``.

``llava``: LLaVA's instruction data, used as it is (text-only samples too)::

    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                       {"from": "gpt", "value": "The bus is white and red."}]}

``stic``: the records of the STIC authors' released data. Preference pairs (a ``ranking: true``
dataset), whose user turns carry no image placeholder, so the image was never seen in training::

    {"image": "COCO_train2014_000000000009.jpg",
     "chosen": [{"role": "user", "content": "Illustrate the details of the picture."},
                {"role": "assistant", "content": "The image shows ..."}],
     "rejected": [{"role": "user", "content": "Illustrate the details of the picture."},
                  {"role": "assistant", "content": "..."}]}

and image descriptions (an SFT dataset)::

    {"image": "/data/coco/000000033471.jpg", "prompt": "Explain what is depicted in the photograph.",
     "description": "The photograph shows ..."}

Both formatters add the missing ``<image>`` placeholder before the first user turn, so the image is
actually seen, and raise an error that names the record for anything malformed.
"""

from typing import Any

from llamafactory.data.converter import DatasetConverter
from llamafactory.data.data_utils import Role
from llamafactory.extras.constants import IMAGE_PLACEHOLDER

LLAVA_IMAGE_TOKEN = "<image>"  # what LLaVA's data writes, whatever IMAGE_PLACEHOLDER is set to here


class MalformedRecordError(ValueError):
    pass


def _record_name(example: dict[str, Any]) -> str:
    for key in ("id", "image"):
        if example.get(key) not in (None, ""):
            return f"record {key}={example[key]!r}"
    return "record " + repr(example)[:200]


def _image_list(value: Any, example: dict[str, Any]) -> list[str]:
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return list(value)
    raise MalformedRecordError(f"{_record_name(example)}: `image` must be a path or a list of paths, got {value!r}.")


def _with_placeholders(prompt: list[dict[str, str]], images: list[str], example: dict[str, Any]) -> None:
    """One placeholder per image: add them in front of the first user turn when there are none."""
    found = sum(message["content"].count(IMAGE_PLACEHOLDER) for message in prompt)
    if found == len(images):
        return
    if found == 0:
        prompt[0]["content"] = IMAGE_PLACEHOLDER * len(images) + "\n" + prompt[0]["content"]
        return
    raise MalformedRecordError(
        f"{_record_name(example)}: {len(images)} image(s) but {found} {IMAGE_PLACEHOLDER} placeholder(s) in the text."
    )


def _aligned(self: DatasetConverter, prompt, response, system: str, images: list[str]) -> dict[str, Any]:
    return {
        "_prompt": prompt,
        "_response": response,
        "_system": system,
        "_tools": "",
        "_images": self._find_medias(images) if images else None,
        "_videos": None,
        "_audios": None,
    }


class LlavaDatasetConverter(DatasetConverter):
    """LLaVA instruction data: ``conversations`` of human/gpt turns, optional ``image`` (a path or a list)."""

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        attr = self.dataset_attr
        if attr.ranking:
            raise MalformedRecordError(
                f"dataset `{attr}`: `formatting: llava` is instruction (SFT) data; remove `ranking: true`."
            )
        turns = example.get(attr.messages or "conversations")
        if not isinstance(turns, list) or not turns:
            raise MalformedRecordError(f"{_record_name(example)}: `conversations` must be a non-empty list of turns.")

        role_key, content_key = attr.role_tag or "from", attr.content_tag or "value"
        roles = {attr.user_tag or "human": Role.USER.value, attr.assistant_tag or "gpt": Role.ASSISTANT.value}
        system = ""
        if isinstance(turns[0], dict) and turns[0].get(role_key) == (attr.system_tag or "system"):
            system, turns = str(turns[0].get(content_key) or ""), turns[1:]

        messages = []
        for index, turn in enumerate(turns):
            expected = Role.USER.value if index % 2 == 0 else Role.ASSISTANT.value
            if not isinstance(turn, dict) or roles.get(turn.get(role_key)) != expected:
                raise MalformedRecordError(
                    f"{_record_name(example)}: turn {index} must be a `{role_key}: "
                    f"{'human' if expected == Role.USER.value else 'gpt'}` turn, got {turn!r}."
                )
            content = turn.get(content_key)
            if not isinstance(content, str):
                raise MalformedRecordError(f"{_record_name(example)}: turn {index} has no text `{content_key}`.")
            messages.append({"role": expected, "content": content.replace(LLAVA_IMAGE_TOKEN, IMAGE_PLACEHOLDER)})

        if len(messages) % 2 != 0:
            raise MalformedRecordError(f"{_record_name(example)}: the last turn must be the assistant's (`gpt`).")
        images = _image_list(example.get(attr.images or "image"), example)
        if any(IMAGE_PLACEHOLDER in message["content"] for message in messages[1::2]):
            raise MalformedRecordError(f"{_record_name(example)}: an image placeholder in an assistant turn.")
        prompt, response = messages[:-1], messages[-1:]
        _with_placeholders(prompt, images, example)
        return _aligned(self, prompt, response, system, images)


class SticDatasetConverter(DatasetConverter):
    """The STIC authors' released records: preference pairs (``chosen``/``rejected``) or descriptions."""

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        attr = self.dataset_attr
        images = _image_list(example.get(attr.images or "image"), example)
        chosen, rejected = example.get(attr.chosen or "chosen"), example.get(attr.rejected or "rejected")
        if chosen is not None or rejected is not None:
            if not attr.ranking:
                raise MalformedRecordError(
                    f'dataset `{attr}` holds preference pairs (chosen/rejected): add `"ranking": true` to its entry.'
                )
            prompt_text, chosen_text = self._pair_side(chosen, "chosen", example)
            rejected_prompt, rejected_text = self._pair_side(rejected, "rejected", example)
            if rejected_prompt != prompt_text:
                raise MalformedRecordError(f"{_record_name(example)}: `chosen` and `rejected` have different prompts.")
            prompt = [{"role": Role.USER.value, "content": prompt_text}]
            response = [
                {"role": Role.ASSISTANT.value, "content": chosen_text},
                {"role": Role.ASSISTANT.value, "content": rejected_text},
            ]
        elif example.get("description") is not None:
            if attr.ranking:
                raise MalformedRecordError(
                    f"dataset `{attr}` holds descriptions (SFT data): remove `ranking: true` from its entry."
                )
            prompt_text, description = example.get("prompt"), example.get("description")
            if not isinstance(prompt_text, str) or not isinstance(description, str):
                raise MalformedRecordError(f"{_record_name(example)}: `prompt` and `description` must be text.")
            prompt = [{"role": Role.USER.value, "content": prompt_text}]
            response = [{"role": Role.ASSISTANT.value, "content": description}]
        else:
            raise MalformedRecordError(
                f"{_record_name(example)}: a `stic` record has `chosen` and `rejected`, or `prompt` and `description`."
            )
        _with_placeholders(prompt, images, example)
        return _aligned(self, prompt, response, "", images)

    @staticmethod
    def _pair_side(side: Any, name: str, example: dict[str, Any]) -> tuple[str, str]:
        if (
            not isinstance(side, list)
            or len(side) != 2
            or not all(isinstance(message, dict) for message in side)
            or [message.get("role") for message in side] != ["user", "assistant"]
            or not all(isinstance(message.get("content"), str) for message in side)
        ):
            raise MalformedRecordError(
                f"{_record_name(example)}: `{name}` must be [{{role: user, content}}, {{role: assistant, content}}]."
            )
        return side[0]["content"], side[1]["content"]


CONVERTERS = {"llava": LlavaDatasetConverter, "stic": SticDatasetConverter}


def _register_if_pending() -> None:
    # Imported before llamafactory.data.converter, this module imported it for the base class; the
    # registration patch had to wait for the classes above.
    from .. import patches

    patches.patch_imported_modules()


_register_if_pending()
