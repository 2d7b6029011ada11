"""The collector while a command starts (stic_plugin/heap.py): off until the generator is made, then on with what
exists frozen; at the command's end on and unfrozen; left alone where the caller manages it."""

import gc

import pytest

from stic_plugin import heap
from stic_plugin.generation import base
from stic_plugin.generation.base import Generation, Generator


@pytest.fixture(autouse=True)
def collector_as_found():
    """Each test starts with the collector on and nothing frozen (an engine of an earlier test in this process
    may have frozen its heap), and leaves it so, whatever it asserted."""
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    gc.enable()


def test_off_while_starting_then_on_with_the_start_frozen_then_as_before():
    held = [[] for _ in range(10)]  # what the process held before the command
    with heap.command_start():
        assert not gc.isenabled()
        frozen_at_start = gc.get_freeze_count()
        assert frozen_at_start >= len(held)  # what the process held: out of the command's collections
        loaded = [[] for _ in range(1000)]  # what the start makes: lists are tracked by the collector
        heap.start_is_over()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_at_start + len(loaded)
        heap.start_is_over()  # a second generator (bench): nothing more
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_start_s_garbage_is_collected_not_frozen():
    import weakref

    class Node:
        pass

    with heap.command_start():
        cycle = Node()
        cycle.me = cycle  # garbage that only the collector frees
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None  # the collector is off
        heap.start_is_over()
        assert gone() is None


def test_a_process_forked_while_starting_has_the_collector_on():
    import os

    with heap.command_start():
        child = os.fork()
        if child == 0:  # vLLM's engine process, say
            os._exit(0 if gc.isenabled() else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not gc.isenabled()  # this process still starts


def test_a_start_that_never_ends_has_the_collector_back_on_after_the_longest_start():
    import time

    assert heap.pause(longest=0.2)
    deadline = time.monotonic() + 30  # the outcome awaited, with room for a busy machine
    while not gc.isenabled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc.isenabled() and gc.get_freeze_count() > 0
    heap.release()


def test_a_command_that_made_no_generator_ends_with_the_collector_on_and_nothing_frozen():
    with pytest.raises(RuntimeError):
        with heap.command_start():
            assert not gc.isenabled()
            raise RuntimeError("the model did not load")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_outside_a_command_making_a_generator_changes_nothing():
    heap.start_is_over()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_caller_that_turned_the_collector_off_or_froze_objects_keeps_it_so():
    gc.disable()
    with heap.command_start():
        heap.start_is_over()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    assert not gc.isenabled()
    gc.enable()

    gc.freeze()
    frozen = gc.get_freeze_count()
    with heap.command_start():
        assert gc.isenabled()
        heap.start_is_over()
        assert gc.get_freeze_count() == frozen
    assert gc.isenabled() and gc.get_freeze_count() == frozen


class Recorder(Generator):
    """Records the collector's state when it is built and while it generates."""

    seen: dict = {}

    def __init__(self, settings):
        Recorder.seen["built"] = gc.isenabled()

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        Recorder.seen["generating"] = (gc.isenabled(), gc.get_freeze_count() > 0)
        for request in requests:  # the prompt's last words: the preferred and the dispreferred texts differ
            yield request, Generation(" ".join(request.messages[-1]["content"].split()[-3:]), 3, False)


def test_stic_cli_builds_its_generator_with_the_collector_off_and_generates_with_it_on(stic, tiny, tmp_path):
    from helpers import pref_args

    Recorder.seen = {}
    base.register_engine("recorder", Recorder)
    try:
        result = stic(*pref_args(tiny, tiny["images"], tmp_path / "data", engine="recorder", max_samples=2))
    finally:
        base.unregister_engine("recorder")
    assert result.returncode == 0, result.stderr[-2000:]
    assert Recorder.seen == {"built": False, "generating": (True, True)}
    assert gc.isenabled() and gc.get_freeze_count() == 0  # after the command


def test_training_processes_are_llamafactory_cli_train_and_its_torchrun_workers():
    from stic_plugin._autoload import training_process

    assert training_process(["/env/bin/llamafactory-cli", "train", "stage1.yaml"])
    assert training_process(["/env/bin/lmf", "train", "stage1.yaml"])
    assert training_process(["/env/lib/python3.11/site-packages/llamafactory/launcher.py", "stage1.yaml"])
    assert not training_process(["/env/bin/llamafactory-cli", "webui"])
    assert not training_process(["/env/bin/stic-cli", "pref"])  # the command pauses it itself (command_start)
    assert not training_process(["-c"])
    assert not training_process(["/env/bin/llamafactory-cli", "train", "stage1.yaml"], {"USE_V1": "1"})  # no tuner


@pytest.mark.slow
def test_a_training_process_imports_without_the_collector_and_trains_with_it(tmp_path):
    """A process started as ``llamafactory-cli train``: the start-up hook turns the collector off; importing
    LLaMA-Factory's tuner (what the command does before it runs the training) turns it back on, with the
    imports frozen."""
    import subprocess
    import sys

    script = tmp_path / "llamafactory-cli"
    script.write_text(
        "import gc\n"
        "print(gc.isenabled())\n"
        "import llamafactory.train.tuner\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 100000)\n"
    )
    ran = subprocess.run([sys.executable, str(script), "train"], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["False", "True", "True"]
