"""Every place where stic_plugin changes LLaMA-Factory, each with its revert, and the check of the host.

LLaMA-Factory 0.9.5 has no plugin mechanism for stages, so the plugin patches, and only here:

==========================================  ==================================================================
module                                      patch
==========================================  ==================================================================
llamafactory.hparams.parser                 ``FinetuningArguments`` in the argument lists -> a subclass with
                                            ``stage: stic_dpo`` and the ``stic_*`` options (YAML and argv forms)
llamafactory.hparams.parser                 ``_parse_args``: an unknown ``stic_*`` key is an error naming it,
                                            even with ``ALLOW_EXTRA_ARGS=1``
llamafactory.train.tuner                    ``_training_function``: ``stage: stic_dpo`` runs ``run_stic_dpo``;
                                            for ``stic_dpo`` and ``sft``, the template is checked against the
                                            model before the weights are loaded
llamafactory.extras.constants               ``TRAINING_STAGES`` gets "STIC DPO" (web UI dropdown) and
                                            ``STAGES_USE_PAIR_DATA`` gets ``stic_dpo`` (lists ranking datasets)
llamafactory.webui.runner                   ``Runner._parse_train_args`` passes ``pref_beta``/``pref_loss``
                                            for ``stic_dpo`` as it does for ``dpo``, and the STIC fields'
                                            ``stic_*`` values (a key in "Extra arguments" wins)
llamafactory.webui.runner                   ``Runner._initialize`` refuses, before anything starts, a ``stic_*``
                                            value out of range or mistyped, and a run while a STIC data run
                                            is in progress
llamafactory.webui.locales                  ``LOCALES`` gets the labels and help texts of the STIC elements
llamafactory.webui.interface                ``create_train_tab``: the "STIC" accordion of the Train tab;
                                            ``create_footer``: the "STIC data" tab is made first, and placed
                                            after the Train tab
llamafactory.webui.interface                ``run_web_ui``: the web UI listens on this machine only, unless
                                            ``GRADIO_SERVER_NAME`` names an address, and says so at start
llamafactory.webui.components.train         ``change_stage``: a stage change that "Train on this dataset"
                                            made keeps the handed-over dataset instead of emptying the list
llamafactory.data.converter                 dataset formatters ``llava`` and ``stic`` registered
llamafactory.data.template                  template ``llava_mistral`` registered: ``llava_next_mistral``'s chat
                                            format with LLaVA's one-view image plugin, for a LLaVA-1.6 copy that
                                            trains on one padded view (``stic-cli single-view``)
==========================================  ==================================================================

Private names of LLaMA-Factory the patches rely on, and why (0.9.5 offers no public hook for any); these and every
other host internal the package touches are listed in ``stic_plugin.host``:

- ``hparams.parser._TRAIN_ARGS`` (and ``_INFER_ARGS``, ``_EVAL_ARGS``, ``_TRAIN_MCA_ARGS``): the argument
  classes every parser is built from; the only place a stage and options can be added.
- ``hparams.parser._parse_args``: the one function every YAML and argv configuration goes through before
  unknown keys are dropped (``ALLOW_EXTRA_ARGS``), so the only place a mistyped ``stic_*`` key can be caught.
- ``train.tuner._training_function``: the stage dispatch (an if/elif on ``finetuning_args.stage``).
- ``webui.runner.Runner._parse_train_args``: where the web UI turns its form into training arguments.
- ``webui.runner.Runner._initialize``: the one check every preview, start and save of the Train tab goes
  through, where the web UI refuses a value before anything runs.
- ``webui.manager.Manager.get_base_elems``: the Train tab's events take as inputs what it returns plus the
  tab's own fields, so the STIC fields join them through it (for the one call that builds the Train tab).
- ``data.converter.DatasetConverter._find_medias``: the formatters resolve image paths against
  ``media_dir`` exactly as LLaMA-Factory's own formatters do (``stic_plugin.data.formats``).
- ``train.callbacks.LogCallback._write_log``: the one writer of ``trainer_log.jsonl``, which the web UI
  reads; ``stic_plugin.train.callbacks`` adds the ``stic/*`` metrics to its lines.

Each patch lists the names it needs (``Patch.needs``); a patch whose name is missing is skipped, not
made, and a warning names it. The host's version is compared with ``WRITTEN_FOR`` when the first
module is patched: on a mismatch one warning (once per process) names the version found and every
patch whose names are missing (from the module where it is loaded, else from its source file).

A patch is applied when its module is imported (a post-import hook in ``sys.meta_path``), or at
once if the module is already imported, so ``apply()`` never imports LLaMA-Factory itself and
stays cheap enough to run in every interpreter (see ``stic_plugin/_autoload.py``). The same hook, once it
has run ``llamafactory.train.tuner``, ends a training process's start for ``stic_plugin.heap`` (Python's
collector back on); nothing of LLaMA-Factory changes for that.
"""

import importlib.util
import sys
import threading
from collections import namedtuple

from .constants import SINGLE_VIEW_CHAT_FORMAT, SINGLE_VIEW_TEMPLATE, STAGE, STAGE_DISPLAY_NAME
from .host import CHECKED

WRITTEN_FOR = CHECKED["llamafactory"]  # the LLaMA-Factory version these patches were written and tested against

# Kept to modules that load in microseconds (no dataclasses, typing or importlib.abc): this runs in every
# interpreter of the environment. `apply(module)` returns what `revert(module, saved)` needs. `needs`: the
# names the patch relies on, as "Attribute.path" in its module or "other.module:Attribute.path" for a module
# that its module imports itself.
Patch = namedtuple("Patch", ["name", "module", "needs", "apply", "revert"])


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

    def _parse_args(arg_parser, args=None, allow_extra_keys=False):
        from .train.options import check_stic_keys

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
# Stages whose model is checked against its template before the weights are loaded: STIC's, and the SFT of
# stage 2 (and of any image dataset).
CHECKED_STAGES = (STAGE, "sft")


def _apply_stage_dispatch(tuner):
    original = tuner._training_function

    def _training_function(config):
        stage = requested_stage(tuner.read_args(config.get("args")))
        if stage not in CHECKED_STAGES:
            return original(config)
        # The host's _training_function builds the callbacks (logging for the web UI, reporters, early
        # stopping...) and then branches on the stage with if/elif. For this one call the parsed arguments are
        # checked first, and for stic_dpo its `dpo` branch is routed to run_stic_dpo, so everything around the
        # branch stays LLaMA-Factory's own.
        get_train_args, run_dpo = tuner.get_train_args, tuner.run_dpo
        tuner.get_train_args = _checked_train_args(get_train_args)
        if stage == STAGE:
            tuner.run_dpo = _run_stic_dpo
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


def _checked_train_args(get_train_args):
    def checked_get_train_args(args=None):
        from .model_check import check_training_model
        from .train.options import SticConfigError

        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(args)
        try:  # before the weights are loaded: a wrong template or a model not found is one line
            check_training_model(model_args, data_args)
        except ValueError as err:
            raise SticConfigError(str(err)) from None
        if finetuning_args.stage != STAGE:
            return model_args, data_args, training_args, finetuning_args, generating_args
        if getattr(finetuning_args, "use_mca", False) or getattr(finetuning_args, "use_hyper_parallel", False):
            raise ValueError(f"`stage: {STAGE}` does not support the MCA or HyperParallel training backends.")
        finetuning_args.stage = "dpo"  # LLaMA-Factory's dpo branch runs it; _run_stic_dpo restores it first
        return model_args, data_args, training_args, finetuning_args, generating_args

    return checked_get_train_args


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
        from .webui.train_tab import training_arguments

        args = original(self, data)
        if args.get("stage") == STAGE:
            get = lambda elem_id: data[self.manager.get_elem_by_id(elem_id)]  # noqa: E731 - as the host does
            args.setdefault("pref_beta", get("train.pref_beta"))
            args.setdefault("pref_loss", get("train.pref_loss"))
            training_arguments(args, get)
        return args

    _parse_train_args.__wrapped__ = original
    runner.Runner._parse_train_args = _parse_train_args
    return original


def _revert_method(class_name, method_name):
    def revert(module, original):
        setattr(getattr(module, class_name), method_name, original)

    return revert


def _apply_webui_checks(runner):
    original = runner.Runner._initialize

    def _initialize(self, data, do_train, from_preview):
        from .webui.process import running_somewhere
        from .webui.train_tab import check

        error = original(self, data, do_train, from_preview)
        if error:
            return error
        get = lambda elem_id: data[self.manager.get_elem_by_id(elem_id)]  # noqa: E731 - as the host does
        if running_somewhere():  # a STIC data run: one job at a time, as between training and evaluation
            return runner.ALERTS["err_conflict"][get("top.lang")]
        return check(get) if do_train else ""

    _initialize.__wrapped__ = original
    runner.Runner._initialize = _initialize
    return original


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.webui.locales (LOCALES is shared by reference with the web UI modules)
def _apply_webui_locales(locales):
    from .webui.locales import locale_entries

    entries = locale_entries(locales.LOCALES)
    added = [name for name in entries if name not in locales.LOCALES]
    locales.LOCALES.update({name: entries[name] for name in added})
    return added


def _revert_webui_locales(locales, added):
    for name in added:
        locales.LOCALES.pop(name, None)


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.webui.interface (create_ui looks both functions up as module globals when it builds the UI)
def _apply_webui_tabs(interface):
    originals = interface.create_train_tab, interface.create_footer
    original_train_tab, original_footer = originals
    built = {}  # the UI being built: its engine and Train tab, from create_train_tab to create_footer

    def create_train_tab(engine):
        from .webui.train_tab import create_train_tab as with_stic

        elems = with_stic(original_train_tab, engine)
        built.update(engine=engine, train_tab=elems["stic_tab"].parent)
        return elems

    def create_footer():
        from .webui.data_tab import create_data_tab_after

        if "engine" in built:  # the full web UI (create_web_demo has no Train tab)
            create_data_tab_after(built.pop("engine"), built.pop("train_tab"))
        return original_footer()

    create_train_tab.__wrapped__ = original_train_tab
    create_footer.__wrapped__ = original_footer
    interface.create_train_tab, interface.create_footer = create_train_tab, create_footer
    return originals


def _revert_webui_tabs(interface, originals):
    interface.create_train_tab, interface.create_footer = originals


def _apply_webui_address(interface):
    original = interface.run_web_ui

    def run_web_ui():
        from .webui.process import listen_on_this_machine_unless_told

        listen_on_this_machine_unless_told()
        return original()

    run_web_ui.__wrapped__ = original
    interface.run_web_ui = run_web_ui
    return original


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.webui.components.train (create_train_tab looks change_stage up as a module global when it wires the
# stage's change event)
def _apply_webui_stage_change(train):
    from .webui.handover import keeping_handed_over_dataset

    original = train.change_stage
    train.change_stage = keeping_handed_over_dataset(original)
    return original


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.data.converter
def _apply_converters(converter):
    from .data.formats import converter_classes

    added = []
    for name, cls in converter_classes().items():
        if name not in converter.DATASET_CONVERTERS:
            converter.register_dataset_converter(name, cls)
            added.append(name)
    return added


def _revert_converters(converter, added):
    for name in added:
        converter.DATASET_CONVERTERS.pop(name, None)


# ---------------------------------------------------------------------------------------------------------------
# llamafactory.data.template
def _apply_single_view_template(template):
    """``llava_mistral``: the chat format of ``llava_next_mistral`` (the same text, token for token) with the image
    plugin of ``llava``, which expands an image to one view's tokens (LLaVA-1.6's anyres plugin needs its
    processor's tiles)."""
    import dataclasses

    if SINGLE_VIEW_TEMPLATE in template.TEMPLATES:
        return None
    one_view = template.get_mm_plugin(name="llava", image_token="<image>")
    chat_format = template.TEMPLATES[SINGLE_VIEW_CHAT_FORMAT]
    template.TEMPLATES[SINGLE_VIEW_TEMPLATE] = dataclasses.replace(chat_format, mm_plugin=one_view)
    return SINGLE_VIEW_TEMPLATE


def _revert_single_view_template(template, added):
    if added:
        template.TEMPLATES.pop(added, None)


PATCHES = (
    Patch(
        name="stage and stic_* options in the argument parser",
        module="llamafactory.hparams.parser",
        needs=("_TRAIN_ARGS", "llamafactory.hparams.finetuning_args:FinetuningArguments"),
        apply=_apply_arguments,
        revert=_revert_arguments,
    ),
    Patch(
        name="unknown stic_* keys are errors",
        module="llamafactory.hparams.parser",
        needs=("_parse_args", "read_args"),
        apply=_apply_unknown_key_check,
        revert=_revert_function("_parse_args"),
    ),
    Patch(
        name="stic_dpo dispatch in the tuner",
        module="llamafactory.train.tuner",
        # run_stic_dpo hands LLaMA-Factory's LogCallback the stic/* metrics through its _write_log
        needs=(
            "_training_function",
            "read_args",
            "get_train_args",
            "run_dpo",
            "llamafactory.train.callbacks:LogCallback._write_log",
        ),
        apply=_apply_stage_dispatch,
        revert=_revert_function("_training_function"),
    ),
    Patch(
        name="STIC DPO in the web UI's stages and pair-data stages",
        module="llamafactory.extras.constants",
        needs=("TRAINING_STAGES", "STAGES_USE_PAIR_DATA"),
        apply=_apply_stage_constants,
        revert=_revert_stage_constants,
    ),
    Patch(
        name="stic_dpo arguments from the web UI's Train tab",
        module="llamafactory.webui.runner",
        needs=("Runner._parse_train_args",),
        apply=_apply_webui_runner,
        revert=_revert_method("Runner", "_parse_train_args"),
    ),
    Patch(
        name="STIC values checked before a web UI run",
        module="llamafactory.webui.runner",
        needs=("Runner._initialize", "ALERTS"),
        apply=_apply_webui_checks,
        revert=_revert_method("Runner", "_initialize"),
    ),
    Patch(
        name="STIC texts in the web UI's locales",
        module="llamafactory.webui.locales",
        needs=("LOCALES",),
        apply=_apply_webui_locales,
        revert=_revert_webui_locales,
    ),
    Patch(
        name="STIC accordion in the Train tab and the STIC data tab",
        module="llamafactory.webui.interface",
        needs=(
            "create_train_tab",
            "create_footer",
            "llamafactory.webui.manager:Manager.get_base_elems",
            "llamafactory.webui.manager:Manager.add_elems",
        ),
        apply=_apply_webui_tabs,
        revert=_revert_webui_tabs,
    ),
    Patch(
        name="the web UI on this machine only, unless GRADIO_SERVER_NAME says otherwise",
        module="llamafactory.webui.interface",
        needs=("run_web_ui",),
        apply=_apply_webui_address,
        revert=_revert_function("run_web_ui"),
    ),
    Patch(
        name='a stage change made by "Train on this dataset" keeps its dataset',
        module="llamafactory.webui.components.train",
        needs=("change_stage", "create_train_tab"),
        apply=_apply_webui_stage_change,
        revert=_revert_function("change_stage"),
    ),
    Patch(
        name="template llava_mistral: LLaVA-1.6-Mistral's chat format, one image view",
        module="llamafactory.data.template",
        needs=("TEMPLATES", "get_mm_plugin"),
        apply=_apply_single_view_template,
        revert=_revert_single_view_template,
    ),
    Patch(
        name="dataset formatters llava and stic",
        module="llamafactory.data.converter",
        needs=("DATASET_CONVERTERS", "register_dataset_converter", "DatasetConverter._find_medias"),
        apply=_apply_converters,
        revert=_revert_converters,
    ),
)


# ---------------------------------------------------------------------------------------------------------------
# The host: its version, and the names each patch needs.
def host_version() -> str:
    """LLaMA-Factory's version, from the imported package (or its installed metadata); never imports it."""
    host = sys.modules.get("llamafactory")
    version = getattr(host, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as installed_version

            version = installed_version("llamafactory")
        except Exception:  # noqa: BLE001 - not installed, or unreadable metadata: say so in the warning
            version = "unknown"
    return str(version)


def _has_attribute(module, path: str) -> bool:
    target = module
    for part in path.split("."):
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    return True


def _defined_in_source(module_name: str, path: str) -> bool | None:
    """Whether the host's source file of ``module_name`` defines ``path`` (a module-level name, or a class's
    ``Class.member``); None when the source cannot be read. Reads the file, imports nothing."""
    import ast
    import os

    host = sys.modules.get("llamafactory")
    if not getattr(host, "__file__", None):
        return None
    base = os.path.join(os.path.dirname(host.__file__), *module_name.split(".")[1:])
    source = base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")
    try:
        with open(source, encoding="utf-8") as handle:
            scope = ast.parse(handle.read()).body
    except (OSError, SyntaxError, ValueError):
        return None
    for part in path.split("."):
        node = _binding(scope, part)
        if node is None:
            return False
        if not isinstance(node, ast.ClassDef):
            return True  # the attributes of anything but a class defined there are not followed
        scope = node.body
    return True


def _binding(statements, name: str):
    """The statement that binds ``name`` among these statements, or in the if/try/with blocks among them."""
    import ast

    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return node
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name).split(".")[0] == name for alias in node.names):
                return node
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == name for target in targets for n in ast.walk(target)):
                return node
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if isinstance(block, list) and (found := _binding(block, name)) is not None:
                return found
    return None


def missing_names(patch, module=None) -> list[str]:
    """The names ``patch`` needs that the host lacks, as ``module.Attribute.path``.

    Looked up in the module (``module``, or a fully imported one in ``sys.modules``), else in its source
    file, so that nothing is imported to find out.
    """
    missing = []
    for need in patch.needs:
        module_name, _, path = need.rpartition(":")
        module_name = module_name or patch.module
        loaded = module if module is not None and module.__name__ == module_name else sys.modules.get(module_name)
        initializing = getattr(getattr(loaded, "__spec__", None), "_initializing", False)
        if loaded is not None and (loaded is module or not initializing):
            present = _has_attribute(loaded, path)
        else:
            present = _defined_in_source(module_name, path) is not False
        if not present:
            missing.append(f"{module_name}.{path}")
    return missing


def version_warning(found: str | None = None, missing: dict | None = None) -> str | None:
    """The warning for a host other than the one the patches were written for (None for that one).

    ``missing``: patch name -> ``missing_names(patch)``, computed here when not given.
    """
    found = found or host_version()
    if found == WRITTEN_FOR:
        return None
    if missing is None:
        missing = {patch.name: missing_names(patch) for patch in PATCHES}
    skipped = "; ".join(f"{name!r} (no {', '.join(names)})" for name, names in missing.items() if names)
    return (
        f"stic_plugin was written for LLaMA-Factory {WRITTEN_FOR} and found {found}: "
        + (
            f"these patches are skipped, what they need is missing: {skipped}."
            if skipped
            else "every name the patches need is there, but what they do may have changed."
        )
        + f" Install llamafactory=={WRITTEN_FOR} for the tested combination."
    )


# ---------------------------------------------------------------------------------------------------------------
# Applying: each patch when its module is imported, after checking that what it needs is there.
_applied = {}  # patch name -> what its revert needs
_skipped = set()  # patches not made (a name they need is missing, or they failed) since the last revert()
_reported = set()  # patches a warning has named in this process
_host_checked = False
_lock = threading.RLock()
_enabled = False


def _warn(message: str) -> None:
    import logging

    logging.getLogger("stic_plugin").warning(message)


def _check_host_once() -> None:
    """At the first patched module of the process: one warning if LLaMA-Factory is not the written-for version."""
    global _host_checked
    if _host_checked:
        return
    _host_checked = True
    found = host_version()
    if found != WRITTEN_FOR:
        missing = {patch.name: missing_names(patch) for patch in PATCHES}
        _reported.update(name for name, names in missing.items() if names)  # named once, here
        _warn(version_warning(found, missing))
    others = internals_warning()
    if others:
        _warn(others)


def internals_warning() -> str | None:
    """One warning when transformers, torch or gradio is not the version the plugin's use of their internals
    was checked against (``stic_plugin.host``), naming the internals that are gone; None otherwise."""
    from . import host

    differing = {library: pair for library, pair in host.differing_versions().items() if library != "llamafactory"}
    if not differing:
        return None
    versions = ", ".join(f"{library} {checked} (found {found})" for library, (checked, found) in differing.items())
    gone = host.unresolved(imported_only=True)
    return f"stic_plugin was checked with {versions}: " + (
        f"these internals it uses are gone: {', '.join(gone)}."
        if gone
        else "every internal it uses is there (stic_plugin.host lists them), but what they do may have changed."
    )


def _patch_module(module):
    with _lock:
        if not _enabled:
            return
        _check_host_once()
        for patch in PATCHES:
            if patch.module != module.__name__ or patch.name in _applied or patch.name in _skipped:
                continue
            missing = missing_names(patch, module)
            if missing:
                _skipped.add(patch.name)
                if patch.name not in _reported:
                    _reported.add(patch.name)
                    _warn(
                        f"stic_plugin: patch {patch.name!r} is skipped: LLaMA-Factory {host_version()} has no "
                        f"{', '.join(missing)} (the patches were written for {WRITTEN_FOR})."
                    )
                continue
            try:
                _applied[patch.name] = patch.apply(module)
            except Exception as err:  # noqa: BLE001 - a broken patch must not break the host's import
                _skipped.add(patch.name)
                _reported.add(patch.name)
                _warn(
                    f"stic_plugin: patch {patch.name!r} failed on LLaMA-Factory {host_version()} and is skipped "
                    f"({type(err).__name__}: {err})."
                )


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
        try:
            loader.exec_module(module)
            _patch_module(module)
        finally:
            if module.__name__ == "llamafactory.train.tuner":  # a training process has made its imports (heap.py)
                from .heap import start_is_over

                start_is_over()


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
    from .heap import start_is_over

    start_is_over()  # the tuner's import no longer ends a training process's start
    with _lock:
        _enabled = False
        _skipped.clear()
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        for patch in reversed(PATCHES):
            if patch.name in _applied:
                patch.revert(sys.modules[patch.module], _applied.pop(patch.name))


def applied() -> list[str]:
    """Names of the patches in force now."""
    return [patch.name for patch in PATCHES if patch.name in _applied]
