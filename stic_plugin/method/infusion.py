"""Description infusion (paper Algorithm 2): the image description goes into the first user turn only; the
stage-2 record.

With the default format (``data_templates/infusion_format.txt``, the authors' released format)::

    "<image>\\nWhat is the man holding?"   or   "What is the man holding?\\n<image>"
    ->  "<image>\\nImage description:\\n{description}\\n\\nWhat is the man holding?"

The image comes first whatever the input's placement (``image_placement: front``), as LLaVA's training
preprocessing puts it, so the model sees the image before its description and the question. With
``keep`` a turn that does not start with its placeholder(s) gets the description in front, the
placeholders staying where they are. Several images get one description each, labelled in order.
"""

import re
from pathlib import Path

from ..data.formats import place_images
from .keys import path_from

MULTI_IMAGE_LABEL = "Image {index}: {description}"


def read_infusion_format(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read the infusion format {path}: {err}") from err
    text = text[:-1] if text.endswith("\n") else text
    for field in ("{images}", "{description}", "{instruction}"):
        if field not in text:  # without {images} the image placeholders would be lost, and training would fail
            raise ValueError(f"the infusion format {path} must contain {field}")
    try:
        text.format(images="", description="", instruction="")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"the infusion format {path} has an unknown field or a stray brace: {err}") from err
    return text


def infuse_turn(
    content: str, descriptions: list[str], infusion_format: str, placeholder: str = "<image>", placement: str = "front"
) -> str:
    """The first user turn with the image description(s) infused."""
    if not descriptions:
        return content
    if placement == "front":
        (moved,) = place_images([{"role": "user", "content": content}], placeholder, placement)
        content = moved["content"]
    # The placeholders that open the turn, with the white space between and after them ("<image>\n<image>\n").
    opening = re.match(rf"(?:{re.escape(placeholder)}\s*)+", content)
    leading = opening.group(0).count(placeholder) if opening else 0
    rest = content[opening.end() :] if opening else content
    if len(descriptions) == 1:
        description = descriptions[0]
    else:
        description = "\n\n".join(
            MULTI_IMAGE_LABEL.format(index=index, description=text) for index, text in enumerate(descriptions, 1)
        )
    text = infusion_format.format(images=placeholder * leading, description=description, instruction=rest)
    if not leading and text.startswith("\n"):  # the newline that followed an empty {images}
        text = text[1:]
    return text


def infuse_messages(
    messages: list[dict], descriptions: list[str], infusion_format: str, placeholder: str, placement: str = "front"
) -> list[dict]:
    """A copy of the conversation with the first user turn infused; with ``front`` every user turn's
    placeholders go first (as LLaVA trains), otherwise every other turn is untouched."""
    out = place_images(messages, placeholder, placement)
    placed = sum(message["content"].count(placeholder) for message in out)
    for message in out:
        if message["role"] == "user":
            content = message["content"]
            if descriptions and placed == 0:  # images without placeholders: LLaMA-Factory puts them first
                content = placeholder * len(descriptions) + content
            message["content"] = infuse_turn(content, descriptions, infusion_format, placeholder, placement)
            break
    return out


def infused_record(sample, messages: list[dict], dataset_dir, descriptions: list[dict]) -> dict:
    """The stage-2 record of a sample (``messages``: its conversation, infused), its image paths relative to the
    dataset's folder; ``descriptions``: each image's description and its prompt (none for a text-only sample)::

        {"messages": [
            {"role": "user", "content": "<image>\\nImage description:\\nA red bus ...\\n\\nWhat color is the bus?"},
            {"role": "assistant", "content": "Red."}],
         "images": ["../coco/train2017/000000033471.jpg"],
         "stic": {"sample": 1234, "descriptions": ["A red bus ..."],
                  "description_prompts": ["Explain what is depicted in the photograph."],
                  "descriptions_truncated": [false]}}
    """
    system = [{"role": "system", "content": sample.system}] if sample.system else []
    return {
        "messages": system + messages,
        "images": [path_from(dataset_dir, path) for path in sample.images],
        # One description (and its prompt) per image, as the images: empty lists for a text-only sample, as its
        # images; the same keys in every record, so that the JSON reader finds one schema.
        "stic": {
            "sample": sample.index,
            "descriptions": [d["description"] for d in descriptions],
            "description_prompts": [d["prompt"] for d in descriptions],
            "descriptions_truncated": [bool(d.get("truncated")) for d in descriptions],  # cut at max_new_tokens
        },
    }
