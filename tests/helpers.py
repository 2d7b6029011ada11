"""What several test files use: running the project's commands (in a subprocess as users do, or in this
process), small datasets, and tiny generators. Fixtures are in ``conftest.py``."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # llamafactory-cli, stic-cli and torchrun live beside the interpreter

# engine: vllm needs vLLM (make installs its CPU build); without it those tests are skipped, unless
# STIC_REQUIRE_VLLM=1 (CI) makes that an error.
VLLM_EXPECTED = importlib.util.find_spec("vllm") is not None or os.environ.get("STIC_REQUIRE_VLLM") == "1"
needs_vllm = pytest.mark.skipif(not VLLM_EXPECTED, reason="vLLM is not installed (bash scripts/install_vllm.sh .venv)")
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and os.environ.get("STIC_REQUIRE_VLLM") != "1",
    reason="Ray is not installed (bash scripts/install_vllm.sh .venv installs it with vLLM)",
)
# A small KV cache, and vLLM's engine in the command's own process: it starts in about 35 s instead of 55 s. (Users
# run it in its own process, vLLM's default: tests/generation/test_vllm_engine.py runs pref that way once.)
# TORCH_COMPILE_DISABLE: vLLM's CPU warm-up samples once without seeds, through a sampler it compiles with
# torch.compile; even from inductor's cache that costs about 20 s per start (inductor test-builds a C++ file per
# CPU instruction set, each in a new Python process), and the engine's start goes from 26 s to 4 s without it.
# Nothing these tests generate goes through that sampler: every request of ours has its own seed (or is greedy),
# which vLLM samples uncompiled.
VLLM_ENV = dict(
    VLLM_CPU_KVCACHE_SPACE="1",
    VLLM_LOGGING_LEVEL="WARNING",
    VLLM_ENABLE_V1_MULTIPROCESSING="0",
    TORCH_COMPILE_DISABLE="1",
)
# Tests that run vLLM in their own process (the vllm_here fixture, tests/generation/conftest.py): on one worker, which
# imports vLLM once.
VLLM_IN_PROCESS = pytest.mark.xdist_group("vllm_in_process")

PREF_DATASET_INFO = {
    "file_name": "stic_pref.jsonl",
    "formatting": "sharegpt",
    "ranking": True,
    "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` of a command a test sends Ctrl-C (SIGINT): the command gets it as a terminal's foreground
    command does, whatever this test run inherited: a run started in the background (``make test &``) ignores
    SIGINT, and its children would too."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def run_cli(args: list[str], cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run a command the way a user does, with the environment's bin folder on PATH; output captured."""
    return subprocess.run(
        args, cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


def key_values(**keys) -> list[str]:
    return [f"{key}={value}" for key, value in keys.items()]


def pref_args(tiny, image_dir, dataset_dir, model="tiny-llava", template="llava", **keys) -> list[str]:
    """``stic-cli pref`` on a tiny model: short generations, batches of 3; ``keys`` override."""
    values = dict(
        model_name_or_path=tiny[model],
        template=template,
        image_dir=str(image_dir),
        dataset_dir=str(dataset_dir),
        max_new_tokens=12,
        batch_size=3,
    )
    values.update(keys)
    return ["stic-cli", "pref", *key_values(**values)]


def dar_args(tiny, questions: Path, predictions_dir: Path, **keys) -> list[str]:
    """``stic-cli dar`` on the tiny LLaVA for a LLaVA file of questions about the tiny images; ``keys`` override."""
    values = dict(
        model_name_or_path=tiny["tiny-llava"],
        template="llava",
        llava_file=str(questions),
        image_folder=str(tiny["images"]),
        dataset_dir=str(predictions_dir),
    )
    values.update(keys)
    return ["stic-cli", "dar", *key_values(**values)]


def llamafactory_dataset(model: str, template: str, dataset: str, dataset_dir: Path, output_dir: Path, **keys):
    """A dataset as LLaMA-Factory's training prepares it (its argument parser, tokenizer, template, loader):
    (the dataset module, the tokenizer module). ``stage`` (default sft): stic_dpo prepares pairs."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    values = dict(
        model_name_or_path=model,
        template=template,
        stage="sft",
        do_train=True,
        dataset=dataset,
        dataset_dir=str(dataset_dir),
        output_dir=str(output_dir),
        cutoff_len=256,
        report_to="none",
        use_cpu=True,
    )
    values.update(keys)
    model_args, data_args, training_args, _, _ = get_train_args(values)
    tokenizer_module = load_tokenizer(model_args)
    chat_template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    stage = "rm" if values["stage"] in ("stic_dpo", "dpo", "rm") else "sft"  # rm: LLaMA-Factory's pairwise
    module = get_dataset(chat_template, model_args, data_args, training_args, stage=stage, **tokenizer_module)
    return module, tokenizer_module


def random_lora_adapter(model_dir: str, out_dir: Path, language_model_only: bool = False) -> Path:
    """A LoRA adapter of a tiny model with random, large B matrices: it must change what the model writes.
    ``language_model_only``: the vision tower keeps its weights, as in LLaMA-Factory's LoRA training."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    targets = ["q_proj", "v_proj", "down_proj"]
    if language_model_only:
        targets = r".*language_model.*\.(q_proj|v_proj|down_proj)"
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)  # far from the identity, so the adapter must change what is written
    peft_model.save_pretrained(out_dir)
    return out_dir


def letter_model(model_dir: str, out_dir: Path) -> Path:
    """A copy of the tiny LLaVA whose greedy answer to any question is "A." and its end (any token -> "A", "A" ->
    ".", "." -> the end), so that scores are neither all right nor all wrong."""
    from transformers import AutoTokenizer

    end = AutoTokenizer.from_pretrained(model_dir).eos_token
    return chain_model(model_dir, out_dir, {"A": ".", ".": end}, "A")


def chain_model(model_dir: str, out_dir: Path, following: dict[str, str], otherwise: str) -> Path:
    """A copy of a tiny model whose next token is a function of the last one alone: ``following[token]``, or
    ``otherwise`` for tokens not named. Every layer's output is zeroed, so the last token's embedding alone (a
    basis vector per named token, another for the rest) picks the next token through the output layer."""
    import shutil

    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    shutil.copytree(model_dir, out_dir)
    model = AutoModelForImageTextToText.from_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in [*following.values(), *following, otherwise]}
    text = model.model.language_model
    with torch.no_grad():
        for layer in text.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding, head = text.embed_tokens.weight, model.lm_head.weight
        embedding.zero_()
        embedding[:, 0] = 1.0
        head.zero_()
        head[ids[otherwise], 0] = 10.0
        for column, (token, next_token) in enumerate(following.items(), start=1):
            embedding[ids[token]] = 0.0
            embedding[ids[token], column] = 1.0
            head[ids[next_token], column] = 10.0
    model.save_pretrained(out_dir)
    return out_dir


def read_records(folder: Path) -> list[dict]:
    """Every record of a generated dataset folder (all part files), in part order."""
    return [json.loads(line) for part in sorted(folder.glob("*.jsonl")) for line in part.read_text().splitlines()]


def write_pref_dataset(dataset_dir: Path, images: list[Path], name: str = "stic_pref") -> Path:
    """A small sharegpt preference dataset in the layout the generators write."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for index, image in enumerate(images):
        records.append(
            {
                "messages": [{"role": "user", "content": "<image>Illustrate the details of the picture."}],
                "chosen": {"role": "assistant", "content": f"a red car and a blue house, picture {index}"},
                "rejected": {"role": "assistant", "content": "a dog"},
                "images": [str(image)],
            }
        )
    (dataset_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    info_path = dataset_dir / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = dict(PREF_DATASET_INFO, file_name=f"{name}.jsonl")
    info_path.write_text(json.dumps(info, indent=2))
    return dataset_dir


# ---- tiny generators for the engine tests ----
def tiny_model(path: str, template: str, stop_bias: float = 0.3):
    """A tiny model in float32 with sharp attention and a likely stop token (rows end at varied points)."""
    from stic_plugin.generation.base import GeneratorSettings
    from stic_plugin.generation.transformers_engine import TransformersModel

    loaded = TransformersModel.load(GeneratorSettings(path, template, infer_dtype="float32"))
    sharpen_attention(loaded.model)
    loaded.banned_bias[loaded.stop_token_ids[0]] = stop_bias
    return loaded


def tiny_generator(path: str, template: str, stop_bias: float = 0.3, engine: str = "continuous", **options):
    """An engine (``engine``: continuous or plain; ``options``: the continuous engine's) on a ``tiny_model``."""
    from stic_plugin.generation.transformers_engine import ContinuousGenerator, PlainGenerator

    loaded = tiny_model(path, template, stop_bias)
    return PlainGenerator(loaded) if engine == "plain" else ContinuousGenerator(loaded, **options)


def sharpen_attention(model, factor: float = 625.0):
    """Scale the text model's query and key projections, so that attention, and with it every token
    position, decides the output (random tiny models attend almost uniformly otherwise)."""
    import torch

    with torch.no_grad():
        for name, module in model.model.language_model.named_modules():
            if name.endswith(("q_proj", "k_proj")):
                module.weight.mul_(factor**0.5)
                if module.bias is not None:
                    module.bias.mul_(factor**0.5)


def mixed_requests(count: int, long_from: int | None = None):
    """Requests of varied images (sizes, so that Qwen2-VL's grids differ), prompts, limits, and some text-only."""
    from PIL import Image

    from stic_plugin.generation.base import Request, user_turn

    requests = []
    for index in range(count):
        if index % 5 == 4:  # text only: no image, no image positions
            requests.append(
                Request(
                    [{"role": "user", "content": f"Say something about {index} " + "words " * (index % 7)}],
                    key=f"r{index}",
                    max_new_tokens=[24, 5, 17][index % 3],
                )
            )
            continue
        # Sizes vary so that Qwen2-VL's image grids differ; square 448 px ones span fewer positions than tokens.
        size = (448, 448) if index % 3 == 0 else (100 + 70 * (index % 6), 90 + 60 * (index % 5))
        image = Image.new("RGB", size, ((37 * index) % 256, 90, 160))
        words = "in great detail " * (12 if long_from is not None and index >= long_from else index % 3)
        requests.append(
            Request.single(
                user_turn(f"Describe picture {index} {words}"),
                image,
                key=f"r{index}",
                max_new_tokens=[24, 5, 17, 1, 30, 9][index % 6],
                min_new_tokens=[0, 0, 4, 0, 12, 0][index % 6],
            )
        )
    return requests


# ---- lmms-eval: the paper's tasks on tiny local data ----
SCIENCEQA_CHOICES = ["circle", "square", "triangle"]
# TextVQA-like answers (ten per question, as TextVQA): how many say "a" (the rest say "b")
TEXTVQA_A_COUNTS = [10, 2, 0, 3]


def write_lmms_eval_tasks(folder: Path, images: list[Path]) -> Path:
    """A folder of lmms-eval task YAMLs named as the paper's tasks, ``scienceqa_img`` and ``textvqa_val``: each
    includes lmms-eval's own YAML (prompts, scoring) and reads four questions saved here with ``datasets``,
    in the real datasets' columns. TextVQA's answers are cut at 16 tokens (the task sets no limit)."""
    import datasets
    import lmms_eval
    from PIL import Image

    tasks = Path(lmms_eval.__file__).parent / "tasks"
    science = datasets.Dataset.from_list(
        [
            {
                "image": Image.open(path).convert("RGB"),
                "question": f"Which shape is in picture {index}?",
                "choices": SCIENCEQA_CHOICES,
                "answer": index % 3,  # targets A, B, C, A
                "hint": "The picture has shapes." if index % 2 else "",
            }
            for index, path in enumerate(images[:4])
        ],
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "choices": datasets.Sequence(datasets.Value("string")),
                "answer": datasets.Value("int64"),
                "hint": datasets.Value("string"),
            }
        ),
    )
    datasets.DatasetDict({"test": science}).save_to_disk(str(folder / "data" / "scienceqa_img"))
    textvqa = datasets.Dataset.from_list(
        [
            {
                "image": Image.open(path).convert("RGB"),
                "question": f"what is written in picture {index}?",
                "answers": ["a"] * count + ["b"] * (10 - count),
                "answer": "a" if count else "b",
                "question_id": index,
                "ocr_tokens": ["a", "b"],
            }
            for index, (path, count) in enumerate(zip(images[4:8], TEXTVQA_A_COUNTS))
        ],
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "answers": datasets.Sequence(datasets.Value("string")),
                "answer": datasets.Value("string"),
                "question_id": datasets.Value("int64"),
                "ocr_tokens": datasets.Sequence(datasets.Value("string")),
            }
        ),
    )
    datasets.DatasetDict({"validation": textvqa}).save_to_disk(str(folder / "data" / "textvqa_val"))
    task_dir = folder / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    local = "dataset_kwargs:\n  load_from_disk: true\n"
    (task_dir / "scienceqa_img.yaml").write_text(
        f"include: {tasks / 'scienceqa' / 'scienceqa_img.yaml'}\ntask: scienceqa_img\n"
        f"dataset_path: {folder / 'data' / 'scienceqa_img'}\ndataset_name: null\n{local}"
    )
    (task_dir / "textvqa_val.yaml").write_text(
        f"include: {tasks / 'textvqa' / 'textvqa_val.yaml'}\ntask: textvqa_val\n"
        f"dataset_path: {folder / 'data' / 'textvqa_val'}\n{local}"
        "generation_kwargs:\n  until: ['ASSISTANT:']\n  max_new_tokens: 16\n"
    )
    return task_dir


def lmms_eval_samples(results_file: Path) -> dict[str, list[dict]]:
    """task -> the samples lmms-eval logged beside a results file (``<date>_samples_<task>.jsonl``)."""
    date = results_file.name.removesuffix("_results.json")
    found = {}
    for path in results_file.parent.glob(f"{date}_samples_*.jsonl"):
        task = path.name.removeprefix(f"{date}_samples_").removesuffix(".jsonl")
        found[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return found


def killed_after_records(args: list[str], cwd: Path, part: Path, records: int, timeout: int = 600, **env: str) -> int:
    """Run a command as users do until it kills itself (SIGKILL) right after writing ``records`` records
    (``STIC_KILL_AFTER_RECORDS``: a point that does not depend on the machine's speed); then end every process
    it started, and return the lines ``part`` holds. Fails if the command ends otherwise."""
    import signal

    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=subprocess_env(STIC_KILL_AFTER_RECORDS=str(records), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # what it left behind (or the command itself, past the timeout)
        except ProcessLookupError:
            pass
    assert code == -signal.SIGKILL, f"the run ended with {code} before it was killed after {records} records"
    return part.read_bytes().count(b"\n")


# ---- stic-cli on vLLM's CPU build ----


def pref_command(model: str, template: str, images, data: Path, **keys) -> list[str]:
    values = dict(
        model_name_or_path=model,
        template=template,
        image_dir=str(images),
        dataset_dir=str(data),
        engine="vllm",
        infer_dtype="float32",
        max_new_tokens=24,
        batch_size=4,
        temperature=0.7,
    )
    values.update(keys)
    return ["stic-cli", "pref", *key_values(**values)]


def texts_by_image(data: Path, name: str = "stic_pref") -> dict[str, tuple[str, str]]:
    records = [json.loads(line) for part in sorted((data / name).glob("*.jsonl")) for line in part.open()]
    return {r["stic"]["image"]: (r["chosen"]["content"], r["rejected"]["content"]) for r in records}


def run_vllm(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    result = run_cli(args, cwd=cwd, timeout=900, **{**VLLM_ENV, **env})
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def odd_images(folder: Path) -> dict[str, Path]:
    """Image files that the loaders of a library may each treat their own way: orientation metadata (EXIF in a
    JPEG and a PNG, a TIFF tag), CMYK, 16-bit, a palette with a transparent entry, alpha, tiny, very wide."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)

    def noise(height: int, width: int, channels: int = 3, dtype=np.uint8, top: int = 256):
        return rng.integers(0, top, (height, width, channels) if channels else (height, width), dtype=dtype)

    folder.mkdir(parents=True, exist_ok=True)
    turned = Image.fromarray(noise(40, 60))
    exif = turned.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees to display
    palette = Image.fromarray(noise(30, 40, 0, top=8)).convert("P")
    palette.putpalette(list(noise(1, 256, 3).reshape(-1)))
    images = {
        "exif-rotated.jpg": (turned, dict(exif=exif, quality=95)),
        "exif-rotated.png": (turned, dict(exif=exif)),
        "tiff-rotated.tif": (turned, dict(tiffinfo={0x0112: 8})),
        "cmyk.jpg": (Image.frombytes("CMYK", (50, 40), noise(40, 50, 4).tobytes()), dict(quality=95)),
        "gray16.png": (Image.fromarray(noise(30, 40, 0, np.uint16, 65535)), {}),
        "palette-transparent.png": (palette, dict(transparency=3)),
        "rgba.png": (Image.fromarray(noise(30, 40, 4)), {}),
        "tiny.png": (Image.fromarray(noise(2, 3)), {}),
        "very-wide.png": (Image.fromarray(noise(4, 760)), {}),  # 190:1, just under what the loader skips
    }
    paths = {}
    for name, (image, options) in images.items():
        paths[name] = folder / name
        image.save(paths[name], **options)
    return paths
