"""The comparison's pieces: the authors' defects reproduced as data, and the summary over seeds."""

import json
import math

import pytest
from PIL import Image

from stic_plugin.assets import default_prompt_file, read_prompts
from stic_plugin.commands.config import PrefConfig
from stic_plugin.generation.corruption import apply_corruption
from stic_plugin.generation.planning import NEGATIVE_CORRUPTION, plan_pair
from stic_plugin.toyworld.experiment import ABLATIONS, STIC, summarize, without_image


def test_the_ablations_are_the_papers_and_the_authors_defects():
    names = {variant.name: variant for variant in ABLATIONS}
    assert set(names) == {
        "alpha0",
        "bad_prompt_only",
        "corruption_only",
        "preferred_sft",
        "defect_no_image",
        "defect_no_corruption",
    }
    assert names["alpha0"].train == {"stic_alpha": 0.0}
    assert names["bad_prompt_only"].pref == {"corruption_prob": 0.0}
    assert names["corruption_only"].pref == {"corruption_prob": 1.0}
    assert STIC.pref == {} and STIC.train == {}  # the method's own constants, as the recipes ship them


def test_the_no_corruption_defect_records_a_corruption_that_leaves_the_image_as_it_is(tmp_path):
    """The authors' code stored a corrupted-image negative without corrupting the image: the same here, by keys
    of the shipped `pref` (a colour jitter of brightness 1 and hue 0)."""
    keys = next(v for v in ABLATIONS if v.name == "defect_no_corruption").pref
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
    pairs = tmp_path / "pref"
    pairs.mkdir()
    record = {
        "messages": [{"role": "user", "content": "<image>\nInterpret the scene shown in the image."}],
        "chosen": {"role": "assistant", "content": "there is one object. in the center, a small red circle."},
        "rejected": {"role": "assistant", "content": "in the center, a red square."},
        "images": ["../images/a.png"],
        "stic": {"image": "a.png"},
    }
    (pairs / "part-00000-of-00001.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"pref": {"file_name": "pref"}}))
    name = without_image(tmp_path, "pref")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["pref"] == {"file_name": "pref"} and info[name]["ranking"] is True
    assert "images" not in info[name]["columns"]
    (copy,) = [json.loads(line) for line in (tmp_path / info[name]["file_name"]).read_text().splitlines()]
    assert copy["messages"] == [{"role": "user", "content": "Interpret the scene shown in the image."}]
    assert copy["chosen"] == record["chosen"] and copy["rejected"] == record["rejected"] and "images" not in copy


def metrics(chair_i, recall, questions, dar=False):
    descriptions = {"chair_i": chair_i, "chair_s": 0.5, "recall": recall, "colour_accuracy": None}
    out = {"descriptions": descriptions, "questions": questions, "questions_by_kind": {"count": questions}}
    if dar:
        out["dar_descriptions"] = {**descriptions, "chair_i": chair_i / 2}
    return out


def test_the_summary_is_the_mean_and_sample_deviation_over_seeds():
    rows = {
        "stic_stage1": {
            "label": "STIC stage 1",
            "per_seed": [metrics(0.2, 0.7, 0.5), metrics(0.3, 0.8, 0.6), metrics(0.1, 0.9, 0.4)],
        },
        "stic_dar": {"label": "DaR", "per_seed": [metrics(0.4, 0.5, 0.7, dar=True), metrics(0.2, 0.5, 0.9, dar=True)]},
    }
    summary = summarize(rows)
    stage1 = summary["stic_stage1"]
    assert stage1["seeds"] == 3 and stage1["mean"]["chair_i"] == pytest.approx(0.2)
    assert stage1["sd"]["chair_i"] == pytest.approx(math.sqrt(((0.0) ** 2 + 0.1**2 + 0.1**2) / 2))
    assert stage1["mean"]["questions_count"] == pytest.approx(0.5)
    assert "colour_accuracy" not in stage1["mean"]  # never measured: not averaged as zero
    # A describe-and-respond row scores the descriptions of its first pass.
    assert summary["stic_dar"]["mean"]["chair_i"] == pytest.approx(0.15)


def test_the_report_shows_question_accuracy_by_kind_and_the_steps_total_time(tmp_path):
    from stic_plugin.toyworld import report
    from stic_plugin.toyworld.data import SMOKE

    rows = {"base": {"label": "base", "per_seed": [metrics(0.3, 0.6, 0.5)]}}
    rows["stic_stage1"] = {"label": "STIC stage 1", "per_seed": [metrics(0.2, 0.7, 0.5), metrics(0.1, 0.9, 0.7)]}
    summaries = summarize(rows)
    kinds = report.kinds_table(summaries).splitlines()
    assert kinds[0] == "| row | count | colour | where | shape | exists |"
    # count: 0.5 and 0.7 over two seeds -> 0.600 ± 0.141; kinds never asked are shown as "-"
    assert kinds[3] == "| STIC stage 1 | 0.600 ± 0.141 | - | - | - | - |"
    assert kinds[2] == "| base | 0.500 | - | - | - | - |"

    result = {
        "command": "stic-cli demo",
        "wall_seconds": 60.0,
        "machine": "test machine",
        "seeds": [0, 1],
        "scale": vars(SMOKE),
        "step_seconds": {"base": 90.0, "seed0/stic": 30.0},
        "learning_rates": {"stage1": 3e-4},
        "protocol": None,
        "rows": summaries,
    }
    experiment = type("NoRuns", (), {"root": tmp_path})()  # no training folders: empty curves
    report.write(tmp_path, result, experiment)
    text = (tmp_path / "report.md").read_text()
    assert "Wall time: 1.0 min on test machine; the steps' own times add up to 2.0 min" in text
    assert f"{SMOKE.pretrain_images} pretraining pictures" in text and f"{SMOKE.base_steps} steps" in text
    assert "\n".join(kinds) in text
