"""`stic-cli pref2sft`: a pref output's preferred descriptions as SFT data, loaded by LLaMA-Factory."""

import json

from helpers import llamafactory_dataset, pref_args, read_records


def _pair(key: str, chosen: str = "A red square on blue.") -> dict:
    return {
        "messages": [{"role": "user", "content": "<image>\nInterpret the scene shown in the image."}],
        "chosen": {"role": "assistant", "content": chosen},
        "rejected": {"role": "assistant", "content": "A dog."},
        "images": [f"../images/{key}"],
        "stic": {"image": key, "negative": "hallucination", "chosen_tokens": 5, "chosen_truncated": False},
    }


def _fake_pref_output(data, pairs, configuration=None, name="stic_pref"):
    """The files `stic-cli pref` leaves: its configuration and a part file of pairs."""
    (data / name).mkdir(parents=True, exist_ok=True)
    (data / f"{name}.stic").mkdir(exist_ok=True)
    (data / f"{name}.stic" / "config.json").write_text(json.dumps(configuration or {"temperature": 0.2}))
    part = data / name / "part-00000-of-00001.jsonl"
    part.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    return part


def test_pref_output_becomes_sft_data_that_llamafactory_loads(tiny, tmp_path, stic):
    data = tmp_path / "data"
    result = stic(*pref_args(tiny, tiny["images"], data, max_samples=4))
    assert result.returncode == 0, result.stderr[-3000:]
    pairs = read_records(data / "stic_pref")
    assert pairs

    result = stic("pref2sft", f"dataset_dir={data}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(data / "stic_pref_sft")
    by_key = {pair["stic"]["image"]: pair for pair in pairs}
    assert sorted(r["stic"]["image"] for r in records) == sorted(by_key)
    for record in records:
        pair = by_key[record["stic"]["image"]]
        assert record["messages"] == pair["messages"] + [pair["chosen"]]  # the prompt, answered by the chosen
        assert record["images"] == pair["images"]  # same dataset_dir: the paths stay valid
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["stic_pref_sft"]["file_name"] == "stic_pref_sft" and "ranking" not in info["stic_pref_sft"]
    assert info["stic_pref"]["ranking"] is True  # the pairs' entry kept
    stats = json.loads((data / "stic_pref_sft.stats.json").read_text())
    assert stats["samples"] == len(records) == stats["pairs_in_source"]
    assert f"{len(records)} samples" in result.stdout

    train, tokenizer_module = llamafactory_dataset(tiny["tiny-llava"], "llava", "stic_pref_sft", data, tmp_path / "out")
    assert len(train["train_dataset"]) == len(records)
    first = train["train_dataset"][0]
    labelled = [token for token, label in zip(first["input_ids"], first["labels"]) if label != -100]
    assert tokenizer_module["tokenizer"].decode(labelled).strip().startswith(records[0]["messages"][1]["content"])


def test_a_rerun_converts_only_new_pairs_and_other_pairs_need_overwrite(tmp_path, stic):
    data = tmp_path / "data"
    part = _fake_pref_output(data, [_pair("a.png"), _pair("b.png")])
    assert stic("pref2sft", f"dataset_dir={data}").returncode == 0
    with open(part, "a") as handle:  # the pref run resumed and wrote one more pair
        handle.write(json.dumps(_pair("c.png")) + "\n")
    again = stic("pref2sft", f"dataset_dir={data}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 already done, 1 to do" in again.stderr
    assert sorted(r["stic"]["image"] for r in read_records(data / "stic_pref_sft")) == ["a.png", "b.png", "c.png"]

    _fake_pref_output(data, [_pair("a.png", "Another text.")], configuration={"temperature": 0.7})
    changed = stic("pref2sft", f"dataset_dir={data}")
    assert changed.returncode == 2 and "different configuration (changed: pref_configuration)" in changed.stderr
    replaced = stic("pref2sft", f"dataset_dir={data}", "overwrite=true")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert [r["messages"][-1]["content"] for r in read_records(data / "stic_pref_sft")] == ["Another text."]


def test_a_malformed_pair_is_left_out_with_a_warning(tmp_path, stic):
    data = tmp_path / "data"
    broken = dict(_pair("b.png"), chosen={"role": "assistant"})
    _fake_pref_output(data, [_pair("a.png"), broken])
    result = stic("pref2sft", f"dataset_dir={data}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "left out pair b.png" in result.stderr and "`chosen` has no text" in result.stderr
    assert [r["stic"]["image"] for r in read_records(data / "stic_pref_sft")] == ["a.png"]
    assert json.loads((data / "stic_pref_sft.stats.json").read_text())["left_out"] == 1


def test_configuration_errors_name_what_is_wrong(tmp_path, stic):
    data = tmp_path / "data"
    _fake_pref_output(data, [_pair("a.png")], name="my_pairs")
    missing = stic("pref2sft", f"dataset_dir={data}", "pref_dataset=my_pair")
    assert missing.returncode == 2
    assert (
        "no `stic-cli pref` output named `my_pair`" in missing.stderr and "Did you mean `my_pairs`?" in missing.stderr
    )
    same = stic("pref2sft", f"dataset_dir={data}", "pref_dataset=my_pairs", "dataset_name=my_pairs")
    assert same.returncode == 2 and "must differ from `pref_dataset`" in same.stderr
    assert not (data / "stic_pref_sft").exists()


def test_the_documented_training_command_parses(monkeypatch):
    """docs/commands.md: stage 2's recipe on the positives, from the base model (no stage-1 adapter)."""
    from llamafactory.hparams.parser import _parse_train_args, read_args

    from helpers import REPO

    command = (
        "recipes/llava-v1.6-mistral-7b/stage2.yaml dataset=stic_pref_sft adapter_name_or_path=null "
        "output_dir=saves/llava-v1.6-mistral-7b/sft-positives"
    )
    assert f"llamafactory-cli train {command}" in " ".join((REPO / "docs" / "commands.md").read_text().split())
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["llamafactory-cli", *command.split()])
    values = dict(read_args(), bf16=False)  # bf16 needs a GPU to be accepted
    model_args, data_args, _, finetuning_args, _ = _parse_train_args(values)
    assert model_args.adapter_name_or_path is None and data_args.dataset == ["stic_pref_sft"]
    assert finetuning_args.stage == "sft"


def test_a_line_that_is_not_a_record_is_passed_over(tmp_path, stic):
    """Before: AttributeError: 'list' object has no attribute 'get', with a traceback."""
    data = tmp_path / "data"
    part = _fake_pref_output(data, [_pair("a.png"), _pair("b.png")])
    part.write_text(part.read_text() + "[1, 2]\n" + json.dumps(_pair("c.png")) + "\n")
    result = stic("pref2sft", f"dataset_dir={data}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(r["stic"]["image"] for r in read_records(data / "stic_pref_sft")) == ["a.png", "b.png", "c.png"]


def test_the_output_of_another_command_is_named_for_what_it_is(tmp_path, stic):
    """Before: an infuse output's 27 records became one pair "left out" (their keys were all None)."""
    data = tmp_path / "data"
    sample = {"messages": [{"role": "user", "content": "<image>Q"}, {"role": "assistant", "content": "A"}]}
    _fake_pref_output(data, [dict(sample, stic={"sample": i}) for i in range(3)], {"infusion_format": "x"}, "inf")
    result = stic("pref2sft", f"dataset_dir={data}", "pref_dataset=inf")
    assert result.returncode == 2
    assert "`inf` in" in result.stderr and "is the output of `stic-cli infuse`" in result.stderr
    assert not (data / "stic_pref_sft").exists()
