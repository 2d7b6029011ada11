"""The Train tab's STIC fields: their values in the training arguments, and the checks before a run."""

import json

from stic_plugin.webui.train_tab import check, training_arguments


def form(stage="STIC DPO", alpha=1 / 1024, reduction="sum", extra=None, fields=True):
    values = {"train.training_stage": stage, "train.extra_args": json.dumps(extra or {"optim": "adamw_torch"})}
    if fields:
        values.update({"train.stic_alpha": alpha, "train.stic_nll_reduction": reduction})
    return values.__getitem__


def test_the_fields_go_into_a_stic_dpo_run_and_extra_arguments_win():
    assert training_arguments({"stage": "stic_dpo"}, form(alpha=0.5)) == {
        "stage": "stic_dpo",
        "stic_alpha": 0.5,
        "stic_nll_reduction": "sum",
    }
    from_json = {"stage": "stic_dpo", "stic_alpha": 0.25}  # "Extra arguments" were applied first
    assert training_arguments(from_json, form(alpha=0.5))["stic_alpha"] == 0.25
    assert training_arguments({"stage": "dpo"}, form(stage="DPO")) == {"stage": "dpo"}
    assert training_arguments({"stage": "stic_dpo"}, form(fields=False)) == {"stage": "stic_dpo"}  # no fields


def test_a_value_out_of_range_or_a_mistyped_key_is_refused_with_the_options_message():
    assert check(form()) == ""
    assert check(form(alpha=-1.0)) == "`stic_alpha` must be a finite number >= 0, got -1.0."
    assert check(form(alpha=None)) == "`stic_alpha` must be a number, got None."
    assert check(form(reduction="median")).startswith("`stic_nll_reduction` must be one of sum, mean")
    typo = form(extra={"stic_alpah": 1})
    assert check(typo) == (
        "Unknown STIC option `stic_alpah`. Did you mean `stic_alpha`? Known options: stic_alpha, stic_nll_reduction."
    )
    assert check(form(alpha=-1.0, extra={"stic_alpha": 0.5})) == ""  # the value that runs is checked
    assert check(form(extra={"stic_alpha": -2})) == "`stic_alpha` must be a finite number >= 0, got -2."
    assert check(form(stage="DPO", alpha=-1.0)) == ""  # not used by that stage
    assert check({"train.extra_args": "{"}.__getitem__) == ""  # malformed JSON: LLaMA-Factory's own message
