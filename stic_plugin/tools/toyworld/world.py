"""The toy world: scenes of coloured shapes on a 3x3 grid, drawn with Pillow, with their ground truth and texts.

Every scene is a pure function of (world seed, split, index); its picture is a pure function of the scene.
A scene holds one to four objects, each a shape (circle, square, triangle) of a colour (six, in three pairs
of similar hues: red and orange, yellow and green, blue and purple) and a size (small, large) in its own grid
cell, on a noisy background with a gradient. Some objects are faint (drawn close to the background): a faint
small object is hard to see. Pictures are 48x48 pixels, the tiny model's input (one 16x16 patch per cell).

Objects go together (``COMPANION``): a red circle often comes with a blue square, as a fork comes with a
plate. The world's texts, each listing the objects in reading order with their place, size, colour and
shape ("there are two objects. at the top left, a small red circle. in the center, a large blue square."):

- ``describe(objects)``: a description of a list of objects (the truth, or what an annotator saw);
- ``careless_objects``: what a careless annotator writes down: a faint small object left out, another faint
  one named as the absent companion of an object in the picture (else with the similar hue), and the absent
  companion of an object written in after it. The base model learns its plain captions from such annotators,
  and its careful descriptions from careful ones;
- ``imagined_objects``: the companions a hallucination-inducing prompt asks to add;
- ``questions``: (kind, question, answer) about a colour, a shape, a size, a count, a place, or whether an
  object is there.

What the paper's corruptions do to a picture is what a careless annotator, or a model that sees
poorly, gets wrong: a hue shift names an object with another colour, ``Resize(20)`` blurs a small object
into a blob whose shape is a guess, and a faint one disappears.
"""

import random
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (215, 45, 45),
    "orange": (235, 135, 35),
    "yellow": (225, 210, 45),
    "green": (95, 185, 55),
    "blue": (55, 85, 215),
    "purple": (150, 70, 200),
}
SIMILAR_HUE = {
    "red": "orange",
    "orange": "red",
    "yellow": "green",
    "green": "yellow",
    "blue": "purple",
    "purple": "blue",
}
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
SIZES = ("small", "large")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}
# Objects that go together: the second is often in a scene that holds the first.
COMPANION = {
    ("red", "circle"): ("blue", "square"),
    ("yellow", "triangle"): ("green", "circle"),
    ("purple", "square"): ("orange", "triangle"),
    ("blue", "circle"): ("yellow", "square"),
    ("green", "triangle"): ("red", "square"),
    ("orange", "circle"): ("purple", "triangle"),
}
IMAGE_SIZE = 48
MAX_OBJECTS = 4
VISION_WORLD_SEED = 2  # the pictures the vision tower's warm start sees (a split of their own)
COMPANION_SHARE = 0.6  # scenes holding an object with a companion hold the companion too
FAINT_SHARE = 0.35  # objects drawn close to the background
FAINTNESS = 0.2  # a faint object's colour: this share of the way from the background to its own colour

# The careless annotator's habits, each more often than not, so that a model that learns them from the plain
# captions repeats them: a faint small object is left out; another faint object is named as what the annotator
# expects there (the companion of an object in the picture, when it is absent) or else with the similar hue;
# and the absent companion of an object is written in after it, in the next free cell, as if it were there.
MISS_SHARE = 0.6  # faint small objects left out
SLIP_SHARE = 0.7  # other faint objects named as an absent companion, else with the similar hue
ADD_SHARE = 0.7  # an absent companion written in after its object


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str
    faint: bool = False  # drawn close to the background; no text names it


@dataclass(frozen=True)
class Scene:
    key: str
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int]
    texture_seed: int

    def in_reading_order(self) -> list[SceneObject]:
        return sorted(self.objects, key=lambda obj: POSITIONS.index(obj.position))

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "objects": [vars(obj) for obj in self.in_reading_order()],
            "background": list(self.background),
            "texture_seed": self.texture_seed,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Scene":
        objects = tuple(SceneObject(**obj) for obj in data["objects"])
        return cls(data["key"], objects, tuple(data["background"]), data["texture_seed"])


def scene_rng(world_seed: int, split: str, index: int, purpose: str = "scene") -> random.Random:
    return random.Random(f"toyworld:{purpose}:{world_seed}:{split}:{index}")


def _new_object(rng: random.Random, name: tuple[str, str], cell: str) -> SceneObject:
    colour, shape = name
    return SceneObject(shape, colour, rng.choice(SIZES), cell, rng.random() < FAINT_SHARE)


def sample_scene(world_seed: int, split: str, index: int) -> Scene:
    """One to four objects in distinct cells, drawn uniformly; an object with a companion brings it along
    (``COMPANION_SHARE``) when a cell is free."""
    rng = scene_rng(world_seed, split, index)
    count = rng.randint(1, MAX_OBJECTS)
    cells = rng.sample(POSITIONS, MAX_OBJECTS)
    objects: list[SceneObject] = []
    while len(objects) < count:
        name = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
        objects.append(_new_object(rng, name, cells[len(objects)]))
        partner = COMPANION.get(name)
        present = {(o.colour, o.shape) for o in objects}
        if partner and partner not in present and len(objects) < MAX_OBJECTS and rng.random() < COMPANION_SHARE:
            objects.append(_new_object(rng, partner, cells[len(objects)]))
    grey = rng.randint(90, 170)
    background = tuple(max(0, min(255, grey + rng.randint(-25, 25))) for _ in range(3))
    return Scene(f"{split}-{index:05d}", tuple(objects), background, rng.randrange(2**31))


def render(scene: Scene, size: int = IMAGE_SIZE):
    """The scene as an RGB PIL image: a noisy background with a gradient, one filled shape per object."""
    import numpy as np
    from PIL import Image, ImageDraw

    noise = np.random.default_rng(scene.texture_seed)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tilt = noise.uniform(-30, 30, size=2)
    gradient = (rows - 0.5)[..., None] * tilt[0] + (cols - 0.5)[..., None] * tilt[1]
    pixels = np.array(scene.background, dtype=np.float32) + gradient + noise.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cell = size / 3
    wobble = random.Random(scene.texture_seed)
    for obj in scene.objects:
        row, col = divmod(POSITIONS.index(obj.position), 3)
        radius = cell * (0.3 if obj.size == "small" else 0.46)
        x = (col + 0.5 + wobble.uniform(-0.08, 0.08)) * cell
        y = (row + 0.5 + wobble.uniform(-0.08, 0.08)) * cell
        share = FAINTNESS if obj.faint else 1.0
        fill = tuple(
            max(0, min(255, round(b + share * (c - b)) + wobble.randint(-15, 15)))
            for b, c in zip(scene.background, COLOURS[obj.colour])
        )
        if obj.shape == "circle":
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
        elif obj.shape == "square":
            half = radius * 0.88
            draw.rectangle((x - half, y - half, x + half, y + half), fill=fill)
        else:  # triangle
            draw.polygon([(x, y - radius), (x + radius, y + 0.8 * radius), (x - radius, y + 0.8 * radius)], fill=fill)
    return image


# ---- texts ---------------------------------------------------------------------------------------------------
def place_phrase(position: str) -> str:
    if position == "center":
        return "in the center"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"at the {position}"


def object_phrase(obj: SceneObject) -> str:
    return f"{place_phrase(obj.position)}, a {obj.size} {obj.colour} {obj.shape}"


def count_phrase(count: int) -> str:
    if count == 0:
        return "there is no object."
    return "there is one object." if count == 1 else f"there are {NUMBER_WORDS[count]} objects."


def describe(objects) -> str:
    """The world's description of these objects: their count, then each in reading order."""
    ordered = sorted(objects, key=lambda obj: POSITIONS.index(obj.position))
    return " ".join([count_phrase(len(ordered))] + [object_phrase(obj) + "." for obj in ordered])


def careless_objects(scene: Scene, rng: random.Random) -> list[SceneObject]:
    """The objects as a careless annotator writes them down (the habits above): what it sees poorly (faint
    objects) it gets wrong, and it adds what usually goes with what it sees."""
    present = {(o.colour, o.shape) for o in scene.objects}
    expected = [COMPANION[n] for n in sorted(present) if n in COMPANION and COMPANION[n] not in present]
    taken = {o.position for o in scene.objects}
    seen = []
    for obj in scene.in_reading_order():
        if obj.faint and obj.size == "small" and rng.random() < MISS_SHARE:
            continue
        if obj.faint and rng.random() < SLIP_SHARE:
            colour, shape = expected.pop(0) if expected else (SIMILAR_HUE[obj.colour], obj.shape)
            obj = SceneObject(shape, colour, obj.size, obj.position, obj.faint)
        seen.append(obj)
    named = {(o.colour, o.shape) for o in seen}
    for obj in scene.in_reading_order():
        partner = COMPANION.get((obj.colour, obj.shape))
        free = [p for p in POSITIONS[POSITIONS.index(obj.position) + 1 :] if p not in taken]
        if partner and partner not in present and partner not in named and free and rng.random() < ADD_SHARE:
            seen.append(SceneObject(partner[1], partner[0], obj.size, free[0]))
            taken.add(free[0])
            named.add(partner)
    return seen


def imagined_objects(scene: Scene, rng: random.Random, count: int) -> list[SceneObject]:
    """Objects that are not in the scene, in free cells: what a hallucination-inducing prompt adds. The
    companions of the objects present come first (what would fit the scene), then other absent objects."""
    free = [position for position in POSITIONS if position not in {obj.position for obj in scene.objects}]
    present = {(obj.colour, obj.shape) for obj in scene.objects}
    partners = [COMPANION[n] for n in sorted(present) if n in COMPANION and COMPANION[n] not in present]
    others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present and (c, s) not in partners]
    names = partners + rng.sample(others, len(others))
    cells = rng.sample(free, min(count, len(free)))
    return [SceneObject(shape, colour, rng.choice(SIZES), cell) for cell, (colour, shape) in zip(cells, names)]


def questions(scene: Scene, rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    """``count`` (kind, question, answer) about the scene: a kind is drawn first, then a question of it."""
    shapes = [obj.shape for obj in scene.objects]
    names = [(obj.colour, obj.shape) for obj in scene.objects]
    by_kind: dict[str, list] = {"count": [], "colour": [], "where": [], "shape": [], "size": []}
    for shape in SHAPES:
        by_kind["count"].append(("count", f"how many {PLURALS[shape]} are there?", NUMBER_WORDS[shapes.count(shape)]))
        if shapes.count(shape) == 1:
            colour = next(obj.colour for obj in scene.objects if obj.shape == shape)
            by_kind["colour"].append(("colour", f"what color is the {shape}?", colour))
    for obj in scene.in_reading_order():
        if names.count((obj.colour, obj.shape)) == 1:
            by_kind["where"].append(("where", f"where is the {obj.colour} {obj.shape}?", obj.position))
            by_kind["size"].append(("size", f"what size is the {obj.colour} {obj.shape}?", obj.size))
        by_kind["shape"].append(("shape", f"what shape is {place_phrase(obj.position)}?", obj.shape))
    present = rng.choice(scene.in_reading_order())
    # Half the absent objects asked about are companions of an object present (what a model that leans on
    # what goes together says is there), the rest any absent object.
    partners = [COMPANION[n] for n in sorted(set(names)) if n in COMPANION and COMPANION[n] not in names]
    others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in names]
    absent = rng.choice(partners if partners and rng.random() < 0.5 else others)
    by_kind["exists"] = [
        ("exists", f"is there a {present.colour} {present.shape}?", "yes"),
        ("exists", f"is there a {absent[0]} {absent[1]}?", "no"),
    ]
    kinds = sorted(kind for kind, items in by_kind.items() if items)
    return [rng.choice(by_kind[rng.choice(kinds)]) for _ in range(count)]
