"""Output of the generators: sharded JSON Lines that resume, and the dataset_info.json entry.

Layout in ``dataset_dir`` for a dataset named NAME::

    NAME/part-00000-of-00002.jsonl   records; one file per process, the dataset entry loads the folder
    NAME.stic/config.json            the configuration that wrote NAME/ (resume only with the same one)
    NAME.stic/skipped-*.jsonl        images skipped (bad files) or pairs dropped, with the reason
    NAME.stic/part-*.lock            held by the process writing that part (its PID and host inside)
    NAME.stats.json, NAME.*.png      summary of everything in NAME/, rewritten at the end of each process
    dataset_info.json                NAME's entry merged in; other entries kept

A record is written with one ``os.write`` of a whole line to a file opened for appending, so a killed
process leaves whole lines; a torn last line (a crash of the machine) is cut off when the run resumes.

Each process holds an exclusive lock on its part for the whole run, so a second run on the same output
stops at once instead of writing every record a second time; the processes of one torchrun job each
lock their own part.
"""

import fcntl
import glob
import json
import logging
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("stic_plugin")
SKIPPED, DROPPED = "skipped", "dropped"  # the kinds of skip-log entries: an input not usable, a result left out


class OutputBusy(ValueError):
    """Another process is writing the same output."""


class PartLock:
    """An exclusive, non-blocking lock on one output part, held until ``release`` (or the process ends).

    The file names its holder (PID, host); a holder that died leaves its name behind without the lock,
    and the next run takes the lock over, saying so."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @staticmethod
    def _holder(text: str) -> str:
        try:
            holder = json.loads(text)
            return f"process {holder['pid']} on host {holder['host']} (since {holder['started']})"
        except (ValueError, KeyError, TypeError):
            return "an unknown process"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise OutputBusy(
                f"{holder} is writing this output (lock {self.path}); a second run would write every record "
                "twice. Wait for it to finish or stop it, then run the same command again to resume."
            ) from None
        left = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if left:  # the lock is free, so its holder ended without releasing it (killed, or its machine went down)
            logger.warning("%s: taking over the lock of %s, which has ended", self.path, self._holder(left))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        _HELD.append(self)

    def busy(self) -> str | None:
        """Who holds this lock now, or None (a probe: the lock is not kept)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        finally:
            os.close(fd)  # closing drops a probe's shared lock
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty lock file: its holder ended normally
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if self in _HELD:
            _HELD.remove(self)


_HELD: list[PartLock] = []


def release_locks() -> None:
    """Release every part lock this process holds (the end of a command, however it ends)."""
    for lock in list(_HELD):
        lock.release()


def _file_mode(path: Path) -> int:
    """The mode a replaced file keeps, or a new file gets (mkstemp's own 0600 would hide it from others)."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes, temp_dir: Path | None = None) -> None:
    """Replace ``path`` at once with ``data``. The copy is written first in ``temp_dir`` (default: beside the file;
    another folder of the same file system for a file whose folder must hold nothing else), as
    ``.NAME.*.tmp``: a process killed meanwhile leaves it there (``remove_temporaries``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = path.parent if temp_dir is None else temp_dir
    temp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=temp_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock held on a side file (processes of one run, or two runs, on one folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dataset_info_file(dataset_dir: Path) -> Path:
    """The file that dataset_info.json is: itself, or where it links to (a file shared by several folders gets
    the entry, rather than the link being replaced by a copy of it). A link to nothing is an error."""
    info_path = dataset_dir / "dataset_info.json"
    if not info_path.is_symlink():
        return info_path
    target = info_path.resolve()
    if not target.is_file():
        raise ValueError(
            f"{info_path} is a link to {target}, which is not a file; point it at a dataset_info.json, or remove it"
        )
    return target


def read_dataset_info(dataset_dir: Path, name: str, entry: dict) -> dict:
    """dataset_info.json as a dict, checked: readable, and NAME free or already describing this output."""
    info_path = dataset_info_file(dataset_dir)
    if not info_path.exists():
        return {}
    try:
        info = json.loads(info_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{info_path} exists but cannot be read as JSON ({err}); fix or move it: it is never overwritten"
        ) from err
    if not isinstance(info, dict):
        raise ValueError(f"{info_path} is not a JSON object; fix or move it: it is never overwritten")
    existing = info.get(name)
    if existing is not None and (not isinstance(existing, dict) or existing.get("file_name") != entry["file_name"]):
        raise ValueError(
            f"{info_path} already has an entry `{name}` for other data ({existing!r}); choose another "
            "dataset_name: an existing entry is never replaced"
        )
    return info


def remove_temporaries(folder: Path, file_name: str) -> None:
    """Temporary copies of ``file_name`` in ``folder`` (``atomic_write_bytes``) left by a process killed while
    writing it. Only under the lock that keeps every other writer of that file away."""
    for path in folder.glob(f".{glob.escape(file_name)}.*.tmp") if folder.is_dir() else []:
        try:
            path.unlink()
            logger.info("removed %s, left by a process killed while writing %s", path, file_name)
        except OSError:
            pass


def _dataset_info_lock(info_path: Path):
    """The lock of the writers of one dataset_info.json, beside the file itself: folders that link to one
    shared file share its lock too."""
    return file_lock(info_path.parent / f".{info_path.name}.lock")


def check_dataset_info_writable(dataset_dir: Path) -> None:
    """Stop now, not after hours of generation, if dataset_info.json could not be rewritten at the end.

    Rewriting it atomically needs a new file in its folder and, where it exists, write access to the file (a
    file made immutable refuses both). Nothing is written to it here."""
    info_path = dataset_dir / "dataset_info.json"
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
        info_path = dataset_info_file(dataset_dir)
        with _dataset_info_lock(info_path):
            remove_temporaries(info_path.parent, info_path.name)
            if info_path.exists():
                with open(info_path, "a"):  # appends nothing: asks for write access only
                    pass
            fd, probe = tempfile.mkstemp(prefix=f".{info_path.name}.", suffix=".tmp", dir=info_path.parent)
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ValueError(
            f"{info_path} cannot be written ({err.strerror or err}); the dataset's entry goes there once its "
            "records are written: make it (and its folder) writable, or choose another dataset_dir"
        ) from err


def merge_dataset_info(dataset_dir: Path, name: str, entry: dict) -> None:
    """Add NAME to dataset_info.json (where it links to, if it is a link), keeping every other entry; written
    atomically."""
    info_path = dataset_info_file(dataset_dir)
    with _dataset_info_lock(info_path):
        remove_temporaries(info_path.parent, info_path.name)
        info = read_dataset_info(dataset_dir, name, entry)
        if info.get(name) == entry:
            return
        info[name] = entry
        atomic_write_text(info_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


def repair_tail(path: Path) -> None:
    """Cut a torn last line (no newline at the end) off a JSON Lines file."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def repair_part(path: Path, garbled_path: Path) -> None:
    """Make a JSON Lines file loadable again: a torn last line is cut off, and whole lines that are not JSON
    records (a garbled disk block, an edit) are moved to ``garbled_path``, each reported with its file and
    line; the file keeps every good line, in order. The repaired copy is written in ``garbled_path``'s folder:
    the file's own folder is a dataset, which LLaMA-Factory loads whole (a stray file there stops training)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn, lines = lines[-1], lines[:-1]  # after the last newline: b"" for a whole file
    good, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            if isinstance(json.loads(line), dict):
                good.append(line)
                continue
            problem = "not a JSON object"
        except ValueError as err:
            problem = f"not valid JSON: {err}"
        bad.append((number, line, problem))
    if not bad:
        repair_tail(path)
        return
    for number, _, problem in bad[:5]:
        logger.warning("%s, line %d: %s; moved to %s", path, number, problem, garbled_path)
    if len(bad) > 5:
        logger.warning("%s: %d more lines like these moved to %s", path, len(bad) - 5, garbled_path)
    garbled_path.parent.mkdir(parents=True, exist_ok=True)
    with open(garbled_path, "ab") as handle:
        handle.write(b"".join(f"# {path}, line {number}\n".encode() + line + b"\n" for number, line, _ in bad))
    atomic_write_bytes(path, b"".join(line + b"\n" for line in good), temp_dir=garbled_path.parent)
    if torn:
        logger.warning("%s: cut off a torn last line (a process ended while writing it)", path)


def read_jsonl(path: Path):
    """Whole records only: a torn or garbled line, or one that is not a JSON object, is passed over (the run
    that owns the file moves it out, ``repair_part``)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


class JsonlAppender:
    """Appends one JSON line per ``os.write`` call."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(path)
        self.path = path
        self.count = 0  # records written through this appender
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # only on a full disk or a signal; finish the line
            written += os.write(self._fd, data[written:])
        self.count += 1

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ShardedOutput:
    """The files of one generated dataset, seen from one process (``rank`` of ``world_size``)."""

    def __init__(self, dataset_dir: str, name: str, rank: int = 0, world_size: int = 1):
        self.dataset_dir = Path(dataset_dir).absolute()
        self.name = name
        self.rank, self.world_size = rank, world_size
        self.data_dir = self.dataset_dir / name
        self.meta_dir = self.dataset_dir / f"{name}.stic"
        self.config_path = self.meta_dir / "config.json"
        self.stats_path = self.dataset_dir / f"{name}.stats.json"
        part = f"part-{rank:05d}-of-{world_size:05d}.jsonl"
        self.records_path = self.data_dir / part
        self.skipped_path = self.meta_dir / f"skipped-{part}"
        self._lock = PartLock(self.meta_dir / f"part-{rank:05d}-of-{world_size:05d}.lock")
        self._records_writer: JsonlAppender | None = None

    def lock(self) -> None:
        """Hold this process's part for the run; stop if another run writes this output (any part of another
        world size, or this very part)."""
        self._lock.acquire()
        ours = f"-of-{self.world_size:05d}.lock"
        for path in sorted(self.meta_dir.glob("part-*.lock")):
            holder = None if path.name.endswith(ours) else PartLock(path).busy()
            if holder:
                self._lock.release()
                raise OutputBusy(
                    f"{holder} is writing this output with another number of processes (lock {path}); a second "
                    "run would write records twice. Wait for it to finish or stop it, then run again to resume."
                )

    def unlock(self) -> None:
        self._lock.release()

    def exists(self) -> bool:
        return self.data_dir.exists() and any(self.data_dir.iterdir())

    def foreign_files(self) -> list[Path]:
        """Files of the data folder that are not parts of this run's processes: a sibling process may open its
        part before process 0 has written the configuration."""
        if not self.data_dir.is_dir():
            return []
        ours = re.compile(rf"part-\d{{5}}-of-{self.world_size:05d}\.jsonl")
        return [path for path in self.data_dir.iterdir() if not ours.fullmatch(path.name)]

    def has_results(self) -> bool:
        """Any record, or a result dropped, written: a configuration is then bound to this output. An input
        skipped (a missing or bad file) binds nothing: it is tried again by the next run."""
        if any(path.stat().st_size > 0 for path in self.part_files()):
            return True
        return any(entry.get("kind") == DROPPED for entry in self.skipped())

    def conflict(self, fingerprint: dict, overwrite: bool, name_key: str = "dataset_name") -> str | None:
        """Why this output cannot be written with this configuration (None when it can): existing results of
        another configuration, or files this tool did not write; ``overwrite`` is the way out of both."""
        if self.data_dir.exists() and not self.data_dir.is_dir():
            return f"{self.data_dir} exists and is not a folder; choose another `{name_key}`"
        if overwrite:
            return None
        stored = json.loads(self.config_path.read_text()) if self.config_path.exists() else None
        if stored is not None and stored != fingerprint and self.has_results():
            changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
            return (
                f"{self.data_dir} was written with a different configuration (changed: {', '.join(changed)}). "
                f"Use another `{name_key}`, or overwrite=true to replace it."
            )
        if stored is None and self.foreign_files():
            return (
                f"{self.data_dir} holds files this tool did not write (no {self.config_path}). "
                f"Use another `{name_key}`, or overwrite=true to replace them."
            )
        return None

    def check_configuration(self, fingerprint: dict, overwrite: bool, name_key: str = "dataset_name") -> None:
        """Check that existing output was written by the same configuration; clear it if ``overwrite``."""
        problem = self.conflict(fingerprint, overwrite, name_key)
        if problem:
            raise ValueError(problem)
        if overwrite:
            self._clear_own_files()
        # This process's own files, under its lock: copies left by a killed rewrite removed, torn or garbled
        # lines out, so that they load again.
        self._remove_temporaries()
        self.repair(self.records_path)
        self.repair(self.skipped_path)
        if self.rank == 0:
            atomic_write_text(self.config_path, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
            for path in self.part_files():  # parts of an earlier run with another world size: nobody else repairs them
                if not path.name.endswith(f"-of-{self.world_size:05d}.jsonl"):
                    self.repair(path)

    def _remove_temporaries(self) -> None:
        """Copies of this process's files left by a process killed while rewriting one (in the output's folders:
        earlier versions wrote a part's copy beside it); process 0 also those of the configuration and of other
        world sizes' parts, which only it rewrites."""
        names = [self.records_path.name, self.skipped_path.name]
        if self.rank == 0:
            suffix = f"-of-{self.world_size:05d}.jsonl"
            names += [self.config_path.name] + [p.name for p in self.part_files() if not p.name.endswith(suffix)]
        for folder in (self.data_dir, self.meta_dir):
            for name in names:
                remove_temporaries(folder, name)

    def repair(self, path: Path) -> None:
        repair_part(path, self.meta_dir / f"garbled-{path.name}.txt")

    def _clear_own_files(self) -> None:
        """Each process removes its own files; process 0 also those of other world sizes, and the summary."""
        own = self.records_path.name
        self.records_path.unlink(missing_ok=True)
        for path in self.meta_dir.glob(f"*-{own}") if self.meta_dir.is_dir() else []:
            path.unlink(missing_ok=True)  # skipped-..., descriptions-...
        if self.rank != 0:
            return
        suffix = f"-of-{self.world_size:05d}.jsonl"
        for folder in (self.data_dir, self.meta_dir):
            for path in folder.glob("*.jsonl") if folder.is_dir() else []:
                if not path.name.endswith(suffix):
                    path.unlink(missing_ok=True)
        self.stats_path.unlink(missing_ok=True)

    def part_files(self) -> list[Path]:
        return sorted(self.data_dir.glob("*.jsonl")) if self.data_dir.is_dir() else []

    def skipped_files(self) -> list[Path]:
        return sorted(self.meta_dir.glob("skipped-*.jsonl")) if self.meta_dir.is_dir() else []

    def records(self):
        for path in self.part_files():
            yield from read_jsonl(path)

    def skipped(self):
        for path in self.skipped_files():
            yield from read_jsonl(path)

    def done_keys(self, key_of_record) -> set[str]:
        """Keys of every unit already written, or whose result was dropped, by any process of any earlier run.
        A unit skipped for its input (a missing or bad file) is not done: the next run tries it again."""
        done = {key_of_record(record) for record in self.records()}
        done.update(entry["key"] for entry in self.skipped() if entry.get("kind") == DROPPED)
        return done

    def open_skips(self, key_of_record) -> list[dict]:
        """The skip log as it stands: the last entry of each unit, less the units written since."""
        written = {key_of_record(record) for record in self.records()}
        last = {entry["key"]: entry for entry in self.skipped()}
        return [entry for key, entry in last.items() if key not in written]

    def open_writers(self) -> tuple[JsonlAppender, JsonlAppender]:
        self._records_writer = JsonlAppender(self.records_path)
        return self._records_writer, JsonlAppender(self.skipped_path)

    @property
    def written_this_run(self) -> int:
        """Records this process has written to its part since ``open_writers``."""
        writer = self._records_writer
        return writer.count if writer is not None else 0
