"""The one resumable run of ``pref``, ``infuse`` and ``dar``.

A command says what its units of work are and what becomes of them (a ``Job``); the run does the rest, the same
for every command: this process's share of the units (``todo_for_this_process``: every world_size-th, less
what any earlier run wrote or skipped), the output's lock and configuration check (``start_run``), the units
read ahead on a thread a batch at a time, one stream of requests through the engine, each ``Outcome`` written
as it comes (records to the output, skips and drops to the skip log), the progress bar, and the exit status
(``finish_run``). Ctrl-C leaves whole records on disk: ``interrupted_message`` says how many, and a rerun
resumes from them.
"""

import logging
import os
import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from ..data.output import ShardedOutput, check_dataset_info_writable, merge_dataset_info, read_dataset_info
from ..generation.base import Generation, Request
from .describer import Sampling, lazy_stream

T = TypeVar("T")
# For the kill-and-resume tests: the process kills itself (SIGKILL, as a crash or the out-of-memory killer
# does) right after writing this many records, a point that does not depend on how fast the machine is; or
# interrupts its process group (SIGINT, as Ctrl-C in a terminal does).
KILL_AFTER_RECORDS = "STIC_KILL_AFTER_RECORDS"
INTERRUPT_AFTER_RECORDS = "STIC_INTERRUPT_AFTER_RECORDS"
logger = logging.getLogger("stic_plugin")


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun or any launcher that sets RANK / WORLD_SIZE."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    return rank, world


def sample_reproducibly(items: Sequence[T], count: int | None, seed: int, purpose: str) -> list[T]:
    """``count`` items drawn with ``seed`` (all of them when count is None), in their original order."""
    if count is None or count >= len(items):
        return list(items)
    chosen = sorted(random.Random(f"stic:sample:{purpose}:{seed}").sample(range(len(items)), count))
    return [items[index] for index in chosen]


def start_run(
    cfg, name: str, fingerprint: dict, name_key: str = "dataset_name", dataset_entry: dict | None = None
) -> ShardedOutput:
    """This process's view of the output, checked against the configuration (and dataset_info.json, now
    rather than after hours of generation)."""
    rank, world = distributed_rank()
    output = ShardedOutput(cfg.dataset_dir, name, rank, world)
    if dataset_entry is not None:
        read_dataset_info(output.dataset_dir, name, dataset_entry)
        check_dataset_info_writable(output.dataset_dir)
    output.lock()  # held until finish_run, or the end of the command
    output.check_configuration(fingerprint, cfg.overwrite, name_key)
    ACTIVE_OUTPUTS.append(output)
    return output


def check_output(cfg, name: str, fingerprint: dict, name_key: str = "dataset_name", dataset_entry=None) -> None:
    """What ``start_run`` refuses (another configuration's output, a dataset_info.json entry of other data),
    refused now, with nothing locked or written: the web UI's preview checks a command line so."""
    output = ShardedOutput(cfg.dataset_dir, name)
    if dataset_entry is not None:
        read_dataset_info(output.dataset_dir, name, dataset_entry)
    problem = output.conflict(fingerprint, cfg.overwrite, name_key)
    if problem:
        raise ValueError(problem)


ACTIVE_OUTPUTS: list[ShardedOutput] = []  # the outputs of the command running in this process


def interrupted_message() -> str:
    """The one line a command stopped by Ctrl-C ends with; forgets the outputs."""
    written = sum(output.written_this_run for output in ACTIVE_OUTPUTS)
    ACTIVE_OUTPUTS.clear()
    return f"interrupted: {written} written; run the same command to resume"


def finish_run(output: ShardedOutput, records_written: int, had_work: bool, dataset_entry: dict | None = None) -> int:
    """Register the dataset once it holds records, and choose the exit status.

    Under several processes a share that produced nothing is only a warning: a non-zero exit would
    make torchrun stop the other processes, which may still produce.
    """
    total = sum(1 for _ in output.records())
    if total and dataset_entry is not None:
        merge_dataset_info(output.dataset_dir, output.name, dataset_entry)
    output.unlock()
    if had_work and records_written == 0:
        if output.world_size == 1 and total == 0:
            logger.error("nothing could be produced; see the reasons above")
            return 1
        logger.warning("process %d of %d produced nothing from its share", output.rank, output.world_size)
    return 0


def todo_for_this_process(
    output: ShardedOutput, units: Sequence[T], key_of: Callable[[T], str], record_key, overwrite: bool
) -> list[T]:
    """This process's share (every world_size-th unit), less what any earlier run already wrote or skipped."""
    mine = list(units[output.rank :: output.world_size])
    done = set() if overwrite else output.done_keys(record_key)
    todo = [unit for unit in mine if key_of(unit) not in done]
    logger.info(
        "%d in total, %d for process %d of %d, %d already done, %d to do",
        len(units),
        len(mine),
        output.rank,
        output.world_size,
        len(mine) - len(todo),
        len(todo),
        extra={"console": True},  # shown at the default verbosity too: what a resumed run picks up
    )
    return todo


def progress_name(command: str, rank: int, world: int) -> str:
    return command if world == 1 else f"{command} {rank}/{world}"


def prefetched_batches(todo: Sequence[T], batch_size: int, load: Callable, desc: str | None) -> Iterator:
    """(batch, load(batch)) for each batch; the next batch is loaded on a thread while this one runs.
    With a ``desc``, a progress bar counts the units of the batches handed out."""
    from tqdm import tqdm

    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    if not batches:
        return
    progress = tqdm(total=len(todo), unit="it", desc=desc, disable=desc is None)
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(load, batches[0])
        for index, batch in enumerate(batches):
            loaded = upcoming.result()
            if index + 1 < len(batches):
                upcoming = reader.submit(load, batches[index + 1])
            yield batch, loaded
            progress.update(len(batch))
    progress.close()


@dataclass
class Outcome:
    """What became of a unit of work: a record to write, an entry for the skip log (``kind`` "skipped": the input
    could not be used; "dropped": the result is left out), counts to add, and how many units it finishes."""

    record: dict | None = None
    skipped: dict | None = None
    counts: dict = field(default_factory=dict)
    units: int = 1


class Job(ABC):
    """What a command does with its units of work, for ``Pipeline``."""

    progress = "run"  # the progress bar's name
    unit = "it"  # what the progress bar counts

    def prepare(self, batch: list):
        """Work for a batch of units done on a thread, a batch ahead of the model (reading images)."""
        return None

    @abstractmethod
    def start(self, unit, prepared) -> Iterator[Request | Outcome]:
        """The requests of one unit, or its outcome where it needs none."""

    @abstractmethod
    def finish(self, request: Request, generation: Generation) -> Iterator[Outcome]:
        """The outcomes that a finished request completes (none while a unit waits for its other requests)."""


class Pipeline:
    """One run of a job over this process's units: read ahead, one stream of requests, each outcome written as
    it comes. ``tally`` counts what was written (``written``), skipped and dropped (by reason), and what the
    outcomes counted."""

    def __init__(
        self, output: ShardedOutput, job: Job, make_generator, max_new_tokens: int, sampling: Sampling, batch_size: int
    ):
        """``batch_size``: units prepared together, a batch ahead; ``sampling.slots``: requests decoding together."""
        self.output, self.job, self.make_generator = output, job, make_generator
        self.max_new_tokens, self.sampling, self.batch_size = max_new_tokens, sampling, batch_size
        self.tally = Counter()
        self.seconds = 0.0  # generating, model loading excluded
        self.kill_after = int(os.environ.get(KILL_AFTER_RECORDS, "0"))
        self.interrupt_after = int(os.environ.get(INTERRUPT_AFTER_RECORDS, "0"))

    def _generator(self):
        generator = self.make_generator()
        self._started = time.time()
        # The bar's clock leaves out the model's loading: its first rate, and so its first ETA, is of generating.
        self.progress.unpause()
        return generator

    def run(self, todo: list) -> Counter:
        from tqdm import tqdm

        rank, world = self.output.rank, self.output.world_size
        self.progress = tqdm(total=len(todo), unit=self.job.unit, desc=progress_name(self.job.progress, rank, world))
        self.records, self.skipped = self.output.open_writers()
        try:
            with self.records, self.skipped:
                self._started = time.time()
                stream = lazy_stream(self._generator, self._requests(todo), self.max_new_tokens, self.sampling)
                for request, generation in stream:
                    for outcome in self.job.finish(request, generation):
                        self._write(outcome)
        finally:  # also on Ctrl-C: the bar is not drawn again after the command's last line
            self.progress.close()
        self.seconds = time.time() - self._started
        return self.tally

    def _requests(self, todo: list) -> Iterator[Request]:
        for batch, prepared in prefetched_batches(todo, self.batch_size, self.job.prepare, None):
            for unit in batch:
                for item in self.job.start(unit, prepared):
                    if isinstance(item, Outcome):
                        self._write(item)
                    else:
                        yield item

    def _write(self, outcome: Outcome) -> None:
        if outcome.record is not None:
            self.records.write(outcome.record)
            self.tally["written"] += 1
            if self.tally["written"] in (self.kill_after, self.interrupt_after):
                import signal

                if self.tally["written"] == self.kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                os.killpg(os.getpgid(0), signal.SIGINT)
        if outcome.skipped is not None:
            self.skipped.write(outcome.skipped)
            self.tally[f"{outcome.skipped['kind']}: {outcome.skipped['reason']}"] += 1
        self.tally.update(outcome.counts)
        self.progress.update(outcome.units)
