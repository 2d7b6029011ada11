"""STIC on every image model family of the matrix in docs/models.md, in this process: ``pref`` on the default engine,
one ``stic_dpo`` step (LLaMA-Factory's ``run_exp``, as ``llamafactory-cli train`` runs it), then ``infuse``, ``dar``
and ``eval`` with the trained adapter. (The same commands in subprocesses, as users start them, are tested on the
tiny LLaVA, LLaVA-NeXT and Qwen2-VL elsewhere.)"""

import json
from pathlib import Path

import pytest

from helpers import read_records

# (model of the ``tiny`` or ``families`` fixture, template, the training keys it needs besides the defaults). LLaVA-1.5,
# LLaVA-1.6-Mistral and Qwen2-VL run every command in subprocesses elsewhere; here LLaVA-NeXT's other template.
FAMILIES = [
    ("tiny-llava-next", "llava_next", {}),
    ("tiny-qwen2_5_vl", "qwen2_vl", {}),
    ("tiny-qwen2_5_vl", "mimo_vl", {}),  # MiMo-VL: Qwen2.5-VL's architecture, a thinking template
    ("tiny-qwen3_vl", "qwen3_vl", {}),
    ("tiny-qwen3_vl", "qwen3_vl_nothink", {}),
    ("tiny-internvl", "intern_vl", {}),
    ("tiny-glm4v", "glm4v", {}),
    ("tiny-mistral3", "mistral_small", {}),
    ("tiny-mistral3", "pixtral", {}),
    ("tiny-mistral3", "ministral3", {}),
    ("tiny-gemma3", "gemma3", {}),
    ("tiny-paligemma", "paligemma", {}),
    ("tiny-paligemma", "paligemma_chat", {}),
    ("tiny-mllama", "mllama", {}),
    ("tiny-lfm2_vl", "lfm2_vl", {}),
    ("tiny-qwen3_5", "qwen3_5", {}),
    ("tiny-qwen3_5", "qwen3_5_nothink", {}),
    ("tiny-glm4v_moe", "glm4_5v", {}),
    ("tiny-llava_next_video", "llava_next_video", {}),
    ("tiny-video_llava", "video_llava", {}),
    # Llama 4's processor gives bfloat16 pixels: its training runs in bf16 (in fp32 LLaMA-Factory's own dpo fails)
    ("tiny-llama4", "llama4", {"bf16": True}),
]


def stic_dpo_step(model: str, template: str, dataset_dir: Path, output_dir: Path, **keys) -> None:
    from llamafactory.train.tuner import run_exp

    config = dict(
        model_name_or_path=model,
        template=template,
        stage="stic_dpo",
        do_train=True,
        finetuning_type="lora",
        lora_target="all",
        lora_rank=4,
        dataset="stic_pref",
        dataset_dir=str(dataset_dir),
        cutoff_len=512,
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        max_steps=1,
        logging_steps=1,
        learning_rate=1.0e-3,
        report_to="none",
        use_cpu=True,
    )
    run_exp({**config, **keys})


@pytest.mark.slow
@pytest.mark.parametrize("name,template,train_keys", FAMILIES, ids=[f"{m}-{t}" for m, t, _ in FAMILIES])
def test_stic_runs_on_the_family(tiny, families, eval_tasks, tmp_path, stic, monkeypatch, name, template, train_keys):
    model = {**tiny, **families}[name]
    images = tiny["images"]
    common = [f"model_name_or_path={model}", f"template={template}", "infer_dtype=float32"]

    data = tmp_path / "data"
    pref = stic("pref", *common, f"image_dir={images}", f"dataset_dir={data}", "max_samples=4", "max_new_tokens=8")
    assert pref.returncode == 0, pref.stderr[-3000:]
    pairs = read_records(data / "stic_pref")
    stats = json.loads((data / "stic_pref.stats.json").read_text())  # a random model's empty text drops its pair
    assert len(pairs) == stats["pairs"] == 4 - sum(stats["dropped"].values()) >= 2
    assert all(pair["chosen"]["content"] and pair["rejected"]["content"] for pair in pairs)

    stage1 = tmp_path / "stage1"
    stic_dpo_step(model, template, data, stage1, **train_keys)
    assert (stage1 / "adapter_model.safetensors").is_file()
    assert [line for line in (stage1 / "trainer_log.jsonl").read_text().splitlines() if '"loss"' in line]

    adapter = [f"adapter_name_or_path={stage1}", "max_new_tokens=6", "batch_size=2"]
    questions = tmp_path / "questions.json"
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "Shapes."}]
    questions.write_text(
        json.dumps([{"id": str(i), "image": f"image_00{i}.png", "conversations": turns} for i in (0, 1)])
    )
    sources = [f"llava_file={questions}", f"image_folder={images}"]
    infuse = stic("infuse", *common, *adapter, *sources, f"dataset_dir={tmp_path / 'infused'}")
    assert infuse.returncode == 0, infuse.stderr[-3000:]
    infused = read_records(tmp_path / "infused" / "stic_sft")
    assert len(infused) == 2 and all(record["stic"]["descriptions"][0] for record in infused)

    dar = stic(
        "dar", *common, *adapter, *sources, f"dataset_dir={tmp_path / 'answers'}", "description_max_new_tokens=6"
    )
    assert dar.returncode == 0, dar.stderr[-3000:]
    assert len(read_records(tmp_path / "answers" / "dar")) == 2

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    evaluated = stic(
        "eval",
        *common,
        f"adapter_name_or_path={stage1}",
        f"task_dir={eval_tasks}",
        "tasks=[scienceqa_img]",
        f"output_dir={tmp_path / 'eval'}",
        "run_name=stic",
        "dar=true",
        "description_max_new_tokens=6",
        "batch_size=2",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (
        "scienceqa_img" in json.loads(next((tmp_path / "eval" / "stic").rglob("*_results.json")).read_text())["results"]
    )
