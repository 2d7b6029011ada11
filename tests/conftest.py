"""Shared fixtures: offline environment, tiny models built once per session, a preference dataset."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports transformers or matplotlib: nothing from a hub, caches in a temporary folder.
_CACHE = Path(tempfile.mkdtemp(prefix="stic-tests-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_CACHE / "hf")
os.environ["MPLCONFIGDIR"] = str(_CACHE / "mpl")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # llamafactory-cli and torchrun live beside the interpreter

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


def run_cli(args: list[str], cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run a command the way a user does, with the environment's bin folder on PATH; output captured."""
    return subprocess.run(
        args, cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Paths of the tiny LLaVA, the tiny Qwen2-VL and sample images (built offline, once per session)."""
    from stic_plugin.fixtures import build_all

    return build_all(tmp_path_factory.mktemp("tiny"))


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


@pytest.fixture(scope="session")
def pref_dataset_dir(tiny, tmp_path_factory) -> Path:
    images = sorted(Path(tiny["images"]).glob("*.png"))
    return write_pref_dataset(tmp_path_factory.mktemp("data"), images)
