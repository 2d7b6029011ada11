"""Running the shipped commands as steps of an experiment: each in its own process, logged, cached.

A step runs a command line (``stic-cli ...`` or ``llamafactory-cli train ...``) with its output going
to a log file; the progress bars of the command are shown on the console as they move. A finished step
leaves a stamp holding what it was run with, so a rerun with the same inputs skips it.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

_PROGRESS = re.compile(rb"\d+%\|")  # a tqdm bar


class StepFailed(RuntimeError):
    pass


def fingerprint(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tool(name: str) -> str:
    """A command of this environment (beside the running interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


class Steps:
    """Steps of one experiment under ``root``: logs in ``root/logs``, stamps in ``root/.stamps``."""

    def __init__(self, root: Path, env: dict, console=sys.stdout):
        self.root = root
        self.env = env
        self.console = console
        self.logs = root / "logs"
        self.stamps = root / ".stamps"
        self.seconds: dict[str, float] = {}

    def _stamp(self, name: str) -> Path:
        return self.stamps / f"{name.replace('/', '.')}.json"

    def done(self, name: str, inputs) -> bool:
        stamp = self._stamp(name)
        return stamp.is_file() and json.loads(stamp.read_text()).get("inputs") == fingerprint(inputs)

    def mark_done(self, name: str, inputs, seconds: float) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        self._stamp(name).write_text(json.dumps({"inputs": fingerprint(inputs), "seconds": seconds}))

    def run(self, name: str, command: list[str], inputs=None, outputs: list[Path] = ()) -> bool:
        """Run ``command`` unless a finished run of the same inputs is stamped. True when it ran.

        ``outputs`` are removed before a run (a half-written result of a killed run is never resumed
        with other inputs)."""
        inputs = {"command": command, "inputs": inputs}
        if self.done(name, inputs):
            self.seconds.setdefault(name, json.loads(self._stamp(name).read_text())["seconds"])
            return False
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name.replace('/', '.')}.log"
        self._print(f"  {name}: {' '.join(self._short(part) for part in command)}")
        started = time.time()
        code = self._stream(command, log_path)
        seconds = time.time() - started
        if code != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            raise StepFailed(f"{name} failed (exit {code}); the end of {log_path}:\n" + "\n".join(tail))
        self.seconds[name] = seconds
        self.mark_done(name, inputs, seconds)
        self._print(f"\r  {name}: done in {seconds:.0f} s{' ' * 40}")
        return True

    def _stream(self, command: list[str], log_path: Path) -> int:
        """Run with stdout and stderr into the log; a progress bar's latest state is echoed on one line."""
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)
            pending = b""
            for chunk in iter(lambda: process.stdout.read1(4096), b""):
                log.write(chunk)
                pending = (pending + chunk)[-4096:]
                *complete, pending = re.split(rb"[\r\n]", pending)
                bars = [part for part in complete if _PROGRESS.search(part)]
                if bars and self.console.isatty():
                    self.console.write("\r    " + bars[-1].decode(errors="replace").strip()[:110])
                    self.console.flush()
            return process.wait()

    def _short(self, part: str) -> str:
        """A command-line part for the console: the tool's name, paths from the experiment folder on."""
        path = Path(part)
        if path.is_absolute() and path.parent == Path(sys.executable).parent:
            return path.name
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return part

    def _print(self, text: str) -> None:
        print(text, file=self.console, flush=True)


def offline_env(root: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HOME", str(root / ".cache" / "huggingface"))
    env.setdefault("MPLCONFIGDIR", str(root / ".cache" / "matplotlib"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("TRANSFORMERS_VERBOSITY", "warning")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
