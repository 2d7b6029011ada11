"""Instruction data to describe (``infuse``) or answer (``dar``): any dataset LLaMA-Factory reads.

A dataset named in a ``dataset_info.json`` is read as LLaMA-Factory's loader reads it and aligned by
LLaMA-Factory's format converters (alpaca, sharegpt, openai, and this plugin's llava and stic); a LLaVA
JSON file is read with the ``llava`` formatter. Either way each sample becomes a :class:`Sample`.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .formats import MalformedRecordError, convert_llava, converter_classes

logger = logging.getLogger("stic_plugin")


@dataclass
class Sample:
    index: int  # position in the source dataset
    messages: list[dict]  # user/assistant turns; the last is the reference answer (SFT) when present
    images: list[str] = field(default_factory=list)  # resolved paths, in placeholder order
    system: str = ""
    source_id: str | None = None  # the record's own id, where the input has one (LLaVA files)

    @property
    def key(self) -> str:
        return str(self.index)


def _to_sample(index: int, aligned: dict) -> Sample:
    messages = [dict(m) for m in aligned["_prompt"]] + [dict(m) for m in aligned["_response"][:1]]
    return Sample(index, messages, list(aligned.get("_images") or []), aligned.get("_system") or "")


def _report_unreadable(what: str, unreadable: list[str]) -> None:
    if unreadable:
        logger.warning(
            "%s: %d unreadable record(s) left out, for example: %s", what, len(unreadable), "; ".join(unreadable[:3])
        )


def llava_image_folder(path: str, image_folder: str | None) -> str:
    """Where a LLaVA file's relative image paths start: ``image_folder``, else the file's own folder."""
    return str(Path(image_folder).absolute()) if image_folder else str(Path(path).absolute().parent)


def dataset_media_folder(dataset_dir: str, media_dir: str | None) -> str:
    """Where a named dataset's relative image paths start: the folder LLaMA-Factory's own ``DataArguments``
    settles on (``media_dir``, else ``dataset_dir``), which ``load_named_dataset`` reads the dataset with."""
    from llamafactory.hparams import DataArguments

    return DataArguments(dataset_dir=dataset_dir, media_dir=media_dir).media_dir


def load_llava_file(
    path: str, image_folder: str | None, unanswered_ok: bool = False, image_placement: str = "front"
) -> list[Sample]:
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        rows = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if source.suffix == ".jsonl"
            else json.loads(text)
        )
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the LLaVA data {path}: {err}") from err
    if not isinstance(rows, list):
        raise ValueError(f"{path}: LLaVA data is a JSON list of records")
    folder = llava_image_folder(path, image_folder)
    attr = DatasetAttr("file", dataset_name=source.name)
    attr.join({"formatting": "llava"})
    converter = converter_classes()["llava"](attr, DataArguments(dataset_dir=folder, media_dir=folder))
    samples, unreadable = [], []
    for index, row in enumerate(rows):
        turns = row.get("conversations") if isinstance(row, dict) else None
        if unanswered_ok and isinstance(turns, list) and len(turns) % 2 == 1:
            row = {**row, "conversations": turns + [{"from": "gpt", "value": ""}]}  # a question without its answer
        try:
            sample = _to_sample(index, convert_llava(converter, row, image_placement))
            sample.source_id = str(row["id"]) if isinstance(row, dict) and row.get("id") is not None else None
            samples.append(sample)
        except MalformedRecordError as err:  # one bad record among thousands: leave it out, say so
            unreadable.append(f"record {index}: {err}" if not isinstance(row, dict) else str(err))
    _report_unreadable(path, unreadable)
    return samples


class _MainProcess:
    """What ``align_dataset`` reads of the training arguments: the process index, for its cache. Not a
    ``Seq2SeqTrainingArguments``: building one reads the distributed state, which under torchrun would
    start a process group, and stic-cli's processes each read their input on their own."""

    local_process_index = 0


def load_named_dataset(name: str, dataset_dir: str, media_dir: str | None) -> list[Sample]:
    """One dataset from ``dataset_dir/dataset_info.json``, read and aligned as LLaMA-Factory's loader does.

    Local files (a file, or a folder of files, of one of LLaMA-Factory's types), Hugging Face hub and script
    datasets are read with ``datasets.load_dataset``, then aligned by LLaMA-Factory's public ``align_dataset``
    with the formatter of the entry (alpaca, sharegpt, openai, this plugin's llava and stic).
    """
    from llamafactory.data.converter import align_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    check_entry(name, dataset_dir)
    (attr,) = get_dataset_list([name], dataset_dir)
    if attr.ranking:
        raise ValueError(f"dataset `{name}` is preference data (`ranking: true`); give instruction (SFT) data")
    data_args = DataArguments(dataset_dir=dataset_dir, media_dir=media_dir)
    if attr.load_from in ("ms_hub", "om_hub"):
        # The ModelScope and Modelers hubs' clients are wired only into LLaMA-Factory's private loader: no
        # public function reads them. It reads and aligns; of the model arguments it uses the hub settings.
        from llamafactory.data.loader import _load_single_dataset
        from llamafactory.hparams import ModelArguments

        dataset = _load_single_dataset(attr, ModelArguments(model_name_or_path="unused"), data_args, _MainProcess())
        ids = None
    else:
        dataset = _read_entry(attr, name, data_args)
        if attr.num_samples is not None:
            dataset = _num_samples(dataset, attr.num_samples)
        # the records' own ids, where they have an `id` column (the aligned records keep none)
        ids = dataset["id"] if "id" in dataset.column_names else None
        dataset = align_dataset(dataset, attr, data_args, _MainProcess())
    samples, unreadable = [], []
    for index, aligned in enumerate(dataset):
        if aligned["_prompt"]:
            samples.append(_to_sample(index, aligned))
            if ids is not None and ids[index] is not None:
                samples[-1].source_id = str(ids[index])
        else:  # LLaMA-Factory's converter logged why and left it empty
            unreadable.append(f"sample {index}")
    _report_unreadable(f"dataset `{name}`", unreadable)
    return samples


# Where an entry's data is, one of these keys (LLaMA-Factory's parser reads them in this order).
SOURCE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "cloud_file_name", "file_name")


def check_entry(name: str, dataset_dir: str) -> None:
    """Stop with one line naming the file and the entry where LLaMA-Factory's parser would stop with a traceback:
    an entry that is not an object, names no data, or names a loading script (``script_url``: the datasets
    library no longer runs scripts, and a script is code from the data folder)."""
    if dataset_dir == "ONLINE":  # LLaMA-Factory's name for "no dataset_info.json: the names are hub datasets"
        return
    path = Path(dataset_dir) / "dataset_info.json"
    if not path.exists():
        raise ValueError(f"dataset `{name}`: there is no {path.absolute()}, where its entry is looked for")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not a JSON object of datasets")
    if name not in info:
        raise ValueError(f"{path} has no dataset `{name}`; its datasets: {', '.join(sorted(info)) or 'none'}")
    entry = info[name]
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: the entry `{name}` is {json.dumps(entry)[:80]}, not an object with a file_name")
    if "script_url" in entry:
        raise ValueError(
            f"{path}: the entry `{name}` names a loading script (script_url), which is not run: give the data as "
            "files LLaMA-Factory reads (json, jsonl, csv, parquet, arrow) in file_name"
        )
    if not any(isinstance(entry.get(key), str) for key in SOURCE_KEYS):
        raise ValueError(f"{path}: the entry `{name}` names no data; give one of {', '.join(SOURCE_KEYS)}")
    for key in ("columns", "tags"):
        if not isinstance(entry.get(key, {}), dict):
            raise ValueError(f"{path}: `{key}` of the entry `{name}` is not an object")
    count = entry.get("num_samples")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError(f"{path}: `num_samples` of the entry `{name}` must be a whole number >= 1; got {count!r}")


def _read_entry(attr, name: str, data_args):
    """The records of a dataset_info entry, unaligned: what LLaMA-Factory's loader reads for it."""
    import os

    from datasets import Dataset, load_dataset

    if attr.load_from == "file":
        from llamafactory.extras.constants import FILEEXT2TYPE

        local = Path(data_args.dataset_dir) / attr.dataset_name
        if not local.exists():
            raise ValueError(f"dataset `{name}`: {local} not found")
        files = sorted(str(path) for path in local.iterdir()) if local.is_dir() else [str(local)]
        types = {FILEEXT2TYPE.get(os.path.splitext(path)[1][1:]) for path in files}
        if len(types) != 1 or None in types:
            raise ValueError(f"dataset `{name}`: {local} must hold files of one type, one of {', '.join(FILEEXT2TYPE)}")
        return load_dataset(types.pop(), data_files=files, split=attr.split)
    if attr.load_from == "hf_hub":
        return load_dataset(attr.dataset_name, name=attr.subset, data_dir=attr.folder, split=attr.split)
    if attr.load_from == "script":
        path = os.path.join(data_args.dataset_dir, attr.dataset_name)
        return load_dataset(path, name=attr.subset, data_dir=attr.folder, split=attr.split)
    if attr.load_from == "cloud_file":
        from llamafactory.data.data_utils import read_cloud_json

        return Dataset.from_list(read_cloud_json(attr.dataset_name), split=attr.split)
    raise ValueError(f"dataset `{name}`: unknown source {attr.load_from!r}")


def _num_samples(dataset, count: int):
    """An entry's ``num_samples`` as LLaMA-Factory draws it (every record once, then repeats), from a fixed
    seed, so that a resumed run reads the same samples."""
    import numpy as np

    rng = np.random.default_rng(0)
    indexes = rng.permutation(len(dataset))[:count]
    if count > len(indexes):
        indexes = np.concatenate((indexes, rng.choice(len(dataset), count - len(indexes))))
    return dataset.select(indexes)


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


def check_input_file(cfg) -> None:
    """A ``llava_file`` that is not there, or a ``dataset`` that its dataset_info.json does not describe, said at
    once (before LLaMA-Factory's loader is imported)."""
    if cfg.llava_file is not None and not Path(cfg.llava_file).is_file():
        raise ValueError(f"`llava_file`: {Path(cfg.llava_file).absolute()} is not a file")
    if cfg.dataset is not None:
        check_entry(cfg.dataset, cfg.source_dataset_dir)


def source_signature(cfg) -> list | None:
    """The input data files, by size and modification time: an edited input is not resumed."""
    if cfg.llava_file is not None:
        return files_signature(cfg.llava_file)
    try:
        info = json.loads((Path(cfg.source_dataset_dir) / "dataset_info.json").read_text(encoding="utf-8"))
        return files_signature(str(Path(cfg.source_dataset_dir) / info[cfg.dataset]["file_name"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # load_samples says what is wrong


def image_root(cfg) -> str:
    """The folder that the input's relative image paths start from: the one its loader resolves them in."""
    if cfg.llava_file is not None:
        return llava_image_folder(cfg.llava_file, cfg.image_folder)
    return dataset_media_folder(cfg.source_dataset_dir, cfg.media_dir)


def load_samples(cfg, unanswered_ok: bool = False) -> list[Sample]:
    """``unanswered_ok``: a LLaVA record ending with a question is read with an empty answer (for dar)."""
    if (cfg.dataset is None) == (cfg.llava_file is None):
        raise ValueError("Set exactly one of `dataset` (a name in dataset_info.json) and `llava_file`.")
    if cfg.dataset is not None:
        return load_named_dataset(cfg.dataset, cfg.source_dataset_dir, cfg.media_dir)
    return load_llava_file(cfg.llava_file, cfg.image_folder, unanswered_ok, cfg.image_placement)
