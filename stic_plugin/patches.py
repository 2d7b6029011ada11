"""Every place where stic_plugin changes LLaMA-Factory, each with its revert.

LLaMA-Factory 0.9.5 has no plugin mechanism for stages, so the plugin patches, and only here:

==========================================  ==================================================================
module                                      patch
==========================================  ==================================================================
llamafactory.hparams.parser                 ``FinetuningArguments`` in the argument lists -> a subclass with
                                            ``stage: stic_dpo`` and the ``stic_*`` options (YAML and argv forms)
llamafactory.hparams.parser                 ``_parse_args``: an unknown ``stic_*`` key is an error naming it,
                                            even with ``ALLOW_EXTRA_ARGS=1``
llamafactory.train.tuner                    ``_training_function``: ``stage: stic_dpo`` runs ``run_stic_dpo``
llamafactory.extras.constants               ``TRAINING_STAGES`` gets "STIC DPO" (web UI dropdown) and
                                            ``STAGES_USE_PAIR_DATA`` gets ``stic_dpo`` (lists ranking datasets)
llamafactory.webui.runner                   ``Runner._parse_train_args`` passes ``pref_beta``/``pref_loss``
                                            for ``stic_dpo`` as it does for ``dpo``
llamafactory.data.converter                 dataset formatters ``llava`` and ``stic`` registered
==========================================  ==================================================================

A patch is applied when its module is imported (a post-import hook in ``sys.meta_path``), or at
once if the module is already imported, so ``apply()`` never imports LLaMA-Factory itself and
stays cheap enough to run in every interpreter (see ``stic_plugin/_autoload.py``).
"""

import importlib.util
import sys
import threading
from collections import namedtuple

from .constants import STAGE, STAGE_DISPLAY_NAME

# Kept to modules that load in microseconds (no dataclasses, typing or importlib.abc): this runs in every
# interpreter of the environment. `apply(module)` returns what `revert(module, saved)` needs.
Patch = namedtuple("Patch", ["name", "module", "apply", "revert"])


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.hparams.parser
_ARGUMENT_LISTS = ("_TRAIN_ARGS", "_INFER_ARGS", "_EVAL_ARGS", "_TRAIN_MCA_ARGS")


def _apply_arguments(parser):
    from .train.options import finetuning_arguments_class

    saved = {}
    for list_name in _ARGUMENT_LISTS:
        classes = getattr(parser, list_name, None)
        if not isinstance(classes, list):
            continue
        saved[list_name] = list(classes)
        # In place: other modules may hold the same list object.
        classes[:] = [_extend_if_finetuning(cls, finetuning_arguments_class) for cls in classes]
    return saved


def _extend_if_finetuning(cls, finetuning_arguments_class):
    if cls.__name__ == "FinetuningArguments" and cls.__module__ == "llamafactory.hparams.finetuning_args":
        return finetuning_arguments_class(cls)
    return cls


def _revert_arguments(parser, saved):
    for list_name, classes in saved.items():
        getattr(parser, list_name)[:] = classes


def _apply_unknown_key_check(parser):
    original = parser._parse_args

    from .train.options import check_stic_keys

    def _parse_args(arg_parser, args=None, allow_extra_keys=False):
        args = parser.read_args(args)
        check_stic_keys(args)
        return original(arg_parser, args, allow_extra_keys=allow_extra_keys)

    _parse_args.__wrapped__ = original
    parser._parse_args = _parse_args
    return original


def _revert_function(attribute):
    def revert(module, original):
        setattr(module, attribute, original)

    return revert


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.train.tuner
def _apply_stage_dispatch(tuner):
    original = tuner._training_function

    def _training_function(config):
        if requested_stage(tuner.read_args(config.get("args"))) != STAGE:
            return original(config)
        # The host's _training_function builds the callbacks (logging for the web UI, reporters, early
        # stopping...) and then branches on the stage with if/elif. For this one call its `dpo` branch is
        # routed to run_stic_dpo, so everything around the branch stays LLaMA-Factory's own.
        get_train_args, run_dpo = tuner.get_train_args, tuner.run_dpo
        tuner.get_train_args, tuner.run_dpo = _route_to_dpo_branch(get_train_args), _run_stic_dpo
        try:
            return original(config)
        finally:
            tuner.get_train_args, tuner.run_dpo = get_train_args, run_dpo

    _training_function.__wrapped__ = original
    tuner._training_function = _training_function
    return original


def requested_stage(args):
    if isinstance(args, dict):
        return args.get("stage")
    if isinstance(args, (list, tuple)):
        args = [str(arg) for arg in args]
        for index, arg in enumerate(args):
            if arg == "--stage" and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith("--stage="):
                return arg.split("=", 1)[1]
    return None


def _route_to_dpo_branch(get_train_args):
    def routed_get_train_args(args=None):
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(args)
        if finetuning_args.stage != STAGE:
            return model_args, data_args, training_args, finetuning_args, generating_args
        if getattr(finetuning_args, "use_mca", False) or getattr(finetuning_args, "use_hyper_parallel", False):
            raise ValueError(f"`stage: {STAGE}` does not support the MCA or HyperParallel training backends.")
        finetuning_args.stage = "dpo"  # restored by _run_stic_dpo before anything reads it
        return model_args, data_args, training_args, finetuning_args, generating_args

    return routed_get_train_args


def _run_stic_dpo(model_args, data_args, training_args, finetuning_args, callbacks=None):
    from .train.workflow import run_stic_dpo

    finetuning_args.stage = STAGE
    run_stic_dpo(model_args, data_args, training_args, finetuning_args, callbacks)


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.extras.constants (dict and set are shared by reference with the web UI modules)
def _apply_stage_constants(constants):
    added_name = STAGE_DISPLAY_NAME not in constants.TRAINING_STAGES
    added_pair = STAGE not in constants.STAGES_USE_PAIR_DATA
    constants.TRAINING_STAGES[STAGE_DISPLAY_NAME] = STAGE
    constants.STAGES_USE_PAIR_DATA.add(STAGE)
    return added_name, added_pair


def _revert_stage_constants(constants, saved):
    added_name, added_pair = saved
    if added_name:
        constants.TRAINING_STAGES.pop(STAGE_DISPLAY_NAME, None)
    if added_pair:
        constants.STAGES_USE_PAIR_DATA.discard(STAGE)


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.webui.runner
def _apply_webui_runner(runner):
    original = runner.Runner._parse_train_args

    def _parse_train_args(self, data):
        args = original(self, data)
        if args.get("stage") == STAGE:
            get = lambda elem_id: data[self.manager.get_elem_by_id(elem_id)]  # noqa: E731 - as the host does
            args.setdefault("pref_beta", get("train.pref_beta"))
            args.setdefault("pref_loss", get("train.pref_loss"))
        return args

    _parse_train_args.__wrapped__ = original
    runner.Runner._parse_train_args = _parse_train_args
    return original


def _revert_webui_runner(runner, original):
    runner.Runner._parse_train_args = original


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.data.converter
class _NotReady(Exception):
    """A patch that cannot be made yet; it stays pending and is made later."""


def _apply_converters(converter):
    ours = sys.modules.get(f"{__package__}.data.formats")
    if ours is not None and "CONVERTERS" not in vars(ours):
        # stic_plugin.data.formats is being imported, and it is what imported this module (for the base
        # class): it makes this patch itself once its classes exist (see the end of data/formats.py).
        raise _NotReady
    from .data.formats import CONVERTERS

    added = []
    for name, cls in CONVERTERS.items():
        if name not in converter.DATASET_CONVERTERS:
            converter.register_dataset_converter(name, cls)
            added.append(name)
    return added


def _revert_converters(converter, added):
    for name in added:
        converter.DATASET_CONVERTERS.pop(name, None)


PATCHES = (
    Patch(
        "stage and stic_* options in the argument parser",
        "llamafactory.hparams.parser",
        _apply_arguments,
        _revert_arguments,
    ),
    Patch(
        "unknown stic_* keys are errors",
        "llamafactory.hparams.parser",
        _apply_unknown_key_check,
        _revert_function("_parse_args"),
    ),
    Patch(
        "stic_dpo dispatch in the tuner",
        "llamafactory.train.tuner",
        _apply_stage_dispatch,
        _revert_function("_training_function"),
    ),
    Patch(
        "STIC DPO in the web UI's stages and pair-data stages",
        "llamafactory.extras.constants",
        _apply_stage_constants,
        _revert_stage_constants,
    ),
    Patch(
        "pref_beta/pref_loss from the web UI for stic_dpo",
        "llamafactory.webui.runner",
        _apply_webui_runner,
        _revert_webui_runner,
    ),
    Patch("dataset formatters llava and stic", "llamafactory.data.converter", _apply_converters, _revert_converters),
)

_applied = {}  # patch name -> what its revert needs
_lock = threading.RLock()
_enabled = False


def _patch_module(module):
    with _lock:
        if not _enabled:
            return
        for patch in PATCHES:
            if patch.module == module.__name__ and patch.name not in _applied:
                try:
                    saved = patch.apply(module)
                except _NotReady:
                    continue
                # setdefault: applying may import a module that makes this same patch first (the
                # formatters' module does); that inner record is the one that holds what was added.
                _applied.setdefault(patch.name, saved)


class _PatchOnImport:
    """Finds the patched modules with the other finders, and patches each right after it executes."""

    def __init__(self) -> None:
        self._targets = {patch.module for patch in PATCHES}
        self._finding = threading.local()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._targets or getattr(self._finding, "active", False):
            return None
        self._finding.active = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding.active = False
        if spec is None or spec.loader is None:
            return None
        spec.loader_state = {"loader": spec.loader, "state": spec.loader_state}
        spec.loader = self
        return spec

    def create_module(self, spec):
        return spec.loader_state["loader"].create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        loader, state = spec.loader_state["loader"], spec.loader_state["state"]
        spec.loader, spec.loader_state = loader, state  # the module keeps its real loader
        module.__loader__ = loader
        loader.exec_module(module)
        _patch_module(module)


_finder = _PatchOnImport()


def apply() -> None:
    """Patch LLaMA-Factory: modules already imported now, the others when they are imported. Idempotent."""
    global _enabled
    with _lock:
        _enabled = True
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        patch_imported_modules()


def patch_imported_modules() -> None:
    """Make the pending patches of the target modules already imported (nothing when not applied).

    A module still executing its body is left alone: the import hook patches it when it is done.
    """
    with _lock:
        for module_name in dict.fromkeys(patch.module for patch in PATCHES):
            module = sys.modules.get(module_name)
            if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
                _patch_module(module)


def revert() -> None:
    """Undo every applied patch, newest first, and stop patching modules imported later."""
    global _enabled
    with _lock:
        _enabled = False
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        for patch in reversed(PATCHES):
            if patch.name in _applied:
                patch.revert(sys.modules[patch.module], _applied.pop(patch.name))


def applied() -> list[str]:
    """Names of the patches in force now."""
    return [patch.name for patch in PATCHES if patch.name in _applied]
