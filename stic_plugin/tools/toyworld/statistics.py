"""Statistics of the comparison: each row's mean and standard deviation over seeds, and its paired difference to
the base model with a 95% bootstrap interval over test pictures and seeds. Pure functions of the counts that
``scoring.score_predictions`` keeps per picture.

The bootstrap draws, in each of its replicates, the seeds with replacement and the test pictures with
replacement (the same pictures for every seed and row: the differences stay paired by picture and seed), sums
each model's counts over the drawn pictures, takes the metric of the sums, and averages the row-minus-base
differences over the drawn seeds. The interval is the 2.5th and 97.5th percentile of the replicates.
"""

import statistics

PAIRED_METRICS = ("f1", "precision", "recall", "chair_i", "questions")


def metric_of_sums(name: str, sums: dict):
    """A metric from counts summed over pictures (keys as ``scoring`` names them, without their prefix), each
    a number or an array of numbers (one per bootstrap replicate); NaN where it is undefined."""
    import numpy as np

    sums = {key: np.asarray(value, dtype=np.float64) for key, value in sums.items()}
    zero = np.zeros(np.broadcast_shapes(*(value.shape for value in sums.values())) if sums else ())

    def total(prefix: str):
        return sum((value for key, value in sums.items() if key.startswith(prefix)), zero)

    def ratio(part, whole):
        return np.divide(part, whole, out=np.full_like(zero, np.nan), where=whole > 0)

    if name == "questions":
        return ratio(total("right:"), total("asked:"))
    right, mentions, objects = (sums.get(key, zero) for key in ("right", "mentions", "objects"))
    if name == "f1":
        return np.where((mentions > 0) & (objects > 0), ratio(2 * right, mentions + objects), np.nan)
    if name == "precision":
        return ratio(right, mentions)
    if name == "recall":
        return ratio(right, objects)
    if name == "chair_i":
        return ratio(sums.get("hallucinated", zero), mentions)
    raise ValueError(f"unknown metric {name!r}")


def picture_counts(per_picture: dict, name: str, dar: bool) -> dict[str, dict]:
    """Each picture's counts behind ``name``: the description counts (of describe-and-respond's first pass for a
    DaR row) without their prefix, or the question counts."""
    if name == "questions":
        prefixes = ("asked:", "right:")
        return {key: {k: v for k, v in counts.items() if k.startswith(prefixes)} for key, counts in per_picture.items()}
    prefix = "dar_description:" if dar else "description:"
    return {
        key: {k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)}
        for key, counts in per_picture.items()
    }


def mean_and_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(
    row: list[dict], base: list[dict], name: str, replicates: int = 2000, seed: int = 0
) -> dict | None:
    """The difference of ``name`` between a row and the base, both given per seed as {picture: counts} (the
    same seeds, in order, and the same pictures): its value on all pictures (the mean over seeds) and the 95%
    bootstrap interval. None where the metric is undefined for a seed."""
    import numpy as np

    pictures = sorted(base[0])
    keys = sorted({key for counts in row + base for picture in counts.values() for key in picture})

    def matrix(counts: dict) -> "np.ndarray":
        return np.array([[counts[p].get(k, 0) for k in keys] for p in pictures], dtype=np.float64)

    def metric(sums: "np.ndarray") -> "np.ndarray":  # (..., keys) -> (...,)
        return metric_of_sums(name, {key: sums[..., index] for index, key in enumerate(keys)})

    rows = [matrix(counts) for counts in row]
    bases = [matrix(counts) for counts in base]
    point = [metric(r.sum(0)) - metric(b.sum(0)) for r, b in zip(rows, bases)]
    if any(not np.isfinite(value) for value in point):
        return None
    generator = np.random.default_rng(seed)
    weights = generator.multinomial(len(pictures), [1 / len(pictures)] * len(pictures), size=replicates)
    per_seed = np.stack([metric(weights @ r) - metric(weights @ b) for r, b in zip(rows, bases)], axis=1)
    drawn = generator.integers(0, len(rows), size=(replicates, len(rows)))
    samples = np.nanmean(np.take_along_axis(per_seed, drawn, axis=1), axis=1)
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return {"difference": float(np.mean(point)), "low": float(low), "high": float(high)}
