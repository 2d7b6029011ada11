"""How stic-cli's processes end: on Ctrl-C with one line, and its engine's processes with it.

Ctrl-C while stic-cli starts (the interpreter, the command's imports), before the command can say more, and again
once it has said its line, ends it at once with one line and exit status 130 (``exit_on_ctrl_c``).

vLLM's engine runs in processes of its own (EngineCore and its workers) that do not watch the command: a command
killed (SIGKILL, the out-of-memory killer) would leave them running, holding their memory; and a Ctrl-C reaches
every process of the terminal's foreground group, so they would stop on their own, racing the command's orderly
shutdown of them, and print tracebacks. Started within ``following_this_process()``, each such process (and every
process it starts in turn) leaves the terminal's process group, so that only the command sees Ctrl-C and stops
them in order, and gets SIGTERM (their own orderly shutdown) when its parent ends: Linux's parent-death signal.
One whose orderly shutdown does not end it within ``SHUTDOWN_GRACE_SECONDS`` (a process stuck in it, or one that
ignores SIGTERM) is then killed by a thread of its own that watches the parent.
A process started by fork is set up by an at-fork hook; one started by spawn (a new interpreter) by the start-up
hook (``_autoload``), which reads ``FOLLOW_PARENT_ENV``.

Importing this module costs nothing (it is read at interpreter start).
"""

import contextlib
import os
import signal
import sys
import threading
import time

FOLLOW_PARENT_ENV = "STIC_FOLLOW_PARENT"  # the process ID of the parent a new process ends with
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# After its parent has ended, the seconds a process has for its own orderly shutdown before it is killed. vLLM's
# engine processes shut down in a few; one was seen still running a minute after its command was killed, on a
# busy machine, and would have kept its memory for good.
SHUTDOWN_GRACE_SECONDS = 10.0
_hooked = False


def running_stic_cli() -> bool:
    """Whether this process is the stic-cli program (not a test or a web UI calling its entry point)."""
    return os.path.basename((getattr(sys, "argv", None) or [""])[0]) == "stic-cli"


def ctrl_c_ignored() -> bool:
    """A process started in the background (``nohup ... &``) ignores Ctrl-C, and keeps doing so."""
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def exit_on_ctrl_c(line: str | None) -> None:
    """From now on, Ctrl-C ends this process at once: ``line`` (if any) on stderr, exit status 130."""

    def interrupted(signum, frame):
        if line:
            os.write(2, f"\n{line}\n".encode())
        os._exit(130)

    if not ctrl_c_ignored():
        signal.signal(signal.SIGINT, interrupted)


def follow_parent(expected_parent: int) -> None:
    """In a new process: leave the terminal's process group, and get SIGTERM when the parent ends."""
    import ctypes

    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    # A blocked or ignored SIGTERM survives fork and exec: a process started from one that blocked or ignored it
    # (a launcher, a library's thread) would never get the parent-death signal.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        with contextlib.suppress(ValueError):  # only the main thread sets handlers
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if not alive(expected_parent):  # it ended before the line above: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(
        target=_killed_when_orphaned, args=(expected_parent,), name="stic-follow-parent", daemon=True
    ).start()
    os.environ[FOLLOW_PARENT_ENV] = str(os.getpid())  # the processes this one starts follow it in turn


def _killed_when_orphaned(parent: int) -> None:
    """Once ``parent`` has ended, and this process's orderly shutdown (the parent-death SIGTERM) has had its
    grace period, SIGKILL to this process: whatever that shutdown does, it ends."""
    while alive(parent):
        time.sleep(1.0)
    time.sleep(SHUTDOWN_GRACE_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie. A parent that ended just before its child set the parent-death signal
    is a zombie until someone reaps it (a container's first process may never do so), and still takes signals."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc to ask: it took the signal above, so count it as running
        return True
    return state not in ("Z", "X")


def follow_if_asked() -> None:
    """The start-up hook and the at-fork hook: follow the parent that ``FOLLOW_PARENT_ENV`` names, if any."""
    parent = os.environ.get(FOLLOW_PARENT_ENV, "")
    if parent.isdigit() and sys.platform == "linux":
        follow_parent(int(parent))
        _hook_forks()


def _hook_forks() -> None:
    global _hooked
    if not _hooked:
        os.register_at_fork(after_in_child=follow_if_asked)
        _hooked = True


@contextlib.contextmanager
def following_this_process():
    """Processes started inside (and the ones they start) end with this process and stay out of Ctrl-C.

    Linux only, and from the main thread only: the parent-death signal comes when the *thread* that started a
    process ends."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        yield
        return
    _hook_forks()
    before = os.environ.get(FOLLOW_PARENT_ENV)
    os.environ[FOLLOW_PARENT_ENV] = str(os.getpid())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(FOLLOW_PARENT_ENV, None)
        else:
            os.environ[FOLLOW_PARENT_ENV] = before
