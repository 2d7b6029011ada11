"""Dataset formatters registered into LLaMA-Factory: ``formatting: llava`` and ``formatting: stic``.

``llava``: LLaVA's instruction data (text-only samples too), read as LLaVA's training reads it: a turn's
image placeholders go first (``preprocess_multimodal``), so ``"What are the colors of the bus?\\n<image>"``
becomes ``"<image>\\nWhat are the colors of the bus?"``::

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

The two classes subclass LLaMA-Factory's ``DatasetConverter``, so ``converter_classes()`` builds them
on its first call; importing this module imports nothing of LLaMA-Factory. ``stic_plugin.patches``
registers what ``converter_classes()`` returns when LLaMA-Factory's converter module is imported.
"""

from collections.abc import Mapping
from typing import Any

LLAVA_IMAGE_TOKEN = "<image>"  # what LLaVA's data writes, whatever IMAGE_PLACEHOLDER is set to here
USER, ASSISTANT = "user", "assistant"  # LLaMA-Factory's Role values in aligned records


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


IMAGE_PLACEMENTS = ("front", "keep")


def images_first(content: str, placeholder: str) -> str:
    """A turn with its image placeholders moved to its start, in their order, as LLaVA's training
    preprocessing (``preprocess_multimodal``) does: placeholders removed, the text stripped, then
    ``"<image>\\n"`` in front (one placeholder per image)."""
    count = content.count(placeholder)
    if not count:
        return content
    return (placeholder * count + "\n" + content.replace(placeholder, "").strip()).strip()


def place_images(messages: list[dict], placeholder: str, placement: str = "front") -> list[dict]:
    """A copy of the conversation; with ``front``, each user turn's placeholders first (``keep``: as written)."""
    if placement not in IMAGE_PLACEMENTS:
        raise ValueError(f"image placement must be one of {', '.join(IMAGE_PLACEMENTS)}; got {placement!r}")
    out = [dict(message) for message in messages]
    if placement == "front":
        for message in out:
            if message["role"] == USER:
                message["content"] = images_first(message["content"], placeholder)
    return out


def _with_placeholders(prompt: list[dict[str, str]], images: list[str], example: dict[str, Any]) -> None:
    """One placeholder per image: add them in front of the first user turn when there are none."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    found = sum(message["content"].count(IMAGE_PLACEHOLDER) for message in prompt)
    if found == len(images):
        return
    if found == 0:
        prompt[0]["content"] = IMAGE_PLACEHOLDER * len(images) + "\n" + prompt[0]["content"]
        return
    raise MalformedRecordError(
        f"{_record_name(example)}: {len(images)} image(s) but {found} {IMAGE_PLACEHOLDER} placeholder(s) in the text."
    )


def _aligned(converter, prompt, response, system: str, images: list[str]) -> dict[str, Any]:
    return {
        "_prompt": prompt,
        "_response": response,
        "_system": system,
        "_tools": "",
        # The host's own path resolution against media_dir, as its formatters do (a private method: see patches.py).
        "_images": converter._find_medias(images) if images else None,
        "_videos": None,
        "_audios": None,
    }


def convert_llava(converter, example: dict[str, Any], image_placement: str = "front") -> dict[str, Any]:
    """LLaVA instruction data: ``conversations`` of human/gpt turns, optional ``image`` (a path or a list).

    ``image_placement``: ``front`` (LLaMA-Factory's training, always) puts each turn's placeholders first as
    LLaVA's training does; ``keep`` leaves them where the record has them (``stic-cli``'s key)."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    attr = converter.dataset_attr
    if attr.ranking:
        raise MalformedRecordError(
            f"dataset `{attr}`: `formatting: llava` is instruction (SFT) data; remove `ranking: true`."
        )
    if not isinstance(example, Mapping):  # datasets hands over rows as mappings, not dicts
        raise MalformedRecordError(f"a record must be a JSON object, got {type(example).__name__} {example!r:.200}")
    turns = example.get(attr.messages or "conversations")
    if not isinstance(turns, list) or not turns:
        raise MalformedRecordError(f"{_record_name(example)}: `conversations` must be a non-empty list of turns.")

    role_key, content_key = attr.role_tag or "from", attr.content_tag or "value"
    roles = {attr.user_tag or "human": USER, attr.assistant_tag or "gpt": ASSISTANT}
    system = ""
    if isinstance(turns[0], dict) and turns[0].get(role_key) == (attr.system_tag or "system"):
        system, turns = str(turns[0].get(content_key) or ""), turns[1:]

    messages = []
    for index, turn in enumerate(turns):
        expected = USER if index % 2 == 0 else ASSISTANT
        if not isinstance(turn, dict) or roles.get(turn.get(role_key)) != expected:
            raise MalformedRecordError(
                f"{_record_name(example)}: turn {index} must be a `{role_key}: "
                f"{'human' if expected == USER else 'gpt'}` turn, got {turn!r}."
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
    prompt, response = place_images(messages[:-1], IMAGE_PLACEHOLDER, image_placement), messages[-1:]
    _with_placeholders(prompt, images, example)
    return _aligned(converter, prompt, response, system, images)


def convert_stic(converter, example: dict[str, Any]) -> dict[str, Any]:
    """The STIC authors' released records: preference pairs (``chosen``/``rejected``) or descriptions."""
    attr = converter.dataset_attr
    images = _image_list(example.get(attr.images or "image"), example)
    chosen, rejected = example.get(attr.chosen or "chosen"), example.get(attr.rejected or "rejected")
    if chosen is not None or rejected is not None:
        if not attr.ranking:
            raise MalformedRecordError(
                f'dataset `{attr}` holds preference pairs (chosen/rejected): add `"ranking": true` to its entry.'
            )
        prompt_text, chosen_text = _pair_side(chosen, "chosen", example)
        rejected_prompt, rejected_text = _pair_side(rejected, "rejected", example)
        if rejected_prompt != prompt_text:
            raise MalformedRecordError(f"{_record_name(example)}: `chosen` and `rejected` have different prompts.")
        prompt = [{"role": USER, "content": prompt_text}]
        response = [{"role": ASSISTANT, "content": chosen_text}, {"role": ASSISTANT, "content": rejected_text}]
    elif example.get("description") is not None:
        if attr.ranking:
            raise MalformedRecordError(
                f"dataset `{attr}` holds descriptions (SFT data): remove `ranking: true` from its entry."
            )
        prompt_text, description = example.get("prompt"), example.get("description")
        if not isinstance(prompt_text, str) or not isinstance(description, str):
            raise MalformedRecordError(f"{_record_name(example)}: `prompt` and `description` must be text.")
        prompt = [{"role": USER, "content": prompt_text}]
        response = [{"role": ASSISTANT, "content": description}]
    else:
        raise MalformedRecordError(
            f"{_record_name(example)}: a `stic` record has `chosen` and `rejected`, or `prompt` and `description`."
        )
    _with_placeholders(prompt, images, example)
    return _aligned(converter, prompt, response, "", images)


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


_FORMATTERS = {  # formatting: (class name, conversion)
    "llava": ("LlavaDatasetConverter", convert_llava),
    "stic": ("SticDatasetConverter", convert_stic),
}
_classes: dict[str, type] | None = None


def converter_classes() -> dict[str, type]:
    """``{"llava": LlavaDatasetConverter, "stic": SticDatasetConverter}``, LLaMA-Factory ``DatasetConverter``
    subclasses, built on the first call."""
    global _classes
    # The import first, the cache second: when this import is the one that loads LLaMA-Factory's converter
    # module, the registration patch runs inside it and calls this function, which builds the classes; this
    # call then finds them built.
    from llamafactory.data.converter import DatasetConverter

    if _classes is None:
        built = {}
        for formatting, (name, convert) in _FORMATTERS.items():
            # Module and name such that pickle finds the class by name (dataset.map with worker processes).
            namespace = {"__call__": convert, "__doc__": convert.__doc__, "__module__": __name__, "__qualname__": name}
            built[formatting] = type(name, (DatasetConverter,), namespace)
        _classes = built
    return _classes


def __getattr__(name: str):
    for class_name, _ in _FORMATTERS.values():
        if name == class_name:  # the classes by name, built on first use (see converter_classes)
            return next(cls for cls in converter_classes().values() if cls.__name__ == name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
