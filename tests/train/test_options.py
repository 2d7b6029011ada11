"""The stic_* options and stage stic_dpo through LLaMA-Factory's own argument parser."""

import pytest


def _parse(args):
    from llamafactory.hparams.parser import _parse_train_args

    return _parse_train_args(args)


def _base(**extra):
    args = dict(model_name_or_path="unused", template="llava", output_dir="unused", stage="stic_dpo")
    args.update(extra)
    return args


def test_yaml_form_defaults():
    finetuning_args = _parse(_base())[3]
    assert finetuning_args.stage == "stic_dpo"
    assert finetuning_args.stic_alpha == 1 / 1024
    assert finetuning_args.stic_nll_reduction == "sum"
    assert finetuning_args.use_ref_model is True
    assert finetuning_args.pref_beta == 0.1


def test_argv_form_accepts_stage_and_options():
    argv = [
        "--model_name_or_path",
        "m",
        "--output_dir",
        "o",
        "--stage",
        "stic_dpo",
        "--stic_alpha",
        "0.5",
        "--stic-nll-reduction",
        "mean",
    ]
    finetuning_args = _parse(argv)[3]
    assert (finetuning_args.stage, finetuning_args.stic_alpha, finetuning_args.stic_nll_reduction) == (
        "stic_dpo",
        0.5,
        "mean",
    )


def test_other_stages_unchanged():
    finetuning_args = _parse(_base(stage="dpo"))[3]
    assert finetuning_args.use_ref_model is True
    assert _parse(_base(stage="sft"))[3].use_ref_model is False


@pytest.mark.parametrize(
    "extra,message",
    [
        (dict(stic_alpha=-0.1), "`stic_alpha` must be a finite number >= 0"),
        (dict(stic_alpha=float("nan")), "`stic_alpha` must be a finite number >= 0"),
        (dict(stic_nll_reduction="max"), "stic_nll_reduction"),
        (dict(pref_loss="orpo"), "`pref_loss: orpo` is not supported by `stage: stic_dpo`"),
        (dict(pref_ftx=0.5), "`pref_ftx` is not used by `stage: stic_dpo`"),
        (dict(stic_alpah=0.1), r"Unknown STIC option `stic_alpah`. Did you mean `stic_alpha`\?"),
    ],
)
def test_bad_configuration_names_the_key(extra, message):
    from stic_plugin.train.options import SticConfigError

    with pytest.raises(SticConfigError, match=message):  # a SystemExit: the message alone, no traceback
        _parse(_base(**extra))


def test_unknown_stic_key_is_an_error_even_when_extra_args_allowed(monkeypatch):
    monkeypatch.setenv("ALLOW_EXTRA_ARGS", "1")
    from stic_plugin.train.options import SticConfigError

    with pytest.raises(SticConfigError, match="Unknown STIC option `stic_beta`"):
        _parse(_base(stic_beta=0.1))
    with pytest.raises(SticConfigError, match="Unknown STIC option `stic_reduction`"):
        _parse(["--model_name_or_path", "m", "--output_dir", "o", "--stic-reduction", "sum"])


def test_argv_stage_choices_include_stic_dpo_only_once():
    from llamafactory.hparams.parser import _TRAIN_ARGS
    from transformers import HfArgumentParser

    parser = HfArgumentParser(_TRAIN_ARGS)
    (action,) = [a for a in parser._actions if "--stage" in a.option_strings]
    assert list(action.choices) == ["pt", "sft", "rm", "ppo", "dpo", "kto", "stic_dpo"]
