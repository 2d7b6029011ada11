"""Image corruptions for STIC's dispreferred responses (paper Algorithm 1), deterministic by parameters.

The paper draws, 50/50, low resolution (torchvision ``Resize(20)``: shorter side to 20 px, aspect
kept; the model's processor scales it back up) or ``ColorJitter(brightness=0.5, hue=0.3)``. Here the
random draw (``sample_corruption``) is separate from the transform (``apply_corruption``), so the
parameters can be derived from the image and recorded with the pair.
"""

import random

CORRUPTIONS = ("low_resolution", "color_jitter")


def sample_corruption(
    rng: random.Random,
    weights: dict[str, float],
    low_resolution_size: int = 20,
    brightness: float = 0.5,
    hue: float = 0.3,
) -> tuple[str, dict]:
    """Pick a corruption by weight and draw its parameters the way torchvision's transforms do."""
    names = [name for name in CORRUPTIONS if weights.get(name, 0) > 0]
    name = rng.choices(names, weights=[weights[n] for n in names])[0]
    if name == "low_resolution":
        return name, {"shorter_side": int(low_resolution_size)}
    order = ["brightness", "hue"]
    rng.shuffle(order)  # ColorJitter applies its adjustments in a random order
    return name, {
        "brightness": rng.uniform(max(0.0, 1 - brightness), 1 + brightness),
        "hue": rng.uniform(-hue, hue),
        "order": order,
    }


def apply_corruption(image, name: str, params: dict):
    """The corrupted copy of a PIL RGB image."""
    import torchvision.transforms.functional as F

    if name == "low_resolution":
        return F.resize(image, params["shorter_side"])
    if name == "color_jitter":
        for step in params["order"]:
            # A neutral factor is skipped: adjust_hue(0) would still round-trip through 8-bit HSV.
            if step == "brightness" and params["brightness"] != 1:
                image = F.adjust_brightness(image, params["brightness"])
            elif step == "hue" and params["hue"] != 0:
                image = F.adjust_hue(image, params["hue"])
        return image
    raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")


def corruption_record(params: dict) -> dict:
    """The parameters of a corruption as a pair's record keeps them: the same keys and types for every pair,
    neutral where a key does not apply (no corruption: all neutral), because a JSON reader takes the types of
    the first block of records for the whole file (an empty object there, or a missing key, fails to load the
    records after it)."""
    return {
        "shorter_side": int(params.get("shorter_side", 0)),  # low_resolution; 0: not resized
        "brightness": float(params.get("brightness", 1.0)),  # color_jitter; 1.0: unchanged
        "hue": float(params.get("hue", 0.0)),  # color_jitter; 0.0: unchanged
        "order": ",".join(params.get("order", [])),  # color_jitter: the order of the two adjustments
    }
