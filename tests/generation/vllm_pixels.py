"""What vLLM's processor makes of the images the vllm engine hands it, without starting vLLM's engine.

Run in a process of its own (importing vLLM changes transformers' registries for the rest of a process):
``python vllm_pixels.py JOB.json OUT.pt``, where the job names ``models`` ([folder, template] pairs) and
``images`` (files). For each model and image, the engine's own ``prompt`` builds vLLM's input; vLLM's parser
prepares its images, as vLLM's engine does, and vLLM calls the model's Hugging Face processor on them. OUT.pt
holds, per model folder and image file name, the images handed to that processor (uint8 arrays) and the
processor's image tensors; and what a Ray worker of ``executor: ray`` makes of the same file (its prompt's token
ids and images, beside the engine's own)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch


def main(job_file: str, out: str) -> None:
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    from stic_plugin.data.images import load_image
    from stic_plugin.generation.base import GeneratorSettings, Request, user_turn
    from stic_plugin.generation.ray_executor import RowMaker
    from stic_plugin.generation.vllm_engine import VllmGenerator
    from stic_plugin.pipeline.image_inputs import ImageFile

    class EngineNotStarted(VllmGenerator):
        def start_engine(self, vllm):
            return None

    job = json.loads(Path(job_file).read_text())
    results = {}
    for model, template in job["models"]:
        generator = EngineNotStarted(GeneratorSettings(model, template, infer_dtype="float32"))
        folder = generator.engine_args["model"]
        config = ModelConfig(model=folder, tokenizer=folder, dtype="float32")
        processor = MULTIMODAL_REGISTRY.create_processor(config)
        text = processor.dummy_inputs.get_dummy_text({"image": 1})
        worker = RowMaker(
            generator.template,
            generator.tokenizer,
            generator.processor,
            generator.image_max_pixels,
            generator.image_min_pixels,
            generator.logit_bias,
        )
        for path in job["images"]:
            prompt = generator.prompt(Request.single(user_turn("Describe."), load_image(path, 10**8)))
            request = Request.single(user_turn("Describe."), ImageFile(path, 10**8))
            named = {"messages": request.messages, "system": request.system, "images": request.images}
            on_ray = worker.prompt(named)
            data = {}
            for items in processor.data_parser.parse_mm_data(prompt["multi_modal_data"]).values():
                data.update(items.get_processor_data())
            tensors = processor.info.ctx.call_hf_processor(processor.info.get_hf_processor(), dict(text=text, **data))
            results[model, Path(path).name] = {
                "handed": [np.asarray(image) for image in data["images"]],
                "ids": list(prompt["prompt_token_ids"]),
                "engine_image": np.asarray(prompt["multi_modal_data"]["image"]),
                "ray_ids": list(on_ray["tokenized_prompt"]),
                "ray_image": np.asarray(on_ray["multimodal_data"]["image"]),
                "tensors": {
                    key: tensors[key] for key in ("pixel_values", "image_sizes", "image_grid_thw") if key in tensors
                },
            }
        generator.close()
    torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
