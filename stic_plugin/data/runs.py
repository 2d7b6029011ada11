"""What every generator run shares: sampling and sharding, resume, the batch loop with read-ahead, and the
signature of input and model files."""

import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .output import ShardedOutput, check_dataset_info_writable, merge_dataset_info, read_dataset_info

T = TypeVar("T")
logger = logging.getLogger("stic_plugin")


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun or any launcher that sets RANK / WORLD_SIZE."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    return rank, world


def files_signature(path: str) -> list | None:
    """(name, size, modification time) of a local file, or of the files directly in a local folder: what
    tells an input or a model edited in place from the one an output was written with."""
    target = Path(path.strip())
    if target.is_file():
        stat = target.stat()
        return [[target.name, stat.st_size, stat.st_mtime_ns]]
    if target.is_dir():
        return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(target.iterdir()) if p.is_file()]
    return None  # a hub name: its revision is the hub's business


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


def my_todo(output: ShardedOutput, units: Sequence[T], key_of: Callable[[T], str], record_key, overwrite: bool):
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
