"""Processes started within ``following_this_process()`` (vLLM's engine processes) leave the terminal's process
group and end when their parent ends, however it ends; so do the processes they start in turn."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

# The end of each command below: it starts ``child`` (by fork or by spawn, as vLLM does) within
# ``following_this_process()``, prints the child's report with its own process group, and waits to be killed.
MAIN = """
if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    receive, send = context.Pipe(duplex=False)
    with following_this_process():
        context.Process(target=child, args=(send,)).start()
    print(json.dumps({**receive.recv(), "group": os.getpgid(0)}), flush=True)
    time.sleep(600)
"""

# A command whose child starts a grandchild (by fork) and reports their process IDs and groups.
PARENT = (
    """
import json, multiprocessing, os, sys, time
from stic_plugin.lifetime import following_this_process

def grandchild():
    time.sleep(600)

def child(report):
    sub = multiprocessing.get_context("fork").Process(target=grandchild)
    sub.start()
    report.send(dict(child=os.getpid(), child_group=os.getpgid(0),
                     grandchild=sub.pid, grandchild_group=os.getpgid(sub.pid)))
    time.sleep(600)
"""
    + MAIN
)


def clean_env() -> dict[str, str]:
    """The environment a user's command starts with: not the variables earlier tests of this worker left in it
    (an in-process engine or Ray run sets many)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    return {key: os.environ[key] for key in keep if key in os.environ}


def ended(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (a container's first process may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def start_parent(tmp_path, script: str, method: str, **popen) -> subprocess.Popen:
    """``script`` run as a user's command (its own session, a clean environment), its report read from stdout."""
    path = tmp_path / "parent.py"
    path.write_text(script)
    return subprocess.Popen(
        [sys.executable, str(path), method],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=clean_env(),
        **popen,
    )


def all_end(pids, seconds: float) -> bool:
    """Whether every one of ``pids`` has ended within ``seconds`` (the outcome awaited, not a race)."""
    deadline = time.monotonic() + seconds
    while not all(ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return all(ended(pid) for pid in pids)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's parent-death signal")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_killed_parent_takes_its_children_and_theirs_with_it_and_ctrl_c_reaches_the_parent_only(tmp_path, method):
    parent = start_parent(tmp_path, PARENT, method)
    pids = ()
    try:
        started = json.loads(parent.stdout.readline())
        pids = (started["child"], started["grandchild"])
        # Out of the parent's group: a Ctrl-C in the terminal (SIGINT to the foreground group) reaches the parent only.
        assert started["group"] == parent.pid
        assert started["child_group"] != parent.pid and started["grandchild_group"] != parent.pid
        assert not any(ended(pid) for pid in pids)

        parent.kill()  # SIGKILL: no cleanup of its own can run
        parent.wait()
        assert all_end(pids, 60)  # they end within a second or so
    finally:
        parent.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_outside_the_block_new_processes_are_left_as_they_are(tmp_path):
    """The setting is the block's only: processes started before or after stay in the parent's group."""
    from stic_plugin.lifetime import FOLLOW_PARENT_ENV, following_this_process

    before = os.environ.get(FOLLOW_PARENT_ENV)
    with following_this_process():
        assert os.environ[FOLLOW_PARENT_ENV] == str(os.getpid())
    assert os.environ.get(FOLLOW_PARENT_ENV) == before
    after = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpgid(0))"], capture_output=True, text=True, check=True
    )
    assert int(after.stdout) == os.getpgid(0)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's parent-death signal")
def test_children_end_with_their_parent_even_when_it_was_started_with_sigterm_blocked_and_ignored(tmp_path):
    """A launcher may hand its processes a blocked or ignored SIGTERM (both survive fork and exec)."""

    def blocked_and_ignored():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    parent = start_parent(tmp_path, PARENT, "spawn", preexec_fn=blocked_and_ignored)
    pids = ()
    try:
        started = json.loads(parent.stdout.readline())
        pids = (started["child"], started["grandchild"])
        parent.kill()
        parent.wait()
        assert all_end(pids, 60)
    finally:
        for pid in pids:
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's parent-death signal")
def test_a_parent_that_ended_before_the_signal_was_set_ends_the_child_even_as_an_unreaped_zombie():
    """The race the forked grandchild above can lose: its parent dies between the fork and the ``prctl``. Unreaped,
    the parent is a zombie that still takes ``kill(pid, 0)``; made deterministic here with a zombie of our own."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"], env=clean_env())  # never waited for until the end
    try:
        deadline = time.monotonic() + 60
        while not ended(zombie.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended(zombie.pid) and os.path.exists(f"/proc/{zombie.pid}")  # a zombie, not gone
        follower = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; from stic_plugin.lifetime import follow_parent; follow_parent({zombie.pid}); "
                "time.sleep(60)",
            ],
            env=clean_env(),
            timeout=120,
        )
        assert follower.returncode == -signal.SIGTERM
    finally:
        zombie.wait()


# A command whose child's orderly shutdown never ends it (it ignores SIGTERM, as a process stuck in its shutdown
# does not end).
STUCK = (
    """
import json, multiprocessing, os, signal, sys, time
from stic_plugin.lifetime import following_this_process

def child(report):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report.send(dict(child=os.getpid()))
    time.sleep(600)
"""
    + MAIN
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="Linux's parent-death signal")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_child_that_its_orderly_shutdown_does_not_end_is_killed_after_the_grace_period(tmp_path, method):
    from stic_plugin.lifetime import SHUTDOWN_GRACE_SECONDS

    parent = start_parent(tmp_path, STUCK, method)
    child = None
    try:
        child = json.loads(parent.stdout.readline())["child"]
        parent.kill()
        parent.wait()
        killed_at = time.monotonic()
        assert all_end([child], SHUTDOWN_GRACE_SECONDS + 60)
        assert time.monotonic() - killed_at >= SHUTDOWN_GRACE_SECONDS - 1  # its orderly shutdown had its time
    finally:
        if child is not None and not ended(child):
            os.kill(child, signal.SIGKILL)
