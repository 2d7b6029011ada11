"""The options this plugin adds to LLaMA-Factory, all prefixed ``stic_``.

``SticArguments`` holds them with their help texts and checks. ``finetuning_arguments_class()``
builds LLaMA-Factory's ``FinetuningArguments`` extended with them and with ``stage: stic_dpo``, and
``check_stic_keys`` refuses a mistyped ``stic_*`` key. The patches in ``stic_plugin.patches`` put both
into LLaMA-Factory's argument parser, so the options work in YAML recipes, on the command line and in
the web UI's extra-arguments box.
"""

import math
import typing
from dataclasses import dataclass, field, fields
from typing import Literal

from ..constants import STAGE

NLL_REDUCTIONS = ("sum", "mean")


class SticConfigError(SystemExit):
    """A mistake in a training configuration: ``llamafactory-cli train`` ends with this one message and exit
    status 1, not with a traceback (what SystemExit does), in every process of a torchrun job alike."""

    def __init__(self, message: str):
        super().__init__(f"stic_plugin: error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class SticArguments:
    r"""STIC stage-1 loss (paper eq. 4.1): DPO + ``stic_alpha`` * NLL of the preferred response."""

    stic_alpha: float = field(
        default=1 / 1024,
        metadata={
            "help": (
                "Weight alpha of the preferred response's negative log-likelihood added to the DPO loss "
                "(STIC eq. 4.1). The paper uses 1/1024 with the summed NLL. 0 gives plain DPO."
            )
        },
    )
    stic_nll_reduction: Literal["sum", "mean"] = field(
        default="sum",
        metadata={
            "help": (
                "How the preferred response's token NLLs are reduced per sequence: `sum` (as the paper and the "
                "authors' code) or `mean` (per-sequence mean, the normalisation of LLaMA-Factory's `pref_ftx`)."
            )
        },
    )

    def check_stic_arguments(self) -> None:
        if isinstance(self.stic_alpha, bool) or not isinstance(self.stic_alpha, (int, float)):
            raise SticConfigError(f"`stic_alpha` must be a number, got {self.stic_alpha!r}.")
        if not math.isfinite(self.stic_alpha) or self.stic_alpha < 0:
            raise SticConfigError(f"`stic_alpha` must be a finite number >= 0, got {self.stic_alpha!r}.")
        if self.stic_nll_reduction not in NLL_REDUCTIONS:
            raise SticConfigError(
                f"`stic_nll_reduction` must be one of {', '.join(NLL_REDUCTIONS)}, got {self.stic_nll_reduction!r}."
            )


def stic_option_names() -> list[str]:
    return [f.name for f in fields(SticArguments)]


def check_stic_keys(args) -> None:
    """Raise for a ``stic_*`` key that is not an option of this plugin (a typo would otherwise be ignored)."""
    import difflib

    if isinstance(args, dict):
        keys = list(args)
    elif isinstance(args, (list, tuple)):
        # HfArgumentParser accepts --stic_alpha and --stic-alpha alike
        keys = [str(arg)[2:].split("=", 1)[0].replace("-", "_") for arg in args if str(arg).startswith("--")]
    else:
        return
    known = stic_option_names()
    for key in keys:
        if key.startswith("stic_") and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise SticConfigError(f"Unknown STIC option `{key}`.{hint} Known options: {', '.join(known)}.")


def check_stage_arguments(args) -> None:
    """Checks that only make sense once the whole FinetuningArguments is known."""
    if args.stage != STAGE:
        return
    if args.pref_loss != "sigmoid":
        raise SticConfigError(
            f"`pref_loss: {args.pref_loss}` is not supported by `stage: {STAGE}`: STIC's loss is the sigmoid "
            "DPO loss plus the NLL term. Set `pref_loss: sigmoid` (the default)."
        )
    if args.pref_ftx > 0:
        raise SticConfigError(
            f"`pref_ftx` is not used by `stage: {STAGE}`; its NLL term is weighted by `stic_alpha` "
            f"(got pref_ftx={args.pref_ftx}). Remove `pref_ftx` and set `stic_alpha` instead."
        )
    if args.pref_bco_weight > 0:
        raise SticConfigError(f"`pref_bco_weight` is not supported by `stage: {STAGE}` (got {args.pref_bco_weight}).")
    if args.pissa_init:
        raise SticConfigError(f"`pissa_init` cannot be used with `stage: {STAGE}`, which needs a reference model.")


_CLASS_CACHE: dict[type, type] = {}


def __getattr__(name: str):
    if name == "SticFinetuningArguments":  # built on first use, so importing this module stays cheap
        return finetuning_arguments_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def finetuning_arguments_class(base: type | None = None) -> type:
    """LLaMA-Factory's FinetuningArguments with ``stage: stic_dpo`` and the ``stic_*`` options.

    A subclass, so every ``isinstance`` check and attribute LLaMA-Factory uses still holds.
    """
    if base is None:
        from llamafactory.hparams.finetuning_args import FinetuningArguments as base
    if base in _CLASS_CACHE:
        return _CLASS_CACHE[base]

    # A real object, not a string annotation: HfArgumentParser resolves the hints to build `--stage` choices.
    host_stages = typing.get_args(typing.get_type_hints(base)["stage"])
    StageLiteral = Literal[tuple(dict.fromkeys(host_stages + (STAGE,)))]  # noqa: N806 - a type

    @dataclass
    class SticFinetuningArguments(base, SticArguments):
        __doc__ = (base.__doc__ or "") + " Extended by stic_plugin with `stage: stic_dpo` and `stic_*` options."

        stage: StageLiteral = field(  # type: ignore[valid-type]
            default="sft",
            metadata={"help": f"Which stage will be performed in training. `{STAGE}`: STIC stage 1 (stic_plugin)."},
        )

        def __post_init__(self):
            super().__post_init__()
            # LLaMA-Factory enables the reference model for `dpo` only; STIC's loss needs it too.
            if self.stage == STAGE:
                self.use_ref_model = True
            self.check_stic_arguments()
            check_stage_arguments(self)
            changed = [f.name for f in fields(SticArguments) if getattr(self, f.name) != f.default]
            if self.stage != STAGE and changed:
                import logging

                logging.getLogger("stic_plugin").warning(
                    "%s set, but `stage: %s` does not use it (only `stage: %s` does)",
                    ", ".join(changed),
                    self.stage,
                    STAGE,
                )

    # Importable by name (pickling in Ray and multiprocessing): see the module's __getattr__.
    SticFinetuningArguments.__qualname__ = "SticFinetuningArguments"
    SticFinetuningArguments.__module__ = __name__
    _CLASS_CACHE[base] = SticFinetuningArguments
    return SticFinetuningArguments
