"""Auto-loading, apply() and revert(): each scenario in a fresh interpreter, as users get it."""

import subprocess
import sys
import textwrap

import pytest

from helpers import subprocess_env


def _python(code: str, stderr: bool = False, **env: str) -> str:
    """Standard output of a fresh interpreter running ``code`` (and its standard error, with ``stderr``)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + (result.stderr if stderr else "")


def test_interpreter_start_imports_neither_torch_nor_llamafactory():
    out = _python(
        """
        import sys
        import stic_plugin
        print(sorted(m for m in ("torch", "llamafactory", "transformers") if m in sys.modules))
        print(any(type(f).__name__ == "_PatchOnImport" for f in sys.meta_path))
        """
    )
    assert out.split("\n")[:2] == ["[]", "True"]


@pytest.mark.slow
def test_autoload_patches_in_a_plain_interpreter_and_can_be_turned_off():
    code = """
        from llamafactory.extras import constants
        print(constants.TRAINING_STAGES.get("STIC DPO"), "stic_dpo" in constants.STAGES_USE_PAIR_DATA)
    """
    assert _python(code).strip() == "stic_dpo True"
    assert _python(code, STIC_PLUGIN_AUTOLOAD="0").strip() == "None False"


@pytest.mark.slow
def test_apply_patches_modules_imported_before_and_after_it():
    out = _python(
        """
        import llamafactory.hparams.parser as parser   # before apply()
        import stic_plugin
        stic_plugin.apply()
        import llamafactory.train.tuner as tuner        # after apply(): patched on import
        import llamafactory.data.converter as converter
        import llamafactory.data.template as template
        print(hasattr(parser._parse_args, "__wrapped__"), hasattr(tuner._training_function, "__wrapped__"))
        print(sorted(set(converter.DATASET_CONVERTERS) & {"llava", "stic"}))
        print(len(stic_plugin.applied()), type(template.TEMPLATES["llava_mistral"].mm_plugin).__name__)
        """,
        STIC_PLUGIN_AUTOLOAD="0",
    )
    assert out.split("\n")[:3] == ["True True", "['llava', 'stic']", "6 LlavaPlugin"]  # web UI modules not imported


@pytest.mark.slow
def test_apply_is_idempotent_and_revert_restores_every_original():
    out = _python(
        """
        import llamafactory.hparams.parser as parser
        import llamafactory.train.tuner as tuner
        import llamafactory.extras.constants as constants
        import llamafactory.data.converter as converter
        import llamafactory.data.template as template
        import llamafactory.webui.runner as runner
        import llamafactory.webui.locales as locales
        import llamafactory.webui.interface as interface
        import llamafactory.webui.components.train as train_tab
        import stic_plugin
        from stic_plugin import patches

        def snapshot():
            return dict(
                lists=[list(getattr(parser, n)) for n in patches._ARGUMENT_LISTS if hasattr(parser, n)],
                parse_args=parser._parse_args,
                training_function=tuner._training_function,
                stages=dict(constants.TRAINING_STAGES),
                pair=set(constants.STAGES_USE_PAIR_DATA),
                runner=runner.Runner._parse_train_args,
                initialize=runner.Runner._initialize,
                locales=dict(locales.LOCALES),
                tabs=(interface.create_train_tab, interface.create_footer),
                web_ui=interface.run_web_ui,
                stage_change=train_tab.change_stage,
                converters=dict(converter.DATASET_CONVERTERS),
                templates=dict(template.TEMPLATES),
            )

        original = snapshot()
        stic_plugin.apply()
        once = snapshot()
        stic_plugin.apply()
        twice = snapshot()
        print(len(stic_plugin.applied()), once == twice, once == original)
        print(parser._parse_args.__wrapped__ is original["parse_args"])
        print(tuner._training_function.__wrapped__ is original["training_function"])
        print(runner.Runner._parse_train_args.__wrapped__ is original["runner"])
        print(runner.Runner._initialize.__wrapped__ is original["initialize"])
        print(sorted(set(once["locales"]) - set(original["locales"]))[:3])
        print([tab.__wrapped__ for tab in once["tabs"]] == list(original["tabs"]))
        print(once["web_ui"].__wrapped__ is original["web_ui"])
        print(once["stage_change"].host_change_stage is original["stage_change"])
        stic_plugin.revert()
        after = snapshot()
        print([key for key in original if after[key] != original[key]], stic_plugin.applied())
        print(all(a is b for a, b in zip(after["lists"][0], original["lists"][0])))
        stic_plugin.apply()  # again after a revert: wraps the originals, not the old wrappers
        print(len(stic_plugin.applied()), tuner._training_function.__wrapped__ is original["training_function"])
        """,
        STIC_PLUGIN_AUTOLOAD="0",
    )
    assert out.split("\n")[:12] == [
        "12 True False",
        "True",
        "True",
        "True",
        "True",
        "['stic_abort_btn', 'stic_action', 'stic_advanced']",
        "True",
        "True",
        "True",
        "[] []",
        "True",
        "12 True",
    ]


@pytest.mark.slow
def test_importing_the_formatters_first_still_registers_them():
    """stic_plugin.data.formats builds its classes on LLaMA-Factory's converter module, whose import registers
    them: built once, whichever comes first."""
    out = _python(
        """
        import sys
        import stic_plugin.data.formats as formats
        print("llamafactory.data.converter" in sys.modules)
        classes = formats.converter_classes()   # imports the converter module: its patch registers them
        import llamafactory.data.converter as converter
        print(sorted(set(converter.DATASET_CONVERTERS) & {"llava", "stic"}))
        print(all(converter.DATASET_CONVERTERS[name] is cls for name, cls in classes.items()))
        print(formats.LlavaDatasetConverter is classes["llava"], formats.converter_classes() is classes)
        """
    )
    assert out.split("\n")[:4] == ["False", "['llava', 'stic']", "True", "True True"]


# A module standing for LLaMA-Factory's web UI runner, without the method its patch wraps.
_FAKE_RUNNER = """
    import sys, types
    import llamafactory
    runner = types.ModuleType("llamafactory.webui.runner")
    runner.Runner = type("Runner", (), {})
    sys.modules["llamafactory.webui.runner"] = runner
"""


def test_another_llamafactory_version_is_one_warning_naming_the_skipped_patches():
    out = _python(
        _FAKE_RUNNER
        + """
    llamafactory.__version__ = "0.9.9"
    import stic_plugin
    from stic_plugin import patches
    stic_plugin.apply()
    stic_plugin.revert()
    stic_plugin.apply()   # once per process: no second warning
    print(stic_plugin.applied())
    """,
        STIC_PLUGIN_AUTOLOAD="0",
        stderr=True,
    )
    warnings = [line for line in out.splitlines() if line.startswith("stic_plugin")]
    assert warnings == [
        "stic_plugin was written for LLaMA-Factory 0.9.5 and found 0.9.9: these patches are skipped, what they "
        'need is missing: "stic_dpo arguments from the web UI\'s Train tab" (no '
        "llamafactory.webui.runner.Runner._parse_train_args); 'STIC values checked before a web UI run' (no "
        "llamafactory.webui.runner.Runner._initialize, llamafactory.webui.runner.ALERTS). Install "
        "llamafactory==0.9.5 for the tested combination."
    ]
    assert "[]" in out.splitlines()  # the runner's patches were not made (and no other module is imported)


def test_a_missing_name_on_the_written_for_version_is_a_warning_naming_the_patch():
    out = _python(
        _FAKE_RUNNER
        + """
    constants = types.ModuleType("llamafactory.extras.constants")  # one that has what its patch needs
    constants.TRAINING_STAGES, constants.STAGES_USE_PAIR_DATA = {}, set()
    sys.modules["llamafactory.extras.constants"] = constants
    import stic_plugin
    stic_plugin.apply()
    print(stic_plugin.applied())
    """,
        STIC_PLUGIN_AUTOLOAD="0",
        stderr=True,
    )
    warnings = [line for line in out.splitlines() if line.startswith("stic_plugin")]
    assert warnings == [
        'stic_plugin: patch "stic_dpo arguments from the web UI\'s Train tab" is skipped: LLaMA-Factory 0.9.5 has '
        "no llamafactory.webui.runner.Runner._parse_train_args (the patches were written for 0.9.5).",
        "stic_plugin: patch 'STIC values checked before a web UI run' is skipped: LLaMA-Factory 0.9.5 has "
        "no llamafactory.webui.runner.Runner._initialize, llamafactory.webui.runner.ALERTS (the patches were "
        "written for 0.9.5).",
    ]
    assert '["STIC DPO in the web UI\'s stages and pair-data stages"]' in out.splitlines()


def test_a_failed_auto_load_says_what_failed_on_one_line(monkeypatch, capsys):
    from stic_plugin import _autoload, patches

    def broken_apply():
        raise RuntimeError("the hook could not be installed\nsecond line")

    monkeypatch.setattr(patches, "apply", broken_apply)
    _autoload.main()
    err = capsys.readouterr().err
    assert err == (
        "stic_plugin: auto-loading failed in stic_plugin.patches.apply() (RuntimeError: the hook could not be "
        "installed second line); set STIC_PLUGIN_AUTOLOAD=0 to silence.\n"
    )


def test_missing_names_are_read_from_the_source_of_modules_not_imported():
    import llamafactory  # noqa: F401 - the host package, not its modules

    from stic_plugin.patches import PATCHES, Patch, missing_names

    assert "llamafactory.webui.runner" not in sys.modules
    assert [missing_names(patch) for patch in PATCHES] == [[]] * len(PATCHES)
    needs = ("Runner._parse_train_args", "Runner._renamed", "NOT_THERE", "Runner", "os", "TRAINING_STAGES")
    assert missing_names(Patch("x", "llamafactory.webui.runner", needs, None, None)) == [
        "llamafactory.webui.runner.Runner._renamed",
        "llamafactory.webui.runner.NOT_THERE",
    ]
    assert "llamafactory.webui.runner" not in sys.modules  # found out without importing it (gradio)
