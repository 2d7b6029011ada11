"""The tiny models as plain and continuous generators, built once for every engine test; the tiny models that
vLLM's CPU build runs."""

import json
import subprocess
from pathlib import Path

import pytest

from helpers import VLLM_ENV, tiny_generator


@pytest.fixture(scope="session")
def generators(tiny):
    built = {}
    # name: (template, a bias on the stop token that makes rows end at different, data-dependent points)
    models = {
        "tiny-llava": ("llava", 0.3),
        "tiny-qwen2vl": ("qwen2_vl", 0.3),
        "tiny-llava-next": ("llava_next_mistral", 0.3),
    }
    for name, (template, stop_bias) in models.items():
        built[name] = {
            engine: tiny_generator(tiny[name], template, stop_bias, engine=engine) for engine in ("plain", "continuous")
        }
    return built


@pytest.fixture(scope="session")
def vllm_models(tmp_path_factory):
    import sys

    from stic_plugin.tools.fixtures import make_images

    # Built in a process of their own: in make test, after earlier tests of the same worker, saving a LLaVA in
    # the worker failed (transformers took LLaVA's config class for remote code and looked for its file).
    folder = tmp_path_factory.mktemp("vllm-models")
    built = subprocess.run(
        [sys.executable, "-m", "stic_plugin.tools.fixtures", "--vllm", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    built = json.loads(built.stdout)
    built["images"] = str(make_images(tmp_path_factory.mktemp("vllm-images"), count=12, seed=5)[0].parent)
    return built


@pytest.fixture(scope="session")
def vllm_families(tmp_path_factory):
    """The family models vLLM has (stic_plugin/tools/families.py), with heads its CPU build runs, built in a process
    of their own as ``vllm_models``."""
    import sys

    folder = tmp_path_factory.mktemp("vllm-families")
    command = [sys.executable, "-m", "stic_plugin.tools.families", "--vllm", str(folder)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


@pytest.fixture
def vllm_here(monkeypatch, capfd):
    """``stic-cli`` on vLLM in this process: the function the console script calls, with the settings the tests
    give vLLM, returning what the command wrote to stderr (vLLM writes to the console's file descriptor: captured
    at that level). Each engine start then costs seconds, not a process of its own; the subprocess path, as users
    run it, is tested on LLaVA through a kill and a Ctrl-C (test_vllm_engine.py) and on Ray (test_ray_executor.py).
    Its tests are marked ``VLLM_IN_PROCESS``."""
    import torch._dynamo

    from stic_plugin.commands import cli

    for key, value in VLLM_ENV.items():
        if key != "TORCH_COMPILE_DISABLE":  # read when torch is imported: this process imported it long ago
            monkeypatch.setenv(key, value)
    # What TORCH_COMPILE_DISABLE sets at torch's import, set for the test: vLLM's CPU sampler is compiled
    # otherwise, and each new vocabulary compiles C++ (and inductor's first compilation starts 10 interpreters).
    monkeypatch.setattr(torch._dynamo.config, "disable", True)

    def run(args: list[str], cwd: Path | None = None, expect_code: int = 0) -> str:
        capfd.readouterr()
        code = cli.main([str(arg) for arg in args[1:]])
        stderr = capfd.readouterr().err
        assert code == expect_code, stderr[-3000:]
        return stderr

    return run
