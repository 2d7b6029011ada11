"""The ``stic-cli`` child process of the STIC data tab: one at a time, its whole log in a file, the command's
own progress bar read back from that log, and an abort that leaves what was written (the same command
resumes it)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

# tqdm's line: "pref:  38%|███▊      | 3/8 [00:05<00:08,  1.60image/s]" (the rate may be "1.60s/image" or "?it/s")
PROGRESS = re.compile(
    r"(?P<desc>[^\r\n|%]*?):\s*(?P<percent>\d+)%\|[^|\r\n]*\|\s*(?P<done>\d+)/(?P<total>\d+)"
    r"\s*\[(?P<elapsed>[^<\]\r\n]*)<(?P<left>[^,\]\r\n]*),\s*(?P<rate>[^\]\r\n]*)\]"
)
ABORT_GRACE_SECONDS = 5  # for each signal in turn
# The command runs through this: a web UI started in the background (`nohup ... &`) ignores SIGINT, and
# its children would inherit that, so Abort could not stop a command the way Ctrl-C does (a SIGINT blocked in the
# starting thread is inherited the same way). exec keeps the default disposition and the unblocked mask set here,
# and Python then turns SIGINT into KeyboardInterrupt again.
_WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); os.execvp(sys.argv[1], sys.argv[1:])"
)
_RUNS = weakref.WeakSet()  # every DataRun of this process (one per web UI)


def listen_on_this_machine_unless_told() -> str | None:
    """Where the web UI will listen, said on the console: this machine only (127.0.0.1, or ::1 with GRADIO_IPV6),
    unless GRADIO_SERVER_NAME names an address. LLaMA-Factory's own default is every interface, and the STIC
    data tab starts commands: anyone on the network could then start one, one that runs a model folder's code
    among them. Returns the address set here, None where the user chose one."""
    from llamafactory.extras.misc import is_env_enabled

    if os.environ.get("GRADIO_SERVER_NAME"):
        return None
    address = "::1" if is_env_enabled("GRADIO_IPV6") else "127.0.0.1"
    os.environ["GRADIO_SERVER_NAME"] = address
    print(
        f"STIC plugin: the web UI listens on {address}, this machine only; set GRADIO_SERVER_NAME=0.0.0.0 to "
        "open it to the network (whoever reaches it can start training and STIC data commands)",
        flush=True,
    )
    return address


def running_somewhere() -> bool:
    """Whether a STIC data run of this process is in progress (the web UI then starts no training)."""
    return any(run.running for run in list(_RUNS))


def program() -> str:
    """stic-cli as the web UI runs it: from PATH, else beside this interpreter (a virtual environment)."""
    beside = Path(sys.executable).parent / "stic-cli"
    return shutil.which("stic-cli") or (str(beside) if beside.exists() else "stic-cli")


def readable_log(raw: str) -> str:
    """The log as a terminal shows it: of the lines a progress bar rewrote with carriage returns, the last."""
    lines = []
    for line in raw.split("\n"):
        parts = [part for part in line.split("\r") if part.strip()]
        lines.append(parts[-1] if parts else line.strip("\r"))
    return "\n".join(lines)


def last_progress(raw: str) -> dict | None:
    """The last state of the command's progress bar in its log: done, total, percent and tqdm's own text."""
    found = None
    for found in PROGRESS.finditer(raw):  # noqa: B007 - the last one is wanted
        continue
    if found is None:
        return None
    done, total = int(found["done"]), int(found["total"])
    text = f"{found['desc'].strip()}: {done}/{total} [{found['elapsed']}<{found['left']}, {found['rate'].strip()}]"
    return dict(done=done, total=total, percent=100.0 * done / total if total else 0.0, text=text)


def error_line(log: str, action: str) -> str | None:
    """The command's own error message (``stic-cli ACTION: error: ...``), or the last line of a traceback."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    prefix = f"stic-cli {action}: error:"
    for line in reversed(lines):
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Traceback"):
            return lines[-1]
    return None


class DataRun:
    """The STIC data tab's child process; one per web UI, as LLaMA-Factory's Runner holds one trainer."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.action: str | None = None
        self.args: list[str] = []
        self.location: tuple[str, str] | None = None  # (folder, name) of what the run writes
        self.log_path: Path | None = None
        self._offset = 0  # where this run's part of the log file starts
        self.aborted = False
        self._lock = threading.Lock()
        _RUNS.add(self)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, action: str, args: list[str], location: tuple[str, str], log_path: Path, env=None) -> None:
        """Run ``stic-cli ACTION ARGS`` in a child process (its own process group), output appended to the log."""
        with self._lock:
            if self.running:
                raise RuntimeError("a stic-cli run is in progress")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            child_env = dict(os.environ if env is None else env)
            child_env["PYTHONUNBUFFERED"] = "1"  # every line in the log as soon as it is printed
            command = program()
            if shutil.which(command) is None:  # said here, as a failed start, not in the child's log
                raise FileNotFoundError(f"stic-cli cannot be run: {command} is not an executable file")
            argv = [sys.executable, "-c", _WITH_CTRL_C, command, action, *args]
            with open(log_path, "ab") as log:
                log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} stic-cli {action}\n".encode())
                log.flush()
                self._offset = log.tell()
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    start_new_session=True,  # abort() stops the command and anything it started
                )
            self.action, self.args, self.location, self.log_path = action, list(args), location, log_path
            self.aborted = False

    def abort(self) -> None:
        """Stop the run as Ctrl-C does: SIGINT to its process group (the command then says how many
        records it wrote and that the same command resumes), SIGTERM if it is still there after a grace
        period, then SIGKILL. Each record is one whole line written at once, so the records kept are whole,
        and the same command goes on from them."""
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None:
                return
            self.aborted = True

        def stop():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    return
                try:
                    process.wait(timeout=ABORT_GRACE_SECONDS)
                    return
                except subprocess.TimeoutExpired:
                    continue

        threading.Thread(target=stop, daemon=True).start()

    def wait(self, seconds: float) -> int | None:
        """The exit status once the run has ended, waiting at most ``seconds``; None while it runs."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def raw_log(self) -> str:
        """This run's output so far, as written."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode("utf-8", errors="replace")
