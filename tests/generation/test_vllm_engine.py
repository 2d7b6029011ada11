"""``engine: vllm``: its pure parts here, and ``stic-cli pref|infuse|dar engine=vllm`` on vLLM's CPU build (marked
slow), on tiny models whose heads vLLM's CPU attention accepts (head size 64): in a subprocess, as users run it,
through a kill and a Ctrl-C, and in this process (``vllm_here``) where a test compares what vLLM writes."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from stic_plugin.generation import vllm_engine
from stic_plugin.tools.fixtures import make_images

from helpers import (
    VLLM_ENV,
    VLLM_IN_PROCESS,
    ctrl_c_as_in_a_terminal,
    key_values,
    needs_vllm,
    pref_command,
    subprocess_env,
    texts_by_image,
)

# ---- pure parts ----


def test_seed_of_a_request_depends_on_run_seed_and_key_only():
    assert vllm_engine.vllm_seed(42, "a.png:chosen") == vllm_engine.vllm_seed(42, "a.png:chosen")
    seeds = {vllm_engine.vllm_seed(seed, key) for seed in (1, 2) for key in ("a:chosen", "a:rejected", "b:chosen")}
    assert len(seeds) == 6


def test_vision_tower_keys_saved_by_transformers_5_are_renamed_for_vllm():
    keys = [
        "vision_tower.embeddings.patch_embedding.weight",
        "model.vision_tower.encoder.layers.0.mlp.fc1.weight",
        "vision_tower.vision_model.post_layernorm.weight",  # already in vLLM's naming
        "language_model.model.layers.0.self_attn.q_proj.weight",
        "multi_modal_projector.linear_1.weight",
    ]
    renamed = {
        keys[0]: "vision_tower.vision_model.embeddings.patch_embedding.weight",
        keys[1]: "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
    }
    for tower in ("clip_vision_model", "siglip_vision_model", "siglip2_vision_model"):
        assert vllm_engine.vision_key_renames(keys, tower) == renamed


def test_towers_vllm_reads_as_saved_are_not_renamed():
    """Before: Mistral 3's Pixtral tower and InternVL's InternViT were renamed too, and vLLM failed to load them
    (``KeyError: 'vision_model.ln_pre.weight'``)."""
    pixtral = ["vision_tower.ln_pre.weight", "model.vision_tower.transformer.layers.0.attention.q_proj.weight"]
    intern = ["model.vision_tower.embeddings.cls_token", "model.vision_tower.encoder.layer.0.attention.q_proj.weight"]
    assert vllm_engine.vision_key_renames(pixtral, "pixtral") == {}
    assert vllm_engine.vision_key_renames(intern, "internvl_vision") == {}
    assert vllm_engine.vision_key_renames(intern, None) == {}


def test_the_vision_tower_type_is_read_from_the_configuration():
    from types import SimpleNamespace

    from transformers import LlavaConfig

    assert vllm_engine.vision_model_type(LlavaConfig()) == "clip_vision_model"
    assert vllm_engine.vision_model_type(SimpleNamespace(vision_config={"model_type": "pixtral"})) == "pixtral"
    assert vllm_engine.vision_model_type(SimpleNamespace()) is None


def test_vllm_ready_folder_renames_in_a_copy_and_links_the_rest(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = tmp_path / "model"
    model.mkdir()
    weights = {"vision_tower.embeddings.w": torch.ones(2), "language_model.lm_head.weight": torch.zeros(3)}
    save_file(weights, str(model / "model.safetensors"))
    (model / "config.json").write_text("{}")
    scratch = tmp_path / "scratch"
    view = Path(vllm_engine.vllm_ready_folder(str(model), scratch, "clip_vision_model"))
    assert view != model and (view / "config.json").is_symlink()
    with safe_open(str(view / "model.safetensors"), "pt") as handle:
        assert sorted(handle.keys()) == ["language_model.lm_head.weight", "vision_tower.vision_model.embeddings.w"]
        assert torch.equal(handle.get_tensor("vision_tower.vision_model.embeddings.w"), torch.ones(2))
    with safe_open(str(model / "model.safetensors"), "pt") as handle:  # the user's files are untouched
        assert "vision_tower.embeddings.w" in handle.keys()
    # A sharded checkpoint: only the shard with vision keys is copied, and the index follows the new names.
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({"vision_tower.encoder.w": torch.ones(1)}, str(sharded / "model-00001-of-00002.safetensors"))
    save_file({"language_model.lm_head.weight": torch.ones(1)}, str(sharded / "model-00002-of-00002.safetensors"))
    index = {
        "metadata": {},
        "weight_map": {
            "vision_tower.encoder.w": "model-00001-of-00002.safetensors",
            "language_model.lm_head.weight": "model-00002-of-00002.safetensors",
        },
    }
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    view = Path(vllm_engine.vllm_ready_folder(str(sharded), tmp_path / "scratch-2", "siglip_vision_model"))
    assert not (view / "model-00001-of-00002.safetensors").is_symlink()
    assert (view / "model-00002-of-00002.safetensors").is_symlink()
    assert json.loads((view / "model.safetensors.index.json").read_text())["weight_map"] == {
        "vision_tower.vision_model.encoder.w": "model-00001-of-00002.safetensors",
        "language_model.lm_head.weight": "model-00002-of-00002.safetensors",
    }
    # A model vLLM reads as it is: no copy.
    assert vllm_engine.vllm_ready_folder(str(view), tmp_path / "other", "clip_vision_model") == str(view)
    assert not (tmp_path / "other").exists()
    # A tower vLLM reads under transformers' names: no copy either.
    assert vllm_engine.vllm_ready_folder(str(model), tmp_path / "pixtral", "pixtral") == str(model)
    assert not (tmp_path / "pixtral").exists()


def test_each_process_of_a_node_gets_its_own_block_of_gpus():
    assert [vllm_engine.gpus_of_process(rank, 4, 2, 8) for rank in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert vllm_engine.gpus_of_process(0, 1, 1, 8) == [0]
    with pytest.raises(ValueError, match="need 8 GPUs; this node has 4"):
        vllm_engine.gpus_of_process(0, 4, 2, 4)


def test_a_scheduler_s_gpu_names_are_split_between_the_processes_of_a_node(monkeypatch):
    for rank, expected in ((0, "5,7"), (1, "2,3")):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7,2,3")
        vllm_engine.show_this_process_its_gpus(2, 4)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("LOCAL_RANK", "1")
    vllm_engine.show_this_process_its_gpus(1, 8)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_dora_and_large_ranks_are_merged_rather_than_given_to_vllm(tmp_path):
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"r": 128}))
    assert vllm_engine.plain_lora_vllm_takes(str(tmp_path))
    config.write_text(json.dumps({"r": 16, "use_dora": True}))
    assert not vllm_engine.plain_lora_vllm_takes(str(tmp_path))
    config.write_text(json.dumps({"r": 1024}))
    assert not vllm_engine.plain_lora_vllm_takes(str(tmp_path))
    assert not vllm_engine.plain_lora_vllm_takes(str(tmp_path / "hub-name"))  # no local config: merged


def test_auto_dtype_is_read_as_the_transformers_engines_read_it():
    import torch

    class Config:
        torch_dtype = torch.bfloat16

    assert vllm_engine.vllm_dtype("float16", Config()) == "float16"
    assert vllm_engine.vllm_dtype("auto", Config()) == ("bfloat16" if torch.cuda.is_available() else "float32")
    # Ray's GPU workers, seen from a command without a GPU: a GPU's rule, not this process's float32.
    assert vllm_engine.vllm_dtype("auto", Config(), gpus_elsewhere=True) == "bfloat16"
    Config.torch_dtype = torch.float32
    assert vllm_engine.vllm_dtype("auto", Config(), gpus_elsewhere=True) == "float16"
    assert vllm_engine.vllm_dtype("float32", Config(), gpus_elsewhere=True) == "float32"


def test_lora_rank_is_rounded_up_to_one_vllm_accepts(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert vllm_engine.lora_rank(str(tmp_path)) == 8
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 64}))
    assert vllm_engine.lora_rank(str(tmp_path)) == 64


def test_without_vllm_engine_vllm_stops_with_the_install_command(tiny, tmp_path, stic, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    args = ["pref", "model_name_or_path=" + tiny["tiny-llava"], "template=llava", "image_dir=" + tiny["images"]]
    result = stic(*args, f"dataset_dir={tmp_path / 'data'}", "engine=vllm")
    assert result.returncode != 0
    assert "install_vllm.sh" in result.stderr and "pip install -e '.[vllm]'" in result.stderr


# ---- stic-cli on vLLM's CPU build ----


def running_in_session(session: int) -> list[int]:
    """The processes of a session that still run (a zombie nobody reaped yet has ended)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def stopped_after_records(args: list[str], cwd: Path, hook: str, expected_code: int, log: Path) -> None:
    """Run pref with vLLM's engine in processes of its own (vLLM's default, as users run it) until ``hook`` stops it
    after 3 records (SIGKILL, or Ctrl-C to itself); then no engine process of its session may be left running."""
    env = subprocess_env(**{**VLLM_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", hook: "3"})
    with log.open("w") as stderr:
        command = subprocess.Popen(
            args, cwd=cwd, env=env, stderr=stderr, start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal
        )
        assert command.wait(timeout=600) == expected_code, log.read_text()[-3000:]
    deadline = time.monotonic() + 60  # the outcome awaited, not a race: they end within seconds
    while running_in_session(command.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = running_in_session(command.pid)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"left running after {hook}: {left}"


@needs_vllm
@pytest.mark.slow
@VLLM_IN_PROCESS
def test_pref_on_vllm_killed_then_interrupted_then_resumed_writes_each_image_once_with_the_same_texts(
    vllm_models, vllm_here, tmp_path
):
    """Batches of 4, against batches of 1 through a SIGKILL and a Ctrl-C with vLLM's engine in processes of its
    own: those end within seconds of the command, after Ctrl-C the command's one line is the last, with no
    traceback, and the resumed run writes each remaining image once, with the texts of the whole run. (The whole
    run and the resumed one run in this process: the two stopped runs are the commands as users run them.)"""
    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    whole = tmp_path / "whole"
    vllm_here(pref_command(model, "llava", images, whole, batch_size=4))
    expected = texts_by_image(whole)
    assert len(expected) == 12
    assert all(chosen and rejected for chosen, rejected in expected.values())
    assert len({chosen for chosen, _ in expected.values()}) > 1  # sampled: the images' texts differ

    stopped = tmp_path / "stopped"
    args = pref_command(model, "llava", images, stopped, batch_size=1)
    part = stopped / "stic_pref" / "part-00000-of-00001.jsonl"
    stopped_after_records(args, tmp_path, "STIC_KILL_AFTER_RECORDS", -9, tmp_path / "killed.txt")
    assert len(part.read_text().splitlines()) == 3
    interrupted = tmp_path / "interrupted.txt"
    stopped_after_records(args, tmp_path, "STIC_INTERRUPT_AFTER_RECORDS", 130, interrupted)
    text = interrupted.read_text()
    assert "3 already done, 9 to do" in text
    assert text.rstrip().splitlines()[-1] == "stic-cli pref: interrupted: 3 written; run the same command to resume"
    assert "Traceback" not in text
    assert len(part.read_text().splitlines()) == 6

    assert "6 already done, 6 to do" in vllm_here(args)
    keys = [json.loads(line)["stic"]["image"] for line in part.read_text().splitlines()]
    assert sorted(keys) == sorted(expected)  # every image exactly once
    assert texts_by_image(stopped) == expected


def run_here(args: list[str], cwd: Path | None = None) -> None:
    """A reference run on the transformers engines, in this process: the function the console script calls,
    without an interpreter's start (seconds each)."""
    from stic_plugin.commands import cli

    assert cli.main([str(arg) for arg in args[1:]]) == 0


def greedy_texts(model: str, template: str, images, data: Path, run, **keys) -> dict:
    run(pref_command(model, template, images, data, temperature=0, max_samples=6, **keys))
    return texts_by_image(data)


def equal_token_share(tokenizer, left: dict, right: dict) -> float:
    """Share of token positions where two sets of texts agree (first-token-to-last, per text)."""
    same = total = 0
    for key in left:
        for a, b in zip(left[key], right[key]):
            ids_a, ids_b = tokenizer(a)["input_ids"], tokenizer(b)["input_ids"]
            total += max(len(ids_a), len(ids_b))
            same += next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
    return same / max(total, 1)


@needs_vllm
@pytest.mark.slow
@VLLM_IN_PROCESS
@pytest.mark.parametrize("name,template", [("tiny-llava-vllm", "llava"), ("tiny-qwen2vl-vllm", "qwen2_vl")])
def test_greedy_vllm_writes_what_greedy_transformers_writes(vllm_models, vllm_here, tmp_path, name, template):
    from transformers import AutoTokenizer

    model, images = vllm_models[name], vllm_models["images"]
    on_vllm = greedy_texts(model, template, images, tmp_path / "vllm", vllm_here)
    on_plain = greedy_texts(model, template, images, tmp_path / "plain", run_here, engine="plain")
    assert set(on_vllm) == set(on_plain) and len(on_vllm) == 6
    share = equal_token_share(AutoTokenizer.from_pretrained(model), on_vllm, on_plain)
    print(f"{name}: {share:.3f} of greedy tokens equal between vllm and plain")
    assert share >= 0.95, (share, on_vllm, on_plain)


def greedy_descriptions(model: str, template: str, images, cwd: Path, name: str, run, **keys) -> dict[str, tuple]:
    """``stic-cli infuse`` at temperature 0 on one sample per image (the first six), by ``run`` for vLLM: image ->
    (its description,). (Unlike pref, infuse keeps every text: no pair is dropped.)"""
    llava_file = cwd / "six.json"
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "Shapes."}]
    llava_file.write_text(json.dumps([{"image": f"image_{i:03d}.png", "conversations": turns} for i in range(6)]))
    values = dict(model_name_or_path=model, template=template, llava_file=llava_file, image_folder=images)
    values.update(dataset_dir=cwd / name, temperature=0, infer_dtype="float32", max_new_tokens=24, engine="vllm")
    values.update(keys)
    args = ["stic-cli", "infuse", *key_values(**values)]
    (run if values["engine"] == "vllm" else run_here)(args, cwd)
    records = [json.loads(line) for part in sorted((cwd / name / "stic_sft").glob("*.jsonl")) for line in part.open()]
    return {r["images"][0]: tuple(r["stic"]["descriptions"]) for r in records}


@needs_vllm
@pytest.mark.slow
@VLLM_IN_PROCESS
def test_a_lora_adapter_takes_effect_on_vllm_as_in_transformers(vllm_models, vllm_here, tmp_path):
    from transformers import AutoTokenizer

    from helpers import random_lora_adapter

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    adapter = random_lora_adapter(model, tmp_path / "adapter", language_model_only=True)

    def describe(name: str, **keys) -> dict:
        return greedy_descriptions(model, "llava", images, tmp_path, name, vllm_here, **keys)

    with_lora = describe("lora", adapter_name_or_path=adapter)
    merged = describe("merged", adapter_name_or_path=adapter, engine="plain")
    base = describe("base", engine="plain")
    assert len(with_lora) == len(merged) == len(base) == 6
    tokenizer = AutoTokenizer.from_pretrained(model)
    share_merged, share_base = (
        equal_token_share(tokenizer, with_lora, merged),
        equal_token_share(tokenizer, with_lora, base),
    )
    print(
        f"LoRA on vLLM: {share_merged:.3f} of greedy tokens equal to the merged model's, {share_base:.3f} to the base's"
    )
    assert share_merged >= 0.95
    assert share_base < 0.5


@needs_vllm
@pytest.mark.slow
@VLLM_IN_PROCESS
def test_llava_next_adapter_is_merged_for_vllm_with_a_log_line(vllm_models, vllm_here, tmp_path):
    from helpers import random_lora_adapter

    model, images = vllm_models["tiny-llava-next-vllm"], vllm_models["images"]
    adapter = random_lora_adapter(model, tmp_path / "adapter", language_model_only=True)
    data = tmp_path / "data"
    args = pref_command(model, "llava_next_mistral", images, data, adapter_name_or_path=adapter, max_samples=3)
    assert "into a temporary copy of the model" in vllm_here(args)
    assert len(texts_by_image(data)) == 3


@needs_vllm
@pytest.mark.slow
@VLLM_IN_PROCESS
def test_infuse_and_dar_on_vllm_describe_as_transformers_does(vllm_models, vllm_here, tmp_path):
    from transformers import AutoTokenizer

    from helpers import read_records

    model, images = vllm_models["tiny-llava-vllm"], vllm_models["images"]
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "Shapes."}]
    source = [
        {"id": "one", "image": "image_000.png", "conversations": turns},
        {"id": "two-images", "image": ["image_001.png", "image_002.png"], "conversations": turns},
        {"id": "again", "image": "image_000.png", "conversations": turns},
    ]
    source[1]["conversations"] = [{"from": "human", "value": "<image><image>\nCompare."}, turns[1]]
    llava_file = tmp_path / "mix.json"
    llava_file.write_text(json.dumps(source))
    common = dict(model_name_or_path=model, template="llava", llava_file=llava_file, image_folder=images, temperature=0)
    common.update(infer_dtype="float32", max_new_tokens=16, batch_size=1)  # one image in flight at a time
    descriptions = {}
    for engine in ("vllm", "plain"):
        data = tmp_path / engine
        args = ["stic-cli", "infuse", *key_values(**common, dataset_dir=data, engine=engine)]
        (vllm_here if engine == "vllm" else run_here)(args, tmp_path)
        records = read_records(data / "stic_sft")
        assert len(records) == 3
        descriptions[engine] = {r["stic"]["sample"]: r["stic"]["descriptions"] for r in records}
    assert [len(descriptions["vllm"][index]) for index in range(3)] == [1, 2, 1]
    share = equal_token_share(AutoTokenizer.from_pretrained(model), descriptions["vllm"], descriptions["plain"])
    assert share >= 0.95, descriptions

    # describe-and-respond: a question with two images goes to vLLM with both; it answers as transformers does
    answers = {}
    for engine in ("vllm", "plain"):
        args = ["stic-cli", "dar", *key_values(**common, dataset_dir=tmp_path / f"pred-{engine}", engine=engine)]
        args[args.index("max_new_tokens=16")] = "description_max_new_tokens=16"
        (vllm_here if engine == "vllm" else run_here)(args, tmp_path)
        predictions = read_records(tmp_path / f"pred-{engine}" / "dar")
        assert sorted(p["id"] for p in predictions) == [0, 1, 2]
        assert all(p["description"] for p in predictions)
        answers[engine] = {p["id"]: (p["description"], p["prediction"]) for p in predictions}
    share = equal_token_share(AutoTokenizer.from_pretrained(model), answers["vllm"], answers["plain"])
    assert share >= 0.95, answers


def test_the_logit_bias_bans_the_token_that_fills_the_image_span_even_without_the_template_s(families):
    """InternVL: the template's ``<image>`` is not in the vocabulary; ``<IMG_CONTEXT>`` fills the span. Before:
    ``'<=' not supported between instances of 'int' and 'NoneType'``."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import get_infer_args
    from llamafactory.model import load_config, load_tokenizer

    model_args, data_args, _, _ = get_infer_args(
        dict(model_name_or_path=families["tiny-internvl"], template="intern_vl")
    )
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    config = load_config(model_args)
    assert tokenizer.convert_tokens_to_ids("<image>") is None
    bias = vllm_engine.banned_logit_bias(tokenizer, template, config)
    assert bias == {tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"): vllm_engine.BANNED_BIAS} | {
        token: vllm_engine.BANNED_BIAS for token in range(len(tokenizer), config.get_text_config().vocab_size)
    }


def test_an_architecture_vllm_lacks_is_refused_before_anything_loads():
    from types import SimpleNamespace

    registry = SimpleNamespace(get_supported_archs=lambda: ["LlavaForConditionalGeneration"])
    vllm = SimpleNamespace(__version__="0.26.0", ModelRegistry=registry)
    mllama = SimpleNamespace(architectures=["MllamaForConditionalGeneration"], model_type="mllama")
    with pytest.raises(ValueError) as refused:
        vllm_engine.refuse_unsupported(mllama, vllm)
    message = str(refused.value)
    assert "vLLM 0.26.0 cannot drive MllamaForConditionalGeneration (model type mllama): it does not have" in message
    assert "`engine: continuous` or `engine: plain`" in message and "\n" not in message
    vllm_engine.refuse_unsupported(SimpleNamespace(architectures=["LlavaForConditionalGeneration"]), vllm)
    registry.get_supported_archs = lambda: ["Gemma3ForConditionalGeneration"]
    gemma3 = SimpleNamespace(architectures=["Gemma3ForConditionalGeneration"], model_type="gemma3")
    with pytest.raises(ValueError, match="Gemma 3 processor loses the image when a newline follows it"):
        vllm_engine.refuse_unsupported(gemma3, vllm)
    registry.get_supported_archs = lambda: ["LlavaNextVideoForConditionalGeneration"]
    video = SimpleNamespace(architectures=["LlavaNextVideoForConditionalGeneration"], model_type="llava_next_video")
    with pytest.raises(ValueError, match="takes videos only"):
        vllm_engine.refuse_unsupported(video, vllm)


@pytest.mark.parametrize("amx", [True, False])
def test_a_short_convolution_vllm_s_cpu_build_cannot_pack_is_refused_on_a_cpu_with_amx(monkeypatch, amx):
    """vLLM 0.26's CPU build packs LFM2's convolutions for AMX with a width of 4 only (it fails to load LFM2's
    width of 3 there, deep in its start); on GPUs and on CPUs without AMX it runs them."""
    from types import SimpleNamespace

    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    vllm = SimpleNamespace(__version__="0.26.0", ModelRegistry=SimpleNamespace(get_supported_archs=lambda: ["Lfm2"]))
    text = SimpleNamespace(conv_L_cache=3)
    lfm2 = SimpleNamespace(architectures=["Lfm2"], model_type="lfm2_vl", get_text_config=lambda: text)
    vllm_engine.refuse_unsupported(lfm2, vllm, on_gpu=True)
    if amx:
        with pytest.raises(ValueError) as refused:
            vllm_engine.refuse_unsupported(lfm2, vllm, on_gpu=False)
        assert "cannot drive Lfm2 (model type lfm2_vl): its CPU build packs short convolutions" in str(refused.value)
        assert "this model's is 3; use `engine: continuous` or `engine: plain`" in str(refused.value)
    else:
        vllm_engine.refuse_unsupported(lfm2, vllm, on_gpu=False)
    text.conv_L_cache = 4
    vllm_engine.refuse_unsupported(lfm2, vllm, on_gpu=False)
    vllm_engine.refuse_unsupported(SimpleNamespace(architectures=["Lfm2"], model_type="llava"), vllm, on_gpu=False)


@needs_vllm
@pytest.mark.parametrize(
    "name,template,architecture",
    [
        ("tiny-mllama", "mllama", "MllamaForConditionalGeneration (model type mllama)"),
        ("tiny-video_llava", "video_llava", "VideoLlavaForConditionalGeneration (model type video_llava)"),
        ("tiny-gemma3", "gemma3", "Gemma3ForConditionalGeneration (model type gemma3)"),
    ],
)
def test_pref_on_vllm_refuses_what_it_cannot_drive_in_one_line_before_loading_it(
    families, tmp_path, stic, name, template, architecture
):
    """vLLM 0.26 has no Mllama nor Video-LLaVA, and its Gemma 3 loses our images: the command says so, and which
    engines drive the model, before loading it."""
    images = make_images(tmp_path / "images", count=1)[0].parent
    args = ["pref", f"model_name_or_path={families[name]}", f"template={template}", f"image_dir={images}"]
    result = stic(*args, f"dataset_dir={tmp_path / 'data'}", "engine=vllm")
    assert result.returncode == 2
    assert f"cannot drive {architecture}" in result.stderr
    assert "Traceback" not in result.stderr and "all params" not in result.stderr  # no weights were loaded


VLLM_FAMILIES = [
    ("tiny-qwen2_5_vl-vllm", "qwen2_vl"),
    ("tiny-qwen3_vl-vllm", "qwen3_vl"),
    ("tiny-internvl-vllm", "intern_vl"),
    ("tiny-glm4v-vllm", "glm4v"),
    ("tiny-mistral3-vllm", "mistral_small"),
    ("tiny-paligemma-vllm", "paligemma"),
    ("tiny-lfm2_vl-vllm", "lfm2_vl"),
    ("tiny-llama4-vllm", "llama4"),
    ("tiny-glm4v_moe-vllm", "glm4_5v"),
]


@needs_vllm
@pytest.mark.slow
@VLLM_IN_PROCESS
@pytest.mark.parametrize("name,template", VLLM_FAMILIES)
def test_pref_on_vllm_runs_on_each_family_vllm_has(vllm_families, vllm_models, vllm_here, tmp_path, name, template):
    """In this process (vllm_here). Before: InternVL failed on its image token, Mistral 3 on renamed weights. On a
    CPU with AMX, vLLM's CPU build cannot load LFM2's convolutions: the command says so before loading it."""
    import torch

    data = tmp_path / "data"
    command = pref_command(vllm_families[name], template, vllm_models["images"], data, max_samples=3)
    if template == "lfm2_vl" and torch.cpu._is_amx_tile_supported():
        stderr = vllm_here(command, expect_code=2)
        assert "its CPU build packs short convolutions for AMX with a width of 4 only" in stderr
        assert "Traceback" not in stderr and not texts_by_image(data)  # stopped before generating
        return
    vllm_here(command)
    texts = texts_by_image(data)
    assert len(texts) == 3 and all(chosen and rejected for chosen, rejected in texts.values())


@pytest.mark.slow
@needs_vllm
def test_vllm_s_processor_gets_the_pixels_the_transformers_engines_feed_the_model(tiny, tmp_path):
    """For odd image files, the images vLLM hands its processor (after its own parser) are those LLaMA-Factory's
    plugin hands the processor in the transformers engines (and in training), and the tensors are equal; a Ray
    worker of ``executor: ray`` makes the same prompt and images of the named file. vLLM's
    engine itself is not started: tests/generation/vllm_pixels.py runs vLLM's parser and processor alone."""
    import subprocess
    import sys

    import numpy as np
    import torch

    from stic_plugin.data.images import load_image
    from stic_plugin.generation.base import Request, user_turn

    from helpers import odd_images, subprocess_env, tiny_model

    models = [("tiny-llava", "llava"), ("tiny-llava-next", "llava_next_mistral"), ("tiny-qwen2vl", "qwen2_vl")]
    images = odd_images(tmp_path / "images")
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps({"models": [[tiny[m], t] for m, t in models], "images": [str(p) for p in images.values()]})
    )
    script = Path(__file__).with_name("vllm_pixels.py")
    ran = subprocess.run(
        [sys.executable, str(script), str(job), str(tmp_path / "vllm.pt")],
        env=subprocess_env(**VLLM_ENV),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    on_vllm = torch.load(tmp_path / "vllm.pt", weights_only=False)
    for model, template in models:
        loaded = tiny_model(tiny[model], template)
        plugin, processor = loaded.template.mm_plugin, loaded.processor
        for name, path in images.items():
            image = load_image(str(path), 10**8)
            # what the plugin hands the processor in the transformers engines (its _get_mm_inputs), and in training
            (handed,) = plugin._regularize_images(
                [image], image_max_pixels=processor.image_max_pixels, image_min_pixels=processor.image_min_pixels
            )["images"]
            request = Request.single(user_turn("Describe."), image)
            ids = [loaded.encode(request)]
            tensors = loaded.mm_inputs([request], ids, torch.tensor(ids))
            vllm = on_vllm[tiny[model], name]
            assert len(vllm["handed"]) == 1 and np.array_equal(vllm["handed"][0], np.asarray(handed)), (model, name)
            # executor: ray: a worker reads the named file and encodes the prompt as the engine does here
            assert vllm["ray_ids"] == vllm["ids"] and np.array_equal(vllm["ray_image"], vllm["engine_image"])
            assert set(vllm["tensors"]) <= set(tensors) and "pixel_values" in vllm["tensors"], (model, name)
            for key, value in vllm["tensors"].items():
                expected = torch.as_tensor(tensors[key])
                assert value.shape == expected.shape and torch.equal(value.float(), expected.float()), (
                    model,
                    name,
                    key,
                )
