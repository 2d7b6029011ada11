"""stic-cli's entry point: errors end with a message and exit status 2, not a traceback; Ctrl-C with one line
and exit status 130."""

import json
import subprocess
import sys

import pytest

from helpers import ctrl_c_as_in_a_terminal, subprocess_env


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


# stic-cli as its console script starts it, with the interpreter's start-up (site, and the plugin's start-up hook)
# run by hand, and a Ctrl-C (SIGINT) sent at a fixed point: when the module named first is imported.
STARTING = """
import os, signal, sys

class CtrlCOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == TARGET:
            os.kill(os.getpid(), signal.SIGINT)
        return None

TARGET = sys.argv.pop(1)
sys.argv[0] = os.path.join(os.path.dirname(sys.executable), "stic-cli")
sys.meta_path.insert(0, CtrlCOnImport())
import site
site.main()
from stic_plugin.commands.cli import main
sys.exit(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "moment",
    [
        "stic_plugin.patches",  # the start-up hook, while the interpreter starts
        "stic_plugin.commands.cli",  # the console script's import
        "stic_plugin.commands.config",  # the command line's keys, read in main
    ],
)
def test_ctrl_c_while_stic_cli_starts_is_one_line_and_exit_status_130(tmp_path, moment):
    script = tmp_path / "start.py"
    script.write_text(STARTING)
    result = subprocess.run(
        [sys.executable, "-S", str(script), moment, "pref", f"dataset_dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("stic-cli")
    assert "interrupted" in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_stic_cli_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path):
    """A command started in the background (`nohup stic-cli ... &`) is not stopped by a Ctrl-C in its terminal."""
    import signal

    script = tmp_path / "start.py"
    script.write_text(STARTING)
    result = subprocess.run(
        [sys.executable, "-S", str(script), "stic_plugin.commands.config", "pref", f"dataset_dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert result.returncode == 2 and "interrupted" not in result.stderr  # it went on, to its configuration error
    assert "stic-cli pref: error:" in result.stderr


MISSING_INPUTS = (  # (command line, its message): each a mistake a user makes in the input's place
    (["pref", "image_dir=no_images"], "`image_dir`: {cwd}/no_images is not a folder"),
    (["pref", "image_dir=null", "image_list=no_list.txt"], "`image_list`: {cwd}/no_list.txt is not a file"),
    (["infuse", "llava_file=no_mix.json"], "`llava_file`: {cwd}/no_mix.json is not a file"),
    (["dar", "dataset=no_questions"], "data/dataset_info.json has no dataset `no_questions`; its datasets: mine"),
)


@pytest.mark.slow
def test_a_missing_input_is_said_before_torch_transformers_or_llamafactory_are_imported(tmp_path):
    """As fast as a misspelled key (before: a missing image_dir took 6.6 s, a dataset not in dataset_info.json 10 s,
    the time of those imports), whatever the machine's speed: none of them is imported when the message comes."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text('{"mine": {"file_name": "mine.json"}}')
    code = (
        "import sys, json\n"
        "from stic_plugin.commands import cli\n"
        "codes = [cli.main(argv + ['model_name_or_path=m', 'template=llava']) for argv in json.loads(sys.argv[1])]\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'llamafactory', 'datasets') if m in sys.modules)\n"
        "print(json.dumps([codes, heavy]))\n"
    )
    argvs = json.dumps([argv for argv, _ in MISSING_INPUTS])
    result = subprocess.run(
        [sys.executable, "-c", code, argvs],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [[2] * len(MISSING_INPUTS), []]
    for argv, message in MISSING_INPUTS:
        assert f"stic-cli {argv[0]}: error: {message.format(cwd=tmp_path)}" in result.stderr


def test_a_log_file_that_cannot_be_written_says_so_once_not_a_traceback_per_line(capsys):
    """Before: a disk that filled while the model loaded gave 22 "--- Logging error ---" tracebacks."""
    import logging

    from stic_plugin.commands.console import LogFile

    handler = LogFile("/dev/full")  # every write fails: "No space left on device"
    logger = logging.getLogger("stic_plugin.test_full_disk")
    logger.addHandler(handler)
    try:
        for index in range(5):
            logger.warning("line %d", index)
    finally:
        logger.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err == "stic-cli: cannot write the log file /dev/full (No space left on device); it stops here\n"
