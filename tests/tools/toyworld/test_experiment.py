"""The comparison's pieces: the rows and the authors' defects reproduced as data, the protocol's sweep and
order of steps (on a stand-in experiment that runs no command), and the statistics against a naive float64
computation."""

import json
import math
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stic_plugin.assets import default_prompt_file, read_prompts
from stic_plugin.commands.config import PrefConfig
from stic_plugin.method.corruption import apply_corruption
from stic_plugin.method.pairs import NEGATIVE_CORRUPTION, plan_pair
from stic_plugin.tools.toyworld import comparison, report, statistics
from stic_plugin.tools.toyworld.experiment import (
    CHOSEN_LEARNING_RATES,
    DEMO_ROWS,
    LEARNING_RATE_GRID,
    ROWS,
    STAGE1,
    STAGE2,
    STIC,
    TRAININGS,
    without_image,
)
from stic_plugin.tools.toyworld.steps import Steps


def test_the_rows_are_the_papers_ablations_and_the_authors_defects():
    assert {t.name for t in STAGE1} == {
        "stic",
        "alpha0",
        "bad_prompt_only",
        "corruption_only",
        "preferred_sft",
        "defect_no_image",
        "defect_no_corruption",
    }
    assert TRAININGS["alpha0"].train == {"stic_alpha": 0.0}
    assert TRAININGS["bad_prompt_only"].pref == {"corruption_prob": 0.0}
    assert TRAININGS["corruption_only"].pref == {"corruption_prob": 1.0}
    assert STIC.pref == {} and STIC.train == {}  # the method's own constants, as the recipes ship them
    assert [(t.name, t.data, t.after) for t in STAGE2] == [
        ("stage2", "infused", "stic"),
        ("stage2_control", "plain", "stic"),  # the same questions, without descriptions
        ("stage2_without_stage1", "infused", None),
    ]
    assert set(CHOSEN_LEARNING_RATES) == set(TRAININGS) and set(CHOSEN_LEARNING_RATES.values()) <= set(
        LEARNING_RATE_GRID
    )
    names = [row.name for row in ROWS]
    assert len(names) == len(set(names)) and set(DEMO_ROWS) <= set(names)
    assert {row.training for row in ROWS} - {None} == set(TRAININGS)  # every training is evaluated


def test_the_no_corruption_defect_records_a_corruption_that_leaves_the_image_as_it_is(tmp_path):
    """The authors' code stored a corrupted-image negative without corrupting the image: the same here, by keys
    of the shipped `pref` (a colour jitter of brightness 1 and hue 0)."""
    keys = TRAININGS["defect_no_corruption"].pref
    cfg = PrefConfig(model_name_or_path="m", template="llava", image_dir=str(tmp_path), corruption_prob=1.0, **keys)
    prompts = [read_prompts(default_prompt_file(n), n) for n in ("preferred", "captioning", "hallucination")]
    picture = Image.effect_noise((48, 48), 40).convert("RGB")
    for key in ("a.png", "b.png", "c.png"):
        plan = plan_pair(
            0,
            key,
            *prompts,
            cfg.corruption_prob,
            cfg.corruptions,
            cfg.low_resolution_size,
            cfg.jitter_brightness,
            cfg.jitter_hue,
        )
        assert plan.negative == NEGATIVE_CORRUPTION and plan.corruption == "color_jitter"
        assert list(apply_corruption(picture, plan.corruption, plan.corruption_params).getdata()) == list(
            picture.getdata()
        )


def test_the_no_image_defect_stores_the_prompt_without_its_image(tmp_path):
    pairs = tmp_path / "pref" / "pref"
    pairs.mkdir(parents=True)
    record = {
        "messages": [{"role": "user", "content": "<image>\nInterpret the scene shown in the image."}],
        "chosen": {"role": "assistant", "content": "there is one object. in the center, a small red circle."},
        "rejected": {"role": "assistant", "content": "there is one object. in the center, a small red square."},
        "images": ["../images/a.png"],
        "stic": {"image": "a.png"},
    }
    (pairs / "part-00000-of-00001.jsonl").write_text(json.dumps(record) + "\n")
    folder = without_image(pairs, tmp_path / "copy", "pref_without_image")
    info = json.loads((folder / "dataset_info.json").read_text())
    entry = info["pref_without_image"]
    assert entry["ranking"] is True and "images" not in entry["columns"]
    (copy,) = [json.loads(line) for line in (folder / entry["file_name"]).read_text().splitlines()]
    assert copy["messages"] == [{"role": "user", "content": "Interpret the scene shown in the image."}]
    assert copy["chosen"] == record["chosen"] and copy["rejected"] == record["rejected"] and "images" not in copy


# ---- the protocol, on a stand-in experiment ----
class StandIn:
    """The methods of ``Experiment`` the plan calls, recording each call instead of running a command; a
    training's validation F1 (and question accuracy) is given per (training, learning rate)."""

    def __init__(self, root: Path, seeds, scores: dict):
        self.seeds = tuple(seeds)
        self.root = root
        self.steps = Steps(root, {}, workers=2)
        self.scores = scores
        self.calls: list[tuple] = []
        self.lock = threading.Lock()
        self.learning_rates = dict(CHOSEN_LEARNING_RATES)

    def log(self, *call):
        with self.lock:
            self.calls.append(call)

    @staticmethod
    def pref_name(training):
        return f"pref_{training.name}" if training.pref else "pref_stic"

    def train_base(self, seed):
        self.log("base", seed)

    def pref(self, seed, training):
        self.log("pref", seed, self.pref_name(training))
        return (self.root, self.pref_name(training))

    def preferred_only(self, seed, pairs):
        self.log("pref2sft", seed, pairs[1])
        return (self.root, pairs[1] + "_preferred")

    def without_image(self, seed, pairs):
        self.log("without_image", seed, pairs[1])
        return (self.root, pairs[1] + "_without_image")

    def infuse(self, seed, describer):
        self.log("infuse", seed, describer.name if describer else None)
        return (self.root, "infused")

    def instructions(self, seed):
        return (self.root, "instructions")

    def train(self, seed, training, data, rate, after=None):
        self.log("train", seed, training.name, rate, data[1], after.name if after else None)
        return self.root / f"{training.name}-lr{rate:g}"

    def evaluate(self, seed, name, adapter, split, mode):
        self.log("evaluate", seed, name, adapter.name if adapter else None, split, mode)
        trained = adapter.name if adapter else "base"
        f1, questions = self.scores.get(trained, (0.5, 0.5))
        descriptions = {"f1": f1, "chair_i": 0.1}
        return {"descriptions": descriptions, "questions": questions, "questions_by_kind": {}, "per_picture": {}}


def test_the_sweep_chooses_each_rate_on_the_validation_split_and_the_test_split_uses_it(tmp_path):
    scores = {f"{t.name}-lr{rate:g}": (0.5, 0.5) for t in TRAININGS.values() for rate in LEARNING_RATE_GRID}
    scores["stic-lr0.001"] = (0.9, 0.1)  # stage 1 by F1 ...
    scores["stic-lr0.0001"] = (0.6, 0.95)  # ... not by question accuracy
    scores["stage2-lr0.0003"] = (0.1, 0.8)  # stage 2 by question accuracy
    scores["alpha0-lr0.0003"] = scores["alpha0-lr0.001"] = (0.7, 0.5)  # a tie goes to the smaller rate
    stand_in = StandIn(tmp_path, (0, 1), scores)
    outcome = comparison.run(stand_in, full=True, rows=tuple(row.name for row in ROWS))
    chosen = outcome["learning_rates"]
    assert (chosen["stic"], chosen["stage2"], chosen["alpha0"]) == (1e-3, 3e-4, 3e-4)
    calls = stand_in.calls
    validation = [c for c in calls if c[0] == "evaluate" and c[4] == "validation"]
    assert all(c[1] == 0 for c in validation)  # the sweep runs on the first seed
    assert {(c[3]) for c in validation} == {f"{t}-lr{r:g}" for t in TRAININGS for r in LEARNING_RATE_GRID}
    tests = [c for c in calls if c[0] == "evaluate" and c[4] == "test"]
    assert len(tests) == 2 * len(ROWS) and {c[1] for c in tests} == {0, 1}
    for call in tests:  # every trained row is tested at its chosen rate only
        if call[3] is not None:
            name, rate = call[3].rsplit("-lr", 1)
            assert float(rate) == chosen[name]
    # stage 2 continues the stage-1 adapter at its chosen rate, and infuses its descriptions
    assert ("infuse", 1, "stic-lr0.001") in calls and ("infuse", 1, None) in calls
    assert ("train", 1, "stage2", 3e-4, "infused", "stic-lr0.001") in calls
    assert ("train", 1, "stage2_control", chosen["stage2_control"], "instructions", "stic-lr0.001") in calls
    # each command ran once, however many rows needed it
    runs = [c for c in calls if c[0] != "evaluate"]
    assert len(runs) == len(set(runs))
    assert sorted(c for c in calls if c[0] == "pref" and c[1] == 0) == [
        ("pref", 0, "pref_bad_prompt_only"),
        ("pref", 0, "pref_corruption_only"),
        ("pref", 0, "pref_defect_no_corruption"),
        ("pref", 0, "pref_stic"),
    ]
    assert [row["chosen"] for row in outcome["sweep"] if row["training"] == "stic"] == [False, False, False, True]


def test_the_demo_runs_its_rows_on_the_first_seed_at_the_chosen_rates(tmp_path):
    stand_in = StandIn(tmp_path, (0,), {})
    outcome = comparison.run(stand_in, full=False, rows=DEMO_ROWS)
    assert set(outcome["rows"]) == set(DEMO_ROWS) and outcome["sweep"] == []
    assert not [c for c in stand_in.calls if c[0] == "evaluate" and c[4] != "test"]
    trained = sorted((c[2], c[3]) for c in stand_in.calls if c[0] == "train")
    assert trained == sorted([("stic", CHOSEN_LEARNING_RATES["stic"]), ("stage2", CHOSEN_LEARNING_RATES["stage2"])])


# ---- statistics ----
def naive_paired_difference(row, base, metric, replicates, seed):
    """The bootstrap of ``statistics.paired_difference``, one replicate, seed and picture at a time in float64,
    drawing the same random numbers."""
    pictures = sorted(base[0])
    generator = np.random.default_rng(seed)
    weights = generator.multinomial(len(pictures), [1 / len(pictures)] * len(pictures), size=replicates)
    drawn = generator.integers(0, len(row), size=(replicates, len(row)))

    def value(counts, w):
        sums = {}
        for picture, weight in zip(pictures, w):
            for key, count in counts[picture].items():
                sums[key] = sums.get(key, 0.0) + float(weight) * count
        if metric == "f1":
            return 2 * sums["right"] / (sums["mentions"] + sums["objects"])
        return sums["right:a"] / sums["asked:a"]

    ones = [1] * len(pictures)
    point = sum(value(r, ones) - value(b, ones) for r, b in zip(row, base)) / len(row)
    samples = []
    for b in range(replicates):
        differences = [value(row[s], weights[b]) - value(base[s], weights[b]) for s in drawn[b]]
        samples.append(sum(differences) / len(differences))
    samples.sort()

    def percentile(q):  # numpy's default (linear) percentile
        position = q / 100 * (len(samples) - 1)
        low = math.floor(position)
        return samples[low] + (samples[min(low + 1, len(samples) - 1)] - samples[low]) * (position - low)

    return point, percentile(2.5), percentile(97.5)


def random_counts(seeds, pictures, p, rng):
    return [
        {
            f"p{i}": {"right": sum(rng.random() < p for _ in range(3)), "mentions": 3, "objects": rng.randint(2, 4)}
            for i in range(pictures)
        }
        for _ in range(seeds)
    ]


def test_the_paired_bootstrap_matches_a_naive_float64_computation():
    rng = random.Random(0)
    row, base = random_counts(3, 40, 0.7, rng), random_counts(3, 40, 0.5, rng)
    fast = statistics.paired_difference(row, base, "f1", replicates=300, seed=5)
    point, low, high = naive_paired_difference(row, base, "f1", 300, 5)
    assert fast["difference"] == pytest.approx(point, abs=1e-12)
    assert (fast["low"], fast["high"]) == pytest.approx((low, high), abs=1e-12)
    assert low < point < high
    questions_row = [{f"p{i}": {"asked:a": 2, "right:a": rng.randint(0, 2)} for i in range(30)} for _ in range(2)]
    questions_base = [{f"p{i}": {"asked:a": 2, "right:a": rng.randint(0, 1)} for i in range(30)} for _ in range(2)]
    fast = statistics.paired_difference(questions_row, questions_base, "questions", replicates=200, seed=1)
    assert (fast["difference"], fast["low"], fast["high"]) == pytest.approx(
        naive_paired_difference(questions_row, questions_base, "questions", 200, 1), abs=1e-12
    )


def test_the_interval_covers_a_known_difference_and_excludes_zero_only_when_it_should():
    rng = random.Random(1)
    same = statistics.paired_difference(random_counts(5, 200, 0.6, rng), random_counts(5, 200, 0.6, rng), "f1")
    assert same["low"] < 0 < same["high"]
    better = statistics.paired_difference(random_counts(5, 200, 0.8, rng), random_counts(5, 200, 0.6, rng), "f1")
    assert 0 < better["low"] < better["difference"] < better["high"]


def metrics(f1, questions, dar=False, per_picture=None):
    descriptions = {"f1": f1, "precision": f1, "recall": f1, "chair_i": 1 - f1, "size_accuracy": None}
    out = {
        "descriptions": descriptions,
        "questions": questions,
        "questions_by_kind": {"count": questions},
        "per_picture": per_picture or {},
    }
    if dar:
        out["dar_descriptions"] = {**descriptions, "f1": f1 / 2}
    return out


def test_the_summary_is_the_mean_and_sample_deviation_over_seeds():
    results = {
        "stic": [metrics(0.2, 0.5), metrics(0.3, 0.6), metrics(0.1, 0.4)],
        "stage2_dar": [metrics(0.4, 0.7, dar=True), metrics(0.2, 0.9, dar=True)],
    }
    summary = comparison.summarize(results)
    stage1 = summary["stic"]
    assert stage1["seeds"] == 3 and stage1["mean"]["f1"] == pytest.approx(0.2)
    assert stage1["sd"]["f1"] == pytest.approx(math.sqrt((0.0**2 + 0.1**2 + 0.1**2) / 2))
    assert stage1["mean"]["questions_count"] == pytest.approx(0.5)
    assert "size_accuracy" not in stage1["mean"]  # never measured: not averaged as zero
    assert summary["stage2_dar"]["mean"]["f1"] == pytest.approx(0.15)  # a DaR row scores its first pass
    assert stage1["paired"] == {}  # no base row to pair with


def test_the_console_table_is_one_seeds_rows():
    rows = {"base": [metrics(0.5, 0.25), metrics(0.9, 0.9)], "stage2_dar": [metrics(0.8, 0.5, dar=True)]}
    assert report.console_table(rows) == (
        "                      F1     precision  recall  CHAIR-i  questions\n"
        "base                  0.500  0.500      0.500   0.500    0.250\n"
        "STIC stage 1+2 + DaR  0.400  0.800      0.800   0.200    0.500"
    )


def test_the_demo_s_learning_rates_are_those_the_committed_report_chose():
    import json
    from pathlib import Path

    report = Path(__file__).resolve().parents[3] / "docs" / "toy-world" / "report.json"
    assert CHOSEN_LEARNING_RATES == json.loads(report.read_text())["learning_rates"]
