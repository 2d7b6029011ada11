"""What ``stic-cli`` shows on the console, and the log file that keeps everything.

At the default verbosity the console shows the progress bar, the warnings that matter (this plugin's, and
errors of any library) and the summary; transformers' configuration dumps, tokenizer listings, deprecation
warnings and LLaMA-Factory's notes go to ``DATASET_DIR/NAME.stic/log-RANK-of-WORLD.txt`` only. With
``verbose=true`` the console shows everything, as the libraries print it (the log file still keeps this
plugin's lines).
"""

import contextlib
import logging
import os
import sys
from pathlib import Path

CONSOLE_FORMAT = "[%(levelname)s|%(name)s] %(message)s"
FILE_FORMAT = "%(asctime)s [%(levelname)s|%(name)s] %(message)s"
# Environment read by the libraries when they set up their output: restored when the command ends.
QUIET_ENVIRONMENT = {
    "LLAMAFACTORY_VERBOSITY": "WARN",  # read when LLaMA-Factory parses arguments: keeps transformers' handler off
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
CONSOLE = {"console": True}  # logger.info(..., extra=CONSOLE): an INFO line shown at the default verbosity too


class LogFile(logging.FileHandler):
    """The log file. A write that fails (a disk that fills) stops it with one line on the console, instead of
    logging's "--- Logging error ---" and a traceback for every line after."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            error = sys.exc_info()[1]
            reason = getattr(error, "strerror", None) or error
            sys.stderr.write(f"stic-cli: cannot write the log file {self.baseFilename} ({reason}); it stops here\n")
            stream, self.stream = self.stream, None  # what it holds unwritten cannot be written either
            with contextlib.suppress(OSError):
                stream.close()


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "console", False):
            return True
        if record.name.startswith("stic_plugin"):
            return record.levelno >= logging.WARNING
        return record.levelno >= logging.ERROR


def log_path(cfg) -> Path | None:
    """This process's log file in the command's output folder; None for commands without one."""
    if hasattr(cfg, "log_file"):  # a command that names its own (stic-cli eval)
        return cfg.log_file()
    name = getattr(cfg, "predictions_name", None) or getattr(cfg, "dataset_name", None)
    if name is None or not hasattr(cfg, "dataset_dir"):
        return None
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    if not (rank.isdigit() and world.isdigit()):
        return None  # the run itself says what is wrong with them
    return Path(cfg.dataset_dir) / f"{name}.stic" / f"log-{int(rank):05d}-of-{int(world):05d}.txt"


@contextlib.contextmanager
def console(cfg, command_line: str):
    """Route the logging of one command: the console (quiet unless ``cfg.verbose``) and the log file."""
    verbose = bool(getattr(cfg, "verbose", True))
    root = logging.getLogger()
    saved_level = root.level
    root.setLevel(logging.INFO)
    handlers = []
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    if not verbose:
        to_console.addFilter(_ConsoleFilter())
    handlers.append(to_console)
    path = log_path(cfg)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            to_file = LogFile(path, encoding="utf-8")
            to_file.setFormatter(logging.Formatter(FILE_FORMAT))
            handlers.append(to_file)
        except OSError:
            path = None  # an unwritable output folder: the run says so itself
    for handler in handlers:
        root.addHandler(handler)
    logging.getLogger("stic_plugin").info("%s", command_line)
    restore = contextlib.ExitStack()
    if not verbose:
        restore.enter_context(_quiet_libraries())
    try:
        yield path
    finally:
        restore.close()
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved_level)


@contextlib.contextmanager
def _quiet_libraries():
    """transformers', LLaMA-Factory's and Python's warnings into the log (through the root logger), not the
    console; the libraries' own progress bars off. Everything as it was afterwards."""
    import transformers.utils.logging as hf_logging
    from llamafactory.extras import logging as lf_logging

    lf_logging.get_logger("stic_plugin")  # LLaMA-Factory sets up its logger now, with its usual level
    environment = {key: os.environ.get(key) for key in QUIET_ENVIRONMENT}
    os.environ.update(QUIET_ENVIRONMENT)
    lf_root = logging.getLogger("llamafactory")
    lf_state = (lf_root.level, list(lf_root.handlers), lf_root.propagate)
    hf_state = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    for handler in lf_state[1]:
        lf_root.removeHandler(handler)
    lf_root.setLevel(logging.INFO)
    lf_root.propagate = True
    hf_logging.set_verbosity_info()
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        hf_logging.set_verbosity(hf_state[0])
        hf_logging.disable_propagation()
        hf_logging.enable_default_handler()
        if hf_state[1]:
            hf_logging.enable_progress_bar()
        lf_root.setLevel(lf_state[0])
        lf_root.propagate = lf_state[2]
        for handler in lf_state[1]:
            lf_root.addHandler(handler)
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
