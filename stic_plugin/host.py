"""Every internal of a host library the plugin touches: private names of LLaMA-Factory, transformers, torch and
Python's import system, and the public objects it changes in place beyond what their owners document. Each
with why it is needed, where it is used, and the version it was checked against.

``tests/test_host.py`` fails when the package touches a private name (``x._name``, ``getattr(x, "_name")``,
``from m import _name``) that this list does not hold. ``stic_plugin.patches`` warns once, at the first patched
module, when an installed host differs from the version checked here, naming every entry whose target is
gone (``unresolved``): a host upgrade never breaks silently. Importing this module costs nothing.
"""

import sys
from collections import namedtuple

# library (its distribution) -> the version every entry of it was checked against
CHECKED = {"llamafactory": "0.9.5", "transformers": "5.6.0", "torch": "2.11.0", "gradio": "5.50.0"}

# target: "module:Object.attribute" (checked with ``unresolved``), or a description where the internal is an
# instance's attribute; name: the private name as the code writes it (what the test looks for); where: the
# plugin's modules that use it.
Internal = namedtuple("Internal", ["library", "target", "name", "why", "where"])

INTERNALS = (
    # ---- LLaMA-Factory 0.9.5: no public hook exists for any of these ----
    Internal(
        "llamafactory",
        "llamafactory.hparams.parser:_TRAIN_ARGS",
        "_TRAIN_ARGS",
        "the argument classes every parser is built from (with _INFER_ARGS, _EVAL_ARGS, _TRAIN_MCA_ARGS): the "
        "only place a stage and its options can be added",
        ("patches",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.hparams.parser:_parse_args",
        "_parse_args",
        "every YAML and argv configuration goes through it before unknown keys are dropped: the only place a "
        "mistyped stic_* key can be caught",
        ("patches",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.hparams.parser:_parse_train_args",
        "_parse_train_args",
        "the bench builds LLaMA-Factory's training arguments for its stic_dpo-against-dpo step as the trainer does",
        ("tools.bench",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.train.tuner:_training_function",
        "_training_function",
        "the stage dispatch (an if/elif on finetuning_args.stage): stage stic_dpo runs run_stic_dpo",
        ("patches",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.webui.runner:Runner._parse_train_args",
        "_parse_train_args",
        "where the web UI turns its Train tab into training arguments: the STIC fields and pref_beta join them",
        ("patches",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.webui.runner:Runner._initialize",
        "_initialize",
        "the one check of every preview, start and save of the Train tab: a bad stic_* value is refused there",
        ("patches",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.data.converter:DatasetConverter._find_medias",
        "_find_medias",
        "the llava and stic formatters resolve image paths against media_dir exactly as LLaMA-Factory's own do",
        ("data.formats", "patches"),
    ),
    Internal(
        "llamafactory",
        "llamafactory.data.loader:_load_single_dataset",
        "_load_single_dataset",
        "a dataset named in dataset_info.json is read (local files, hub, script) as LLaMA-Factory reads it",
        ("data.sources",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.data.mm_plugin:MMPluginMixin._regularize_images",
        "_regularize_images",
        "vLLM gets the images scaled as LLaMA-Factory scales them for training (image_max_pixels, image_min_pixels)",
        ("generation.vllm_engine",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.train.callbacks:LogCallback._write_log",
        "_write_log",
        "the one writer of trainer_log.jsonl, which the web UI reads: the stic/* metrics join its lines",
        ("train.callbacks", "patches"),
    ),
    Internal(
        "llamafactory",
        "the class of LLaMA-Factory's own LogCallback instance, changed to SticLogCallback",
        "__class__",
        "a second LogCallback would attach a second web-UI log handler, which clears and then doubles the UI log",
        ("train.callbacks",),
    ),
    Internal(
        "llamafactory",
        "llamafactory.webui.manager:Manager.get_base_elems",
        "get_base_elems",
        "replaced on the manager instance for the one call that builds the Train tab: its events take what it "
        "returns as inputs, and the STIC fields join them so",
        ("webui.train_tab",),
    ),
    # ---- gradio ----
    Internal(
        "gradio",
        "gradio.blocks:BlockContext",
        "children",
        "the STIC data tab is built before the Train tab (its elements must exist for the Train tab's events) "
        "and moved after it in its parent's children",
        ("webui.train_tab",),
    ),
    # ---- transformers ----
    Internal(
        "transformers",
        "transformers:PretrainedConfig",
        "_attn_implementation",
        "the continuous engine's decoding step attends to its ring cache with an attention of its own: it sets "
        "the text config's attention around each step and restores it",
        ("generation.continuous",),
    ),
    Internal(
        "transformers",
        "transformers:AttentionInterface.register",
        "register",
        "the continuous engine's decoding attentions are registered once, process-wide, under names of their own",
        ("generation.continuous",),
    ),
    Internal(
        "transformers",
        "transformers:PretrainedConfig.register_for_auto_class",
        "_auto_class",
        "LLaMA-Factory's load_model registers the config's and model's classes for auto loading whenever the "
        "config names an auto_map, even when trust_remote_code is off and they are transformers' own classes; "
        "every later save of such a config in the process then tries to copy transformers' source file. The "
        "engine takes the mark back from classes of transformers itself",
        ("generation.transformers_engine",),
    ),
    # ---- torch ----
    Internal(
        "torch",
        "torch._dynamo:mark_static_address",
        "_dynamo",
        "the continuous engine's cache tensors are marked static so that the compiled decoding step is not "
        "recompiled when they are written in place",
        ("generation.continuous",),
    ),
    Internal(
        "torch",
        "torch.cpu:_is_amx_tile_supported",
        "_is_amx_tile_supported",
        "vLLM's CPU build asks it whether to pack short convolutions for AMX (width 4 only): the vLLM engine "
        "asks it too, to refuse a model it would fail to load, in one line, before loading it",
        ("generation.vllm_engine",),
    ),
    # ---- Python's import system ----
    Internal(
        "python",
        "a module's __spec__._initializing",
        "_initializing",
        "a patch checks the names it needs in a module still being imported from its source, not its attributes",
        ("patches",),
    ),
    Internal(
        "python",
        "os:_exit",
        "_exit",
        "Ctrl-C while stic-cli starts (the interpreter may be reading its start-up files), or after the command's "
        "last line, ends the process at once: no exception could be raised and caught there (documented, but "
        "named as private)",
        ("lifetime",),
    ),
)


def resolve(target: str):
    """The object a ``module:Object.attribute`` target names (its module is imported); raises if it is gone."""
    import importlib

    module_name, _, path = target.partition(":")
    found = importlib.import_module(module_name)
    for part in path.split(".") if path else []:
        found = getattr(found, part)
    return found


def checkable(internal: Internal) -> bool:
    return ":" in internal.target and " " not in internal.target


def unresolved(imported_only: bool = True) -> list[str]:
    """The targets that are gone from the installed hosts (with ``imported_only``, of the libraries this process
    has imported already: nothing new is imported)."""
    gone = []
    for internal in INTERNALS:
        if not checkable(internal):
            continue
        top = internal.target.split(":")[0].split(".")[0]
        if imported_only and top not in sys.modules:
            continue
        try:
            resolve(internal.target)
        except (ImportError, AttributeError):
            gone.append(internal.target)
    return gone


def installed_version(library: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(library)
    except Exception:  # noqa: BLE001 - not installed, or unreadable metadata
        return None


def differing_versions() -> dict[str, tuple[str, str | None]]:
    """library -> (the version checked, the version installed) where they differ (local build tags ignored)."""
    out = {}
    for library, checked in CHECKED.items():
        found = installed_version(library)
        if found is not None and found.split("+")[0] != checked:
            out[library] = (checked, found)
    return out
