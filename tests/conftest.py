"""Shared fixtures: offline environment, tiny models built once per session, a preference dataset, one
``stic-cli pref`` output, and ``stic`` to run stic-cli in this process. Helpers: ``helpers.py``."""

import json
import logging
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

# Before anything imports torch, transformers or matplotlib: nothing from a hub, caches in a temporary folder.
_CACHE = Path(tempfile.mkdtemp(prefix="stic-tests-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_CACHE / "hf")
os.environ["MPLCONFIGDIR"] = str(_CACHE / "mpl")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per process (this one and every command it starts): the tiny models' matrices gain nothing
# from more, and with two or more every small operation waits for its threads, many times slower on a busy
# machine (one batch of the engine tests: 1.6 s with two threads, 0.09 s with one, while another process ran).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray's usage statistics off (Ray's own opt-out), as nothing here may phone home. With them on, Ray Data keeps a
# thread in the driver (a test process that runs a Ray Data stream) that queries a Prometheus this machine does not
# have, every few seconds, and logs each failure with its traceback; Python 3.11 parses source to format a
# traceback, and its parser's state is shared between threads: a test parsing source meanwhile failed with
# "SystemError: AST constructor recursion depth mismatch".
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from helpers import pref_args, run_cli, write_lmms_eval_tasks, write_pref_dataset  # noqa: E402 - after the environment above


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Paths of the tiny LLaVA, LLaVA-NeXT and Qwen2-VL and sample images (built offline, once per session)."""
    from stic_plugin.tools.fixtures import build_all

    return build_all(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def families(tmp_path_factory) -> dict[str, str]:
    """Paths of a tiny model of each other image model family (stic_plugin/tools/families.py: Qwen2.5-VL, Qwen3-VL,
    InternVL, GLM-4.1V and 4.5V, Mistral 3, Gemma 3, PaliGemma, Mllama, LFM2-VL, Llama 4, Qwen3.5, LLaVA-NeXT-Video,
    Video-LLaVA), built offline once per session."""
    from stic_plugin.tools.families import build_families

    return build_families(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="session")
def pref_dataset_dir(tiny, tmp_path_factory) -> Path:
    images = sorted(Path(tiny["images"]).glob("*.png"))
    return write_pref_dataset(tmp_path_factory.mktemp("data"), images)


@pytest.fixture(scope="session")
def pref_output(tiny, tmp_path_factory) -> SimpleNamespace:
    """One ``stic-cli pref`` run on the tiny LLaVA and its 8 images, as a user runs it, into a dataset_dir
    that already holds a dataset_info.json (another entry, mode 0644). For tests that only read it."""
    workdir = tmp_path_factory.mktemp("pref_output")
    data = workdir / "data"
    data.mkdir()
    info = data / "dataset_info.json"
    info.write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    info.chmod(0o644)
    args = pref_args(tiny, tiny["images"], data)
    result = run_cli(args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return SimpleNamespace(workdir=workdir, dataset_dir=data, result=result)


@pytest.fixture
def stic(capsys, caplog):
    """``stic(*argv)`` runs ``stic-cli`` in this process (``stic_plugin.commands.cli.main``); the result has
    ``returncode``, ``stdout``, and ``stderr`` (the logged lines included, as a subprocess would show them)."""
    from stic_plugin.commands import cli

    caplog.set_level(logging.INFO, logger="stic_plugin")

    def run(*argv: str) -> SimpleNamespace:
        capsys.readouterr()
        caplog.clear()
        args = list(argv[1:] if argv and argv[0] == "stic-cli" else argv)
        code = cli.main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err + caplog.text)

    return run


@pytest.fixture(scope="session")
def eval_tasks(tiny, tmp_path_factory) -> Path:
    """A task_dir for ``stic-cli eval``: the paper's scienceqa_img and textvqa_val, four local questions each."""
    return write_lmms_eval_tasks(tmp_path_factory.mktemp("lmms_eval"), sorted(Path(tiny["images"]).glob("*.png")))


@pytest.fixture(autouse=True)
def _pillow_refuses_truncated_images():
    """Importing lmms-eval (tests/commands/test_eval.py) sets Pillow's process-wide LOAD_TRUNCATED_IMAGES: set
    back after each test, so that the image tests of the same worker see Pillow's default."""
    yield
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under `--dist loadgroup` (make test), xdist marks each test of an xdist_group by a suffix of its id, and
    keeps the group on one worker: the web UI tests share one browser and run in order. A pytest with which that
    mark is lost would split the groups silently; stop here instead."""
    if getattr(config.option, "loadgroup", False):
        lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:
            raise pytest.UsageError(f"--dist loadgroup is not in effect for {lost[0]} (and {len(lost) - 1} more)")
        # The longest first (those that start vLLM's engine, then the other slow ones), so that the workers end
        # together: xdist hands out tests in this order (groups first, the largest before), and a minute-long test
        # handed out last would keep one worker busy after the other ran out of tests.
        items.sort(key=expected_cost_rank)


def expected_cost_rank(item) -> int:
    if item.get_closest_marker("slow") is None:
        return 2
    return 0 if "vllm_models" in getattr(item, "fixturenames", ()) else 1
