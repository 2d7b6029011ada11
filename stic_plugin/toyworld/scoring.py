"""Scores of descriptions and answers against a scene's ground truth: pure functions of strings and scenes.

An object *mention* is a colour followed by a shape, after the place it is at when one is given
("at the top left, a small red circle": a red circle at the top left). Metrics, each from counts that
are summed over scenes before dividing:

- CHAIR-i: mentions of an object (colour + shape) that the scene does not hold / all mentions;
- CHAIR-s: descriptions with at least one such mention / descriptions;
- recall: ground-truth objects named (one mention each at most) / ground-truth objects;
- colour accuracy: of the ground-truth objects whose shape is named at their place, those named with
  their own colour;
- question accuracy: answers equal to the reference after normalisation (case, spaces, final period).
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
    mentions = parse_mentions(text)
    truth = Counter((o.colour, o.shape) for o in scene.objects)
    said = Counter((m.colour, m.shape) for m in mentions)
    hallucinated = sum(1 for m in mentions if (m.colour, m.shape) not in truth)
    counts = Counter(
        descriptions=1,
        mentions=len(mentions),
        hallucinated=hallucinated,
        descriptions_with_hallucination=int(hallucinated > 0),
        objects=len(scene.objects),
        recalled=sum(min(said[key], truth[key]) for key in truth),
    )
    for obj in scene.objects:
        named = [m.colour for m in mentions if m.shape == obj.shape and m.position == obj.position]
        if named:
            counts["colour_checked"] += 1
            counts["colour_right"] += int(named[0] == obj.colour)
    return counts


def description_metrics(counts: Counter) -> dict:
    """The rates from summed counts (None where nothing was counted)."""

    def rate(part: str, whole: str):
        return counts[part] / counts[whole] if counts[whole] else None

    return {
        "chair_i": rate("hallucinated", "mentions"),
        "chair_s": rate("descriptions_with_hallucination", "descriptions"),
        "recall": rate("recalled", "objects"),
        "colour_accuracy": rate("colour_right", "colour_checked"),
        "mentions_per_description": rate("mentions", "descriptions"),
    }


def normalize_answer(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!? ").strip()


def answer_is_right(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def score_predictions(records: list[dict], truth: dict[str, Scene], dar: bool = False) -> dict:
    """Metrics of one ``stic-cli dar`` run on an evaluation split (records keyed ``describe:<scene>`` and
    ``question:<kind>:<n>:<scene>``): descriptions, questions by kind, and, with describe-and-respond,
    the descriptions of its first pass (one per scene)."""
    described, first_pass = Counter(), Counter()
    answered: Counter = Counter()
    passes_seen = set()
    for record in records:
        kind, *rest = record["source_id"].split(":")
        scene = truth[rest[-1]]
        if kind == "describe":
            described += description_counts(record["prediction"], scene)
            continue
        question_kind = rest[0]
        answered[(question_kind, "asked")] += 1
        answered[(question_kind, "right")] += int(answer_is_right(record["prediction"], record["reference"] or ""))
        if dar and scene.key not in passes_seen:
            passes_seen.add(scene.key)
            first_pass += description_counts(record["description"], scene)
    kinds = sorted({kind for kind, _ in answered})
    asked = sum(answered[(kind, "asked")] for kind in kinds)
    result = {
        "descriptions": description_metrics(described) if described else None,
        "questions": sum(answered[(kind, "right")] for kind in kinds) / asked if asked else None,
        "questions_by_kind": {kind: answered[(kind, "right")] / answered[(kind, "asked")] for kind in kinds},
        "counts": {"descriptions": dict(described), "questions_asked": asked},
    }
    if dar:
        result["dar_descriptions"] = description_metrics(first_pass) if first_pass else None
    return result
