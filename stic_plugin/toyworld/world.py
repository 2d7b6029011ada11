"""The toy world: scenes of coloured shapes on a 3x3 grid, drawn with Pillow, with their ground truth and texts.

Every scene is a pure function of (world seed, split, index); its picture is a pure function of the scene.
A scene holds one to four objects, each a shape (circle, square, triangle) of a colour (red, yellow,
green, blue) and a size (small, large) in its own grid cell, on a noisy background with a gradient.
Pictures are 48x48 pixels, the tiny model's input (one 16x16 patch per cell), so that the paper's
corruptions matter: ``Resize(20)`` blurs the shapes into blobs, and a hue shift of up to 0.3 turns
one colour into another.

The texts a scene comes with, the place first (the model then looks at the cell before naming what
is in it):

- ``detailed_description``: the careful description, a count then every object with its size, colour
  and shape: "there are two objects. at the top left, a small red circle. in the center, a large
  blue square.";
- ``short_caption``: a plain caption without sizes or count: "at the top left, a red circle; in the
  center, a blue square.";
- ``questions``: (kind, question, answer) about a colour, a shape, a count, a place, or whether an
  object is there.

What the base model gets wrong comes from its pretraining data (``CARELESS_SHARE``): the plain captions
were written carelessly, a small object captioned with its shape's usual colour (``USUAL_COLOUR``),
as an annotator who did not look closely would (``careless_caption_objects``); the careful
descriptions are right. So the base model learns the careless habit under the plain captioning
prompts and not under the step-by-step prompt: the premise STIC builds on (a careful prompt describes
better than a plain one, and its answers can be distilled into the plain prompt).
"""

import random
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "yellow": (230, 210, 40), "green": (40, 170, 60), "blue": (50, 80, 220)}
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
SIZES = ("small", "large")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}
USUAL_COLOUR = {"circle": "red", "square": "blue", "triangle": "green"}
IMAGE_SIZE = 48
MAX_OBJECTS = 4


# Share of the small objects that the pretraining data's plain captions give their shape's usual colour.
CARELESS_SHARE = 0.7


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str


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


def sample_scene(world_seed: int, split: str, index: int) -> Scene:
    """One to four objects in distinct cells; shape, colour and size drawn uniformly."""
    rng = scene_rng(world_seed, split, index)
    cells = rng.sample(POSITIONS, rng.randint(1, MAX_OBJECTS))
    objects = [SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(SIZES), cell) for cell in cells]
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
        radius = cell * (0.3 if obj.size == "small" else 0.44)
        x = (col + 0.5 + wobble.uniform(-0.08, 0.08)) * cell
        y = (row + 0.5 + wobble.uniform(-0.08, 0.08)) * cell
        fill = tuple(max(0, min(255, c + wobble.randint(-20, 20))) for c in COLOURS[obj.colour])
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


def object_phrase(obj: SceneObject, with_size: bool) -> str:
    size = f"{obj.size} " if with_size else ""
    return f"{place_phrase(obj.position)}, a {size}{obj.colour} {obj.shape}"


def count_phrase(count: int) -> str:
    return "there is one object." if count == 1 else f"there are {NUMBER_WORDS[count]} objects."


def detailed_description(objects) -> str:
    ordered = sorted(objects, key=lambda obj: POSITIONS.index(obj.position))
    return " ".join([count_phrase(len(ordered))] + [object_phrase(obj, True) + "." for obj in ordered])


def short_caption(objects) -> str:
    ordered = sorted(objects, key=lambda obj: POSITIONS.index(obj.position))
    return "; ".join(object_phrase(obj, False) for obj in ordered) + "."


def careless_caption_objects(scene: Scene, rng: random.Random, careless_share: float) -> list[SceneObject]:
    """The objects as a careless annotator saw them: small ones take their shape's usual colour."""
    seen = []
    for obj in scene.objects:
        if obj.size == "small" and rng.random() < careless_share:
            obj = SceneObject(obj.shape, USUAL_COLOUR[obj.shape], obj.size, obj.position)
        seen.append(obj)
    return seen


def imagined_objects(scene: Scene, rng: random.Random, count: int) -> list[SceneObject]:
    """Objects that are not in the scene, in free cells: what a hallucination-inducing prompt adds."""
    free = [position for position in POSITIONS if position not in {obj.position for obj in scene.objects}]
    present = {(obj.colour, obj.shape) for obj in scene.objects}
    absent = [(colour, shape) for colour in COLOURS for shape in SHAPES if (colour, shape) not in present]
    return [
        SceneObject(shape, colour, rng.choice(SIZES), cell)
        for cell, (colour, shape) in zip(rng.sample(free, min(count, len(free))), rng.sample(absent, count))
    ]


def questions(scene: Scene, rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    """``count`` (kind, question, answer) about the scene: a kind is drawn first, then a question of it."""
    shapes = [obj.shape for obj in scene.objects]
    names = [(obj.colour, obj.shape) for obj in scene.objects]
    by_kind: dict[str, list] = {"count": [], "colour": [], "where": [], "shape": []}
    for shape in SHAPES:
        by_kind["count"].append(("count", f"how many {PLURALS[shape]} are there?", NUMBER_WORDS[shapes.count(shape)]))
        if shapes.count(shape) == 1:
            colour = next(obj.colour for obj in scene.objects if obj.shape == shape)
            by_kind["colour"].append(("colour", f"what color is the {shape}?", colour))
    for obj in scene.in_reading_order():
        if names.count((obj.colour, obj.shape)) == 1:
            by_kind["where"].append(("where", f"where is the {obj.colour} {obj.shape}?", obj.position))
        by_kind["shape"].append(("shape", f"what shape is {place_phrase(obj.position)}?", obj.shape))
    present = rng.choice(scene.in_reading_order())
    absent = rng.choice([(c, s) for c in COLOURS for s in SHAPES if (c, s) not in names])
    by_kind["exists"] = [
        ("exists", f"is there a {present.colour} {present.shape}?", "yes"),
        ("exists", f"is there a {absent[0]} {absent[1]}?", "no"),
    ]
    kinds = sorted(kind for kind, items in by_kind.items() if items)
    return [rng.choice(by_kind[rng.choice(kinds)]) for _ in range(count)]
