"""``stic-cli pref2sft``: the preferred descriptions of a ``pref`` output as SFT data (the paper's Table 3
ablation, "SFT on positives"; the authors' ``convert_pref_to_sft.py``).

Run: ``stic-cli pref2sft dataset_dir=data pref_dataset=stic_pref dataset_name=stic_pref_sft``, then train
it as stage 2 is trained, starting from the base model::

    llamafactory-cli train recipes/llava-v1.6-mistral-7b/stage2.yaml dataset=stic_pref_sft \\
        adapter_name_or_path=null output_dir=saves/llava-v1.6-mistral-7b/sft-positives

Each pair becomes one conversation: the pair's training prompt (with its image placeholder), answered by
the preferred description; the dispreferred one is left out. One output record (sharegpt)::

    {"messages": [{"role": "user", "content": "<image>\\nInterpret the scene shown in the image."},
                  {"role": "assistant", "content": "The image shows ..."}],
     "images": ["../coco/COCO_train2014_000000000009.jpg"],
     "stic": {"image": "COCO_train2014_000000000009.jpg", "chosen_tokens": 45, "chosen_truncated": false}}

The output sits in the same ``dataset_dir`` as the pairs, so their image paths stay valid as they are.
"""

import difflib
import json
import logging
from collections import Counter

from ..assets import dataset_entry
from ..data.output import ShardedOutput, atomic_write_text
from ..pipeline.run import finish_run, start_run, todo_for_this_process
from .config import Pref2SftConfig

logger = logging.getLogger("stic_plugin.pref2sft")


def sft_record(pair: dict) -> dict:
    """The SFT record of one preference pair: its prompt answered by the preferred description.

    Raises ValueError for a record that is not a pair as ``pref`` writes them."""
    try:
        messages, chosen, meta = pair["messages"], pair["chosen"], pair["stic"]
        images = pair.get("images") or []
        if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
            raise TypeError("`messages` is not a list of turns")
        if not (isinstance(chosen, dict) and isinstance(chosen.get("content"), str) and chosen["content"]):
            raise TypeError("`chosen` has no text")
        key = meta["image"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a preference pair as `stic-cli pref` writes them ({err})") from err
    return {
        "messages": [dict(m) for m in messages] + [{"role": "assistant", "content": chosen["content"]}],
        "images": list(images),
        # Fixed keys and types, so any JSON reader infers one schema for the whole folder.
        "stic": {
            "image": key,
            "chosen_tokens": int(meta.get("chosen_tokens", 0)),
            "chosen_truncated": bool(meta.get("chosen_truncated", False)),
        },
    }


def _pref_output(cfg: Pref2SftConfig) -> tuple[ShardedOutput, dict]:
    """The ``pref`` output named ``pref_dataset``, and the configuration that wrote it."""
    source = ShardedOutput(cfg.dataset_dir, cfg.pref_dataset)
    if not source.config_path.is_file() or not source.data_dir.is_dir():
        written = sorted(
            path.name[: -len(".stic")]
            for path in source.dataset_dir.glob("*.stic")
            if (path / "config.json").is_file() and (source.dataset_dir / path.name[: -len(".stic")]).is_dir()
        )
        close = difflib.get_close_matches(cfg.pref_dataset, written, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        found = f" Outputs there: {', '.join(written)}." if written else ""
        raise ValueError(
            f"no `stic-cli pref` output named `{cfg.pref_dataset}` in {source.dataset_dir} "
            f"(looked for {source.data_dir} and {source.config_path}).{hint}{found}"
        )
    try:
        configuration = json.loads(source.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {source.config_path}: {err}") from err
    if not isinstance(configuration, dict):
        raise ValueError(f"{source.config_path} is not a configuration written by stic-cli")
    other = next((command for key, command in WRITTEN_BY_OTHERS if key in configuration), None)
    if other is not None:
        raise ValueError(
            f"`{cfg.pref_dataset}` in {source.dataset_dir} is the output of `stic-cli {other}` ({source.config_path}), "
            "not of `stic-cli pref`: pref2sft converts preference pairs; name a pref output in pref_dataset"
        )
    return source, configuration


# The outputs of the other commands, by a key of their configuration that a pref output's has not.
WRITTEN_BY_OTHERS = (("pref_configuration", "pref2sft"), ("predictions_name", "dar"), ("infusion_format", "infuse"))


def run_pref2sft(cfg: Pref2SftConfig) -> int:
    source, pref_configuration = _pref_output(cfg)
    pairs = list(source.records())
    if not pairs:
        raise ValueError(f"{source.data_dir} holds no preference pair yet")
    # The pairs' configuration, not their files: a pref run that resumed and wrote more pairs is continued
    # here too, while pairs written again with other settings make a different output.
    fingerprint = {"pref_dataset": cfg.pref_dataset, "pref_configuration": pref_configuration}
    entry = {"file_name": cfg.dataset_name, **dataset_entry("stic_sft")}
    output = start_run(cfg, cfg.dataset_name, fingerprint, dataset_entry=entry)
    keyed = {}
    for pair in pairs:
        key = pair.get("stic", {}).get("image") if isinstance(pair.get("stic"), dict) else None
        keyed.setdefault(str(key), pair)  # a key written twice (two runs on one output) is converted once
    todo = todo_for_this_process(
        output, sorted(keyed), lambda key: key, lambda record: record["stic"]["image"], cfg.overwrite
    )

    run = Counter()
    records, skipped_log = output.open_writers()
    with records, skipped_log:
        for key in todo:
            try:
                record = sft_record(keyed[key])
            except ValueError as err:
                logger.warning("left out pair %s: %s", key, err)
                skipped_log.write(dict(key=key, path="", kind="skipped", reason="not a pair", detail=str(err)))
                run["left out"] += 1
                continue
            records.write(record)
            run["written"] += 1

    total = sum(1 for _ in output.records())
    stats = {
        "dataset": cfg.dataset_name,
        "source": cfg.pref_dataset,
        "samples": total,
        "pairs_in_source": len(pairs),
        "left_out": len(output.open_skips(lambda record: record["stic"]["image"])),
        "chosen_truncated": sum(bool(r["stic"]["chosen_truncated"]) for r in output.records()),
    }
    atomic_write_text(output.stats_path, json.dumps(stats, indent=2) + "\n")
    print(
        f"stic-cli pref2sft: {total} samples (the preferred descriptions of {cfg.pref_dataset}) in {output.data_dir}\n"
        f"  this run:         {run['written']} written, {run['left out']} left out\n"
        f"  chosen truncated: {stats['chosen_truncated']}\n"
        f"  statistics:       {output.stats_path}",
        flush=True,
    )
    return finish_run(output, run["written"], bool(todo), entry)
