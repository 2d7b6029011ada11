"""stic-cli's entry point: errors end with a message and exit status 2, not a traceback."""


def test_a_cache_too_large_for_the_gpu_is_a_message_not_a_traceback(monkeypatch, capsys, tmp_path):
    from stic_plugin.commands import cli, pref
    from stic_plugin.generation.continuous import CacheTooLarge

    def run_pref(cfg):
        raise CacheTooLarge(
            "the key/value cache for 256 sequences of up to 2048 tokens needs 256.0 GiB and "
            "60.0 GiB are free: lower batch_size or max_new_tokens"
        )

    monkeypatch.setattr(pref, "run_pref", run_pref)
    code = cli.main(
        ["pref", "model_name_or_path=m", "template=llava", f"image_dir={tmp_path}", f"dataset_dir={tmp_path}"]
    )
    assert code == 2
    assert "stic-cli pref: error: the key/value cache for 256 sequences" in capsys.readouterr().err


def test_the_default_console_is_quiet_and_the_log_file_keeps_everything(tiny, tmp_path, capsys):
    """Before: 330 lines for 8 images (configuration dumps, AddedToken listings, deprecation warnings)."""
    import logging

    from stic_plugin.commands import cli

    from helpers import pref_args

    data = tmp_path / "data"
    code = cli.main(pref_args(tiny, tiny["images"], data, max_samples=2)[1:])
    out, err = capsys.readouterr()
    assert code == 0
    for noise in ("Model config", "AddedToken", "deprecated", "loading configuration file", "Loading weights"):
        assert noise not in err, noise
    assert "2 in total, 2 for process 0 of 1, 0 already done, 2 to do" in err  # what a resume picks up
    log = data / "stic_pref.stic" / "log-00000-of-00001.txt"
    assert f"full log:         {log}" in out and "stic-cli pref: " in out
    text = log.read_text()
    assert "stic-cli pref model_name_or_path=" in text
    assert "Model config" in text and "llamafactory.model.loader" in text  # transformers' and LLaMA-Factory's
    # the libraries' own output is as it was once the command ends
    assert logging.getLogger("transformers").propagate is False
    assert logging.getLogger("llamafactory").handlers


def test_verbose_leaves_the_libraries_console_output_alone(tiny, tmp_path):
    import logging

    from stic_plugin.commands.config import PrefConfig, load_config
    from stic_plugin.commands.console import console

    keys = [f"model_name_or_path={tiny['tiny-llava']}", "template=llava", f"image_dir={tmp_path}"]
    for verbose, propagate in (("true", False), ("false", True)):
        config = load_config(PrefConfig, None, [*keys, f"dataset_dir={tmp_path}", f"verbose={verbose}"])
        with console(config, "stic-cli pref"):
            assert logging.getLogger("transformers").propagate is propagate  # quiet: into the log file


def test_help_is_plain_text_with_what_each_command_needs_and_examples_that_parse(capsys, monkeypatch):
    """Before: RST backticks, no example, nothing saying that pref needs image_dir or image_list."""
    import shlex

    import pytest

    from stic_plugin.commands import cli
    from stic_plugin.commands.config import load_config

    from helpers import REPO

    monkeypatch.chdir(REPO)  # the examples name the shipped recipes
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "`" not in text and "None" not in text, name
        assert "examples:\n  " in text and cli.NEEDS[name] in " ".join(text.split())
        for example in cli.EXAMPLES[name]:
            assert example in text
            words = shlex.split(example.replace("$(which stic-cli)", "stic-cli"))
            words = words[words.index("stic-cli") + 2 :]  # after "stic-cli NAME"
            if words and words[0].startswith("--"):  # an option of the command (stic-cli eval --compare A B)
                assert cli._parser().parse_args([name, *words]).compare == words[1:]
                continue
            load_config(cli.config_class(name), *cli.split_arguments(name, words))  # keys and values valid
    with pytest.raises(SystemExit):
        cli.main(["pref", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one of image_dir (a folder, searched recursively) or image_list (a file of image paths)" in text
