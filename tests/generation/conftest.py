"""The tiny models as plain and continuous generators, built once for every engine test."""

import pytest

from helpers import tiny_generator


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
