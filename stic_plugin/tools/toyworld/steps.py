"""Running the shipped commands as steps of an experiment: each in its own process, logged, cached, and run
side by side where they do not wait for each other.

A step runs a command line (``stic-cli ...`` or ``llamafactory-cli train ...``) with its output going to a
log file. A finished step leaves a stamp holding what it was run with, so a rerun with the same inputs skips
it. ``Steps.later`` runs a function on a thread once the steps it needs are done; at most ``workers``
commands run at a time.

Every command runs with the same numerical settings, whatever the machine and the caller's environment
(``PINNED``): one thread, and the same kernels for ATen, MKL and oneDNN. The numbers then do not depend on
the thread count, on the instruction set of the processor, or on which steps run side by side.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

# One thread (the work is split the same way on every machine), and the kernels every x86-64 processor of the
# last decade runs (AVX2): the results are then the same bit for bit on any such machine.
PINNED = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


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

    def __init__(self, root: Path, env: dict, workers: int = 1, console=sys.stdout):
        self.root = root
        self.env = env
        self.console = console
        self.logs = root / "logs"
        self.stamps = root / ".stamps"
        self.seconds: dict[str, float] = {}
        self._slots = threading.Semaphore(workers)
        self._print_lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=256, thread_name_prefix="step")
        self._failed: list[BaseException] = []

    def _stamp(self, name: str) -> Path:
        return self.stamps / f"{name.replace('/', '.')}.json"

    def done(self, name: str, inputs) -> bool:
        stamp = self._stamp(name)
        return stamp.is_file() and json.loads(stamp.read_text()).get("inputs") == fingerprint(inputs)

    def mark_done(self, name: str, inputs, seconds: float) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        self._stamp(name).write_text(json.dumps({"inputs": fingerprint(inputs), "seconds": seconds}))

    def later(self, function, *needs: Future, **kwargs) -> Future:
        """``function(*results of needs, **kwargs)`` on a thread, once every future in ``needs`` is done. After
        a failure nothing new starts (the steps under way finish)."""

        def call():
            values = [need.result() for need in needs]
            if self._failed:
                raise StepFailed("an earlier step failed")
            try:
                return function(*values, **kwargs)
            except BaseException as err:
                self._failed.append(err)
                raise

        return self._threads.submit(call)

    def run(self, name: str, command: list[str], inputs=None, outputs: list[Path] = ()) -> bool:
        """Run ``command`` unless a finished run of the same inputs is stamped. True when it ran.

        ``outputs`` are removed before a run (a half-written result of a killed run is never resumed
        with other inputs)."""
        inputs = {"command": command, "inputs": inputs}
        if self.done(name, inputs):
            self.seconds.setdefault(name, json.loads(self._stamp(name).read_text())["seconds"])
            return False
        with self._slots:
            if self._failed:
                raise StepFailed("an earlier step failed")
            for path in outputs:
                shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            log_path = self.logs / f"{name.replace('/', '.')}.log"
            self._print(f"  {name}: {' '.join(self._short(part) for part in command)}")
            started = time.time()
            with open(log_path, "wb") as log:
                code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=self.env).returncode
            seconds = time.time() - started
        if code != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            raise StepFailed(f"{name} failed (exit {code}); the end of {log_path}:\n" + "\n".join(tail))
        self.seconds[name] = seconds
        self.mark_done(name, inputs, seconds)
        self._print(f"  {name}: done in {seconds:.0f} s")
        return True

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
        with self._print_lock:
            print(text, file=self.console, flush=True)

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)


def offline_env(root: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HOME", str(root / ".cache" / "huggingface"))
    env.setdefault("MPLCONFIGDIR", str(root / ".cache" / "matplotlib"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("TRANSFORMERS_VERBOSITY", "warning")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(PINNED)
    return env
