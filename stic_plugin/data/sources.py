"""Instruction data to describe (``infuse``) or answer (``dar``): any dataset LLaMA-Factory reads.

A dataset named in a ``dataset_info.json`` goes through LLaMA-Factory's own loader and format
converters (alpaca, sharegpt, openai, and this plugin's llava and stic); a LLaVA JSON file is read
with the ``llava`` formatter. Either way each sample becomes a :class:`Sample`.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .formats import LlavaDatasetConverter, MalformedRecordError

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


def load_llava_file(path: str, image_folder: str | None, unanswered_ok: bool = False) -> list[Sample]:
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
    folder = str(Path(image_folder).absolute()) if image_folder else str(source.absolute().parent)
    attr = DatasetAttr("file", dataset_name=source.name)
    attr.join({"formatting": "llava"})
    converter = LlavaDatasetConverter(attr, DataArguments(dataset_dir=folder, media_dir=folder))
    samples, unreadable = [], []
    for index, row in enumerate(rows):
        turns = row.get("conversations") if isinstance(row, dict) else None
        if unanswered_ok and isinstance(turns, list) and len(turns) % 2 == 1:
            row = {**row, "conversations": turns + [{"from": "gpt", "value": ""}]}  # a question without its answer
        try:
            sample = _to_sample(index, converter(row))
            sample.source_id = str(row["id"]) if isinstance(row, dict) and row.get("id") is not None else None
            samples.append(sample)
        except MalformedRecordError as err:  # one bad record among thousands: leave it out, say so
            unreadable.append(str(err))
    _report_unreadable(path, unreadable)
    return samples


def load_named_dataset(name: str, dataset_dir: str, media_dir: str | None) -> list[Sample]:
    """One dataset from ``dataset_dir/dataset_info.json``, aligned by LLaMA-Factory's loader."""
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    (attr,) = get_dataset_list([name], dataset_dir)
    if attr.ranking:
        raise ValueError(f"dataset `{name}` is preference data (`ranking: true`); give instruction (SFT) data")
    data_args = DataArguments(dataset_dir=dataset_dir, media_dir=media_dir or dataset_dir)
    # Only the attributes the loader reads: cache and hub settings, and the process index.
    model_args = SimpleNamespace(cache_dir=None, hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, dataloader_num_workers=0)
    dataset = _load_single_dataset(attr, model_args, data_args, training_args)
    samples, unreadable = [], []
    for index, aligned in enumerate(dataset):
        if aligned["_prompt"]:
            samples.append(_to_sample(index, aligned))
        else:  # LLaMA-Factory's converter logged why and left it empty
            unreadable.append(f"sample {index}")
    _report_unreadable(f"dataset `{name}`", unreadable)
    return samples


def source_signature(cfg) -> list | None:
    """The input data files, by size and modification time: an edited input is not resumed."""
    from .runs import files_signature

    if cfg.llava_file is not None:
        return files_signature(cfg.llava_file)
    try:
        info = json.loads((Path(cfg.source_dataset_dir) / "dataset_info.json").read_text(encoding="utf-8"))
        return files_signature(str(Path(cfg.source_dataset_dir) / info[cfg.dataset]["file_name"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # load_samples says what is wrong


def load_samples(cfg, unanswered_ok: bool = False) -> list[Sample]:
    """``unanswered_ok``: a LLaVA record ending with a question is read with an empty answer (for dar)."""
    if (cfg.dataset is None) == (cfg.llava_file is None):
        raise ValueError("Set exactly one of `dataset` (a name in dataset_info.json) and `llava_file`.")
    if cfg.dataset is not None:
        return load_named_dataset(cfg.dataset, cfg.source_dataset_dir, cfg.media_dir)
    return load_llava_file(cfg.llava_file, cfg.image_folder, unanswered_ok)
