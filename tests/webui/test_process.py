"""The STIC data tab's child process: its progress bar read from the log, its messages, start and abort."""

import sys
import time

import pytest

from stic_plugin.webui import process
from stic_plugin.webui.process import DataRun, error_line, last_progress, readable_log, running_somewhere

TQDM = (
    "[INFO|stic_plugin] 8 in total, 8 for process 0 of 1, 0 already done, 8 to do\n"
    "\rpref:   0%|          | 0/8 [00:00<?, ?image/s][INFO|stic_plugin.generation.continuous] 6 slots\n"
    "\rpref:  12%|█▎        | 1/8 [00:02<00:15,  2.20s/image]"
    "\rpref:  50%|█████     | 4/8 [00:04<00:03,  1.15image/s]"
)


def test_the_progress_bar_is_the_commands_own():
    assert last_progress(TQDM) == dict(done=4, total=8, percent=50.0, text="pref: 4/8 [00:04<00:03, 1.15image/s]")
    assert last_progress("infuse 1/4:  25%|██▌       | 2/8 [00:01<00:03,  1.90it/s]")["text"] == (
        "infuse 1/4: 2/8 [00:01<00:03, 1.90it/s]"
    )
    assert last_progress("loading the model\n") is None


def test_the_log_shows_the_last_state_of_a_rewritten_line():
    shown = readable_log(TQDM).splitlines()
    assert shown[0].startswith("[INFO|stic_plugin] 8 in total")
    assert shown[1].startswith("pref:   0%|") and shown[2].startswith("pref:  50%|")


def test_the_error_is_the_commands_own_message_or_the_end_of_a_traceback():
    log = "[INFO|x] loading\nstic-cli pref: error: no image files found in /nowhere\n"
    assert error_line(log, "pref") == "no image files found in /nowhere"
    assert error_line("Traceback (most recent call last):\n  File x\nKeyError: 'a'\n", "pref") == "KeyError: 'a'"
    assert error_line("all good\n", "pref") is None


@pytest.fixture
def python_as_stic_cli(monkeypatch):
    """The run starts this interpreter instead of stic-cli: ``start("-c", [code])``."""
    monkeypatch.setattr(process, "program", lambda: sys.executable)


def test_a_run_logs_whole_and_appends_run_after_run(tmp_path, python_as_stic_cli):
    run = DataRun()
    log = tmp_path / "out.stic" / "webui.log"
    run.start("-c", ["print('first')"], (str(tmp_path), "out"), log)
    assert run.wait(60) == 0 and not run.running and run.raw_log() == "first\n"
    run.start("-c", ["import sys; print('second'); sys.exit(3)"], (str(tmp_path), "out"), log)
    assert run.wait(60) == 3 and run.raw_log() == "second\n"  # this run's part
    text = log.read_text()
    assert text.count("===== ") == 2 and "first\n" in text and "second\n" in text


def test_abort_stops_the_run_and_its_children(tmp_path, python_as_stic_cli):
    run = DataRun()
    code = (
        "import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(child.pid, flush=True); time.sleep(60)"
    )
    run.start("-c", [code], (str(tmp_path), "out"), tmp_path / "webui.log")
    assert run.running and running_somewhere()
    with pytest.raises(RuntimeError, match="in progress"):
        run.start("-c", ["pass"], (str(tmp_path), "out"), tmp_path / "webui.log")
    while not run.raw_log().strip():
        assert run.wait(0.1) is None
    child = int(run.raw_log())
    run.abort()
    assert run.wait(30) is not None and run.aborted and not running_somewhere()
    deadline = time.time() + 30
    while _alive(child):
        assert time.time() < deadline, "the run's child process is still there"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


SAYS_HOW_FAR = (
    "import time\ntry:\n    print('started', flush=True); time.sleep(60)\n"
    "except KeyboardInterrupt:\n    print('2 records written; the same command resumes', flush=True)\n"
)


def test_abort_is_a_ctrl_c_first_then_a_sigterm_for_a_run_that_ignores_it(tmp_path, python_as_stic_cli, monkeypatch):
    monkeypatch.setattr(process, "ABORT_GRACE_SECONDS", 1)
    says_how_far = SAYS_HOW_FAR
    ignores = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('started', flush=True); "
    ignores += "time.sleep(60)"
    for code, expected in ((says_how_far, 0), (ignores, -15)):
        run = DataRun()
        run.start("-c", [code], (str(tmp_path), "out"), tmp_path / "webui.log")
        while "started" not in run.raw_log():
            assert run.wait(0.1) is None
        run.abort()
        assert run.wait(30) == expected and run.aborted
    assert "2 records written; the same command resumes" in (tmp_path / "webui.log").read_text()


@pytest.mark.parametrize("how", ["ignored", "blocked"])
def test_abort_is_a_ctrl_c_even_when_the_web_ui_ignores_or_blocks_sigint(
    tmp_path, python_as_stic_cli, monkeypatch, how
):
    """`nohup llamafactory-cli webui &` starts the web UI with SIGINT ignored, which children inherit; a SIGINT
    blocked in the thread that starts the command is inherited too."""
    import signal

    monkeypatch.setattr(process, "ABORT_GRACE_SECONDS", 10)
    if how == "ignored":
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        run = DataRun()
        run.start("-c", [SAYS_HOW_FAR], (str(tmp_path), "out"), tmp_path / "webui.log")
    finally:
        if how == "ignored":
            signal.signal(signal.SIGINT, previous)
        else:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    while "started" not in run.raw_log():
        assert run.wait(0.1) is None
    run.abort()
    assert run.wait(30) == 0  # it ended by itself after Ctrl-C, not by SIGTERM (-15)
    assert "2 records written; the same command resumes" in (tmp_path / "webui.log").read_text()


def test_the_web_ui_listens_on_this_machine_unless_gradio_server_name_says_otherwise(monkeypatch, capsys):
    """Before: on every interface (LLaMA-Factory's 0.0.0.0), where anyone on the network could start a command."""
    import stic_plugin

    stic_plugin.apply()
    from llamafactory.webui import interface

    launched = []

    class WebUI:
        def queue(self):
            return self

        def launch(self, **keys):
            launched.append(keys["server_name"])

    monkeypatch.setattr(interface, "create_ui", WebUI)
    monkeypatch.setattr(interface, "fix_proxy", lambda **keys: None)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_IPV6", raising=False)
    interface.run_web_ui()
    said = capsys.readouterr().out
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # the user's choice stands
    interface.run_web_ui()
    assert launched == ["127.0.0.1", "0.0.0.0"]
    assert "STIC plugin: the web UI listens on 127.0.0.1, this machine only; set GRADIO_SERVER_NAME=0.0.0.0" in said
    assert "STIC plugin" not in capsys.readouterr().out
