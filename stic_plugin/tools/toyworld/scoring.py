"""Scores of descriptions and answers against a scene's ground truth: pure functions of strings and scenes.

An object *mention* is a size (optional), a colour and a shape, after the place it is at when one is given
("at the top left, a small red circle": a small red circle at the top left). A mention is *right* when the
scene holds that object: the same shape and colour at that place, and the same size where the mention
names one (one mention per object: a second mention of it is not right). Metrics, each from counts summed
over pictures before dividing:

- precision: right mentions / mentions; recall: objects named right / objects; F1 of the two (object
  identity: is the object right?);
- CHAIR-i: mentions of an object (colour and shape) that the scene does not hold anywhere / mentions;
  CHAIR-s: descriptions with at least one such mention / descriptions (the hallucination measures of the
  captioning literature: they do not count a wrong place or size, nor an object left out);
- mentions per description;
- size accuracy: of the mentions that name a size and whose colour, shape and place match an object, those
  with its size;
- question accuracy: answers equal to the reference after normalisation (case, spaces, final period),
  overall and by kind of question.
"""

import re
from collections import Counter
from dataclasses import dataclass

from .world import COLOURS, SHAPES, Scene

_PLACE = r"in the (center)|on the (left|right)|at the (top left|top right|bottom left|bottom right|top|bottom)"
_MENTION = re.compile(
    r"(?:(?:" + _PLACE + r"),\s+)?"
    r"\ban?\s+(?:(small|large)\s+)?(" + "|".join(COLOURS) + r")\s+(" + "|".join(SHAPES) + r")s?\b"
)
DESCRIPTION_COUNTS = (
    "descriptions",
    "mentions",
    "right",
    "objects",
    "hallucinated",
    "descriptions_with_hallucination",
    "sized",
    "size_right",
)


@dataclass(frozen=True)
class Mention:
    colour: str
    shape: str
    position: str | None = None
    size: str | None = None


def parse_mentions(text: str) -> list[Mention]:
    """Every object the text names, in order."""
    mentions = []
    for match in _MENTION.finditer(text.lower()):
        *places, size, colour, shape = match.groups()
        position = next((place for place in places if place), None)
        mentions.append(Mention(colour, shape, position, size))
    return mentions


def description_counts(text: str, scene: Scene) -> Counter:
    """The counts behind every description metric, for one description of one scene."""
    at = {obj.position: obj for obj in scene.objects}  # one object per cell
    names = {(obj.colour, obj.shape) for obj in scene.objects}
    counts = Counter({key: 0 for key in DESCRIPTION_COUNTS})
    counts.update(descriptions=1, objects=len(scene.objects))
    named_right = set()
    for mention in parse_mentions(text):
        counts["mentions"] += 1
        if (mention.colour, mention.shape) not in names:
            counts["hallucinated"] += 1
        obj = at.get(mention.position)
        if obj is None or (obj.colour, obj.shape) != (mention.colour, mention.shape):
            continue
        if mention.size is not None:
            counts["sized"] += 1
            counts["size_right"] += mention.size == obj.size
        if (mention.size in (None, obj.size)) and obj.position not in named_right:
            named_right.add(obj.position)
            counts["right"] += 1
    counts["descriptions_with_hallucination"] = int(counts["hallucinated"] > 0)
    return counts


def _rate(counts, part: str, whole: str):
    return counts[part] / counts[whole] if counts[whole] else None


def description_metrics(counts) -> dict:
    """The rates from summed counts (None where nothing was counted)."""
    precision, recall = _rate(counts, "right", "mentions"), _rate(counts, "right", "objects")
    f1 = None
    if counts["mentions"] and counts["objects"]:
        f1 = 2 * counts["right"] / (counts["mentions"] + counts["objects"])  # = 2PR / (P + R)
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "chair_i": _rate(counts, "hallucinated", "mentions"),
        "chair_s": _rate(counts, "descriptions_with_hallucination", "descriptions"),
        "mentions_per_description": _rate(counts, "mentions", "descriptions"),
        "size_accuracy": _rate(counts, "size_right", "sized"),
    }


def normalize_answer(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!? ").strip()


def answer_is_right(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def question_metrics(counts) -> dict:
    """Accuracy overall and by kind, from counts keyed ``asked:<kind>`` and ``right:<kind>``."""
    kinds = sorted(key.split(":", 1)[1] for key in counts if key.startswith("asked:"))
    asked = sum(counts[f"asked:{kind}"] for kind in kinds)
    return {
        "questions": sum(counts[f"right:{kind}"] for kind in kinds) / asked if asked else None,
        "questions_by_kind": {kind: counts[f"right:{kind}"] / counts[f"asked:{kind}"] for kind in kinds},
    }


def score_predictions(records: list[dict], truth: dict[str, Scene], dar: bool = False) -> dict:
    """Metrics of one ``stic-cli dar`` run on an evaluation split (records keyed ``describe:<scene>`` and
    ``question:<kind>:<n>:<scene>``): descriptions, questions, and with describe-and-respond the
    descriptions of its first pass (one per scene). ``per_picture`` holds each picture's counts (the
    metrics are the rates of their sums), for intervals over pictures."""
    per_picture: dict[str, Counter] = {}
    described, first_pass, answered = Counter(), Counter(), Counter()
    passes_seen = set()
    for record in records:
        kind, *rest = record["source_id"].split(":")
        scene = truth[rest[-1]]
        picture = per_picture.setdefault(scene.key, Counter())
        if kind == "describe":
            counts = description_counts(record["prediction"], scene)
            described += counts
            picture.update({f"description:{key}": value for key, value in counts.items()})
            continue
        right = int(answer_is_right(record["prediction"], record["reference"] or ""))
        for counter in (answered, picture):
            counter[f"asked:{rest[0]}"] += 1
            counter[f"right:{rest[0]}"] += right
        if dar and scene.key not in passes_seen:
            passes_seen.add(scene.key)
            counts = description_counts(record["description"], scene)
            first_pass += counts
            picture.update({f"dar_description:{key}": value for key, value in counts.items()})
    result = {
        "descriptions": description_metrics(described) if described else None,
        **question_metrics(answered),
        "counts": {"descriptions": dict(described), "questions": dict(answered)},
        "per_picture": {key: dict(sorted(counts.items())) for key, counts in sorted(per_picture.items())},
    }
    if dar:
        result["dar_descriptions"] = description_metrics(first_pass) if first_pass else None
    return result
