"""Auto-loading, apply() and revert(): each scenario in a fresh interpreter, as users get it."""

import subprocess
import sys
import textwrap

from conftest import subprocess_env


def _python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


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


def test_autoload_patches_in_a_plain_interpreter_and_can_be_turned_off():
    code = """
        from llamafactory.extras import constants
        print(constants.TRAINING_STAGES.get("STIC DPO"), "stic_dpo" in constants.STAGES_USE_PAIR_DATA)
    """
    assert _python(code).strip() == "stic_dpo True"
    assert _python(code, STIC_PLUGIN_AUTOLOAD="0").strip() == "None False"


def test_apply_patches_modules_imported_before_and_after_it():
    out = _python(
        """
        import llamafactory.hparams.parser as parser   # before apply()
        import stic_plugin
        stic_plugin.apply()
        import llamafactory.train.tuner as tuner        # after apply(): patched on import
        import llamafactory.data.converter as converter
        print(hasattr(parser._parse_args, "__wrapped__"), hasattr(tuner._training_function, "__wrapped__"))
        print(sorted(set(converter.DATASET_CONVERTERS) & {"llava", "stic"}))
        print(len(stic_plugin.applied()))
        """,
        STIC_PLUGIN_AUTOLOAD="0",
    )
    assert out.split("\n")[:3] == ["True True", "['llava', 'stic']", "5"]  # web UI runner not imported yet


def test_apply_is_idempotent_and_revert_restores_every_original():
    out = _python(
        """
        import llamafactory.hparams.parser as parser
        import llamafactory.train.tuner as tuner
        import llamafactory.extras.constants as constants
        import llamafactory.data.converter as converter
        import llamafactory.webui.runner as runner
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
                converters=dict(converter.DATASET_CONVERTERS),
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
        stic_plugin.revert()
        after = snapshot()
        print([key for key in original if after[key] != original[key]], stic_plugin.applied())
        print(all(a is b for a, b in zip(after["lists"][0], original["lists"][0])))
        stic_plugin.apply()  # again after a revert: wraps the originals, not the old wrappers
        print(len(stic_plugin.applied()), tuner._training_function.__wrapped__ is original["training_function"])
        """,
        STIC_PLUGIN_AUTOLOAD="0",
    )
    assert out.split("\n")[:7] == ["6 True False", "True", "True", "True", "[] []", "True", "6 True"]


def test_importing_the_formatters_first_still_registers_them():
    """stic_plugin.data.formats imports LLaMA-Factory's converter module, whose patch needs the formatters."""
    out = _python(
        """
        import stic_plugin.data.formats
        import llamafactory.data.converter as converter
        print(sorted(set(converter.DATASET_CONVERTERS) & {"llava", "stic"}))
        """
    )
    assert out.strip() == "['llava', 'stic']"
