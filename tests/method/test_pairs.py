"""Every random choice for an image is a function of (seed, image key) alone."""

from stic_plugin.method.pairs import plan_pair


def test_plans_depend_on_seed_and_key_only():
    args = (
        ["P"],
        [f"c{i}" for i in range(8)],
        [f"h{i}" for i in range(8)],
        0.5,
        {"low_resolution": 1, "color_jitter": 1},
    )
    first = [plan_pair(42, f"img{i}.jpg", *args) for i in range(200)]
    again = [plan_pair(42, f"img{i}.jpg", *args) for i in reversed(range(200))][::-1]
    assert first == again
    assert first != [plan_pair(43, f"img{i}.jpg", *args) for i in range(200)]
    negatives = [plan.negative for plan in first]
    assert 70 < negatives.count("corruption") < 130
    for plan in first:
        assert plan.training_prompt.startswith("c")
        assert (plan.bad_prompt or "").startswith("h") == (plan.negative == "hallucination")
        assert (plan.corruption is not None) == (plan.negative == "corruption")
