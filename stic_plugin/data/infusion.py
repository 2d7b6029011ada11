"""Description infusion (paper Algorithm 2): the image description goes into the first user turn only.

With the default format (``data_templates/infusion_format.txt``, the authors' released format)::

    "<image>\\nWhat is the man holding?"
    ->  "<image>\\nImage description:\\n{description}\\n\\nWhat is the man holding?"

A turn that does not start with its image placeholder(s) gets the description in front, the
placeholders staying where they are; several images get one description each, labelled in order.
"""

import re
from pathlib import Path

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


def infuse_turn(content: str, descriptions: list[str], infusion_format: str, placeholder: str = "<image>") -> str:
    """The first user turn with the image description(s) infused."""
    if not descriptions:
        return content
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
    messages: list[dict], descriptions: list[str], infusion_format: str, placeholder: str
) -> list[dict]:
    """A copy of the conversation with the first user turn infused; every other turn untouched."""
    out = [dict(message) for message in messages]
    placed = sum(message["content"].count(placeholder) for message in out)
    for message in out:
        if message["role"] == "user":
            content = message["content"]
            if descriptions and placed == 0:  # images without placeholders: LLaMA-Factory puts them first
                content = placeholder * len(descriptions) + content
            message["content"] = infuse_turn(content, descriptions, infusion_format, placeholder)
            break
    return out
