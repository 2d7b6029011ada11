"""The generator contract: one factory builds every engine, and an engine added from outside with one registration
drives pref, infuse, dar and the lmms-eval model, with no other change."""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from stic_plugin.generation import base
from stic_plugin.generation.base import Generation, Generator, GeneratorSettings, Request

from helpers import read_records


class EchoGenerator(Generator):
    """Writes, for each request, the number of its images and the last words of its last turn: no model."""

    built: list[GeneratorSettings] = []
    requests: list[Request] = []

    def __init__(self, settings: GeneratorSettings):
        EchoGenerator.built.append(settings)

    def generate_stream(self, requests, max_new_tokens, temperature=0.2, top_p=None, seed=None, slots=None, top_k=None):
        for request in requests:
            EchoGenerator.requests.append(request)
            assert all(isinstance(image, Image.Image) for image in request.images)
            words = request.messages[-1]["content"].split()[-3:]
            yield request, Generation(f"{len(request.images)} image(s): {' '.join(words)}", 4, False)


@pytest.fixture
def echo():
    EchoGenerator.built, EchoGenerator.requests = [], []
    base.register_engine("echo", EchoGenerator)
    yield EchoGenerator
    base.unregister_engine("echo")


def test_the_factory_builds_each_engine_and_refuses_what_it_does_not_know(echo):
    settings = GeneratorSettings("m", "llava", engine="echo")
    assert isinstance(base.create_generator(settings), EchoGenerator) and echo.built == [settings]
    with pytest.raises(ValueError, match="unknown engine 'nope'; known: continuous, plain, vllm, echo"):
        base.create_generator(GeneratorSettings("m", "llava", engine="nope"))
    with pytest.raises(ValueError, match="runs vLLM engines"):
        base.create_generator(GeneratorSettings("m", "llava", engine="echo", executor="ray"))
    with pytest.raises(ValueError, match="exists already"):
        base.register_engine("plain", EchoGenerator)
    assert set(base.ENGINES) == {"continuous", "plain", "vllm"}  # the built-in engines, each one line


def test_a_registered_engine_drives_pref_infuse_and_dar(echo, stic, tiny, tmp_path):
    from helpers import dar_args, pref_args

    data = tmp_path / "data"
    result = stic(*pref_args(tiny, tiny["images"], data, engine="echo", max_samples=3))
    assert result.returncode == 0, result.stderr[-2000:]
    pairs = read_records(data / "stic_pref")
    assert len(pairs) == 3 and all(pair["chosen"]["content"].startswith("1 image(s): ") for pair in pairs)
    assert echo.built[-1].engine == "echo" and echo.built[-1].model_name_or_path == tiny["tiny-llava"]

    questions = tmp_path / "questions.json"
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A shape."}]
    questions.write_text(
        json.dumps([{"id": f"q{i}", "image": f"image_00{i}.png", "conversations": turns} for i in range(2)])
    )
    infused = stic(
        "infuse",
        f"model_name_or_path={tiny['tiny-llava']}",
        "template=llava",
        f"llava_file={questions}",
        f"image_folder={tiny['images']}",
        f"dataset_dir={data}",
        "engine=echo",
        "num_samples=null",
    )
    assert infused.returncode == 0, infused.stderr[-2000:]
    (first, _) = read_records(data / "stic_sft")
    assert "Image description:\n1 image(s): " in first["messages"][0]["content"]

    answered = stic(*dar_args(tiny, questions, tmp_path / "predictions", engine="echo"))
    assert answered.returncode == 0, answered.stderr[-2000:]
    predictions = read_records(tmp_path / "predictions" / "dar")
    assert len(predictions) == 2 and all(p["description"].startswith("1 image(s): ") for p in predictions)
    assert all(p["prediction"].endswith("What?") for p in predictions)  # answered after its description


def test_a_registered_engine_drives_the_lmms_eval_model(echo, tiny):
    pytest.importorskip("lmms_eval")
    from stic_plugin.evaluation.model import SticModel

    model = SticModel(tiny["tiny-llava"], "llava", engine="echo", dar=True)
    image = Image.new("RGB", (32, 32), "red")
    doc = {"image": image}
    model.task_dict = {"task": {"test": [doc]}}
    request = SimpleNamespace(args=("What colour?", {"max_new_tokens": 8}, lambda d: [d["image"]], 0, "task", "test"))
    (answer,) = model.generate_until([request])
    assert answer.startswith("1 image(s): ") and echo.built[-1].engine == "echo"
    described, answered = echo.requests
    assert "Detail the composition" in described.messages[0]["content"]  # describe first, then answer
    assert "Image description:" in answered.messages[0]["content"]
