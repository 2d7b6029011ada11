"""The toy world's files: pictures of every split, the pretraining data, the instruction data, the
evaluation questions, and the ground truth, written once per (world seed, scale).

Splits (disjoint scene keys):

- ``pretrain``: the base model's training data (sharegpt, ``toy_pretrain`` in ``dataset_info.json``);
- ``unlabeled``: pictures only, for ``stic-cli pref``;
- ``instruct``: question/answer records in LLaVA's format, the "existing instruction data" of stage 2;
- ``validation`` and ``test``: a description request and questions per picture, in LLaVA's format
  (``validation.json``, ``test.json``), with the ground truth in ``truth/<split>.jsonl``.
"""

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ..assets import dataset_entry
from . import world


@dataclass(frozen=True)
class Scale:
    """How big the world and the base model's training are."""

    pretrain_images: int = 6000
    base_steps: int = 3000  # shapes are learned only after about 2000 steps at this learning rate
    unlabeled_images: int = 400
    instruction_images: int = 300
    validation_images: int = 200
    test_images: int = 300
    questions_per_image: int = 2


DEMO = Scale()
SMOKE = Scale(
    pretrain_images=120, base_steps=20, unlabeled_images=8, instruction_images=6, validation_images=6, test_images=6
)  # the test suite's reduced run: every stage, seconds each


@dataclass(frozen=True)
class Prompts:
    captioning: list
    hallucination: list
    preferred: list

    @classmethod
    def shipped(cls) -> "Prompts":
        from ..assets import default_prompt_file, read_prompts

        return cls(
            *(read_prompts(default_prompt_file(name), name) for name in ("captioning", "hallucination", "preferred"))
        )

    def all(self) -> list[str]:
        return list(self.captioning) + list(self.hallucination) + list(self.preferred)


def scenes(world_seed: int, split: str, count: int) -> list[world.Scene]:
    return [world.sample_scene(world_seed, split, index) for index in range(count)]


def pretraining_messages(scene: world.Scene, rng: random.Random, prompts: Prompts, questions: int) -> list[tuple]:
    """(prompt, answer) pairs the base model learns from for one scene.

    A plain caption under a captioning prompt (written carelessly: ``world.careless_caption_objects``),
    for about a third of the scenes a careful description under the step-by-step prompt, for some a
    description with imagined objects under a hallucination prompt (what such a prompt asks for), and
    questions with their answers."""
    careless = world.careless_caption_objects(scene, rng, world.CARELESS_SHARE)
    pairs = [(rng.choice(prompts.captioning), world.short_caption(careless))]
    if rng.random() < 0.35:
        pairs.append((rng.choice(prompts.preferred), world.detailed_description(scene.objects)))
    if rng.random() < 0.15:
        imagined = world.imagined_objects(scene, rng, rng.randint(1, 2))
        pairs.append((rng.choice(prompts.hallucination), world.detailed_description(list(scene.objects) + imagined)))
    pairs += [(question, answer) for _, question, answer in world.questions(scene, rng, questions)]
    return pairs


def write_world(root: Path, world_seed: int, scale: Scale, prompts: Prompts) -> dict:
    """Write every split under ``root``; returns the paths the experiment uses."""
    images = root / "images"
    counts = {
        "pretrain": scale.pretrain_images,
        "unlabeled": scale.unlabeled_images,
        "instruct": scale.instruction_images,
        "validation": scale.validation_images,
        "test": scale.test_images,
    }
    by_split = {split: scenes(world_seed, split, count) for split, count in counts.items()}
    for split, split_scenes in by_split.items():
        (images / split).mkdir(parents=True, exist_ok=True)
        for scene in split_scenes:
            world.render(scene).save(images / split / f"{scene.key}.png")

    records = []
    for index, scene in enumerate(by_split["pretrain"]):
        rng = world.scene_rng(world_seed, "pretrain", index, "texts")
        for prompt, answer in pretraining_messages(scene, rng, prompts, scale.questions_per_image):
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": f"<image>\n{prompt}"},
                        {"role": "assistant", "content": answer},
                    ],
                    "images": [f"images/pretrain/{scene.key}.png"],
                }
            )
    random.Random(f"toyworld:shuffle:{world_seed}").shuffle(records)
    _write_jsonl(root / "pretrain.jsonl", records)
    # the same columns as the SFT data stic-cli writes
    entry = {"file_name": "pretrain.jsonl", **dataset_entry("stic_sft")}
    (root / "dataset_info.json").write_text(json.dumps({"toy_pretrain": entry}, indent=2) + "\n")

    instruct = []
    for index, scene in enumerate(by_split["instruct"]):
        rng = world.scene_rng(world_seed, "instruct", index, "texts")
        for number, (_, question, answer) in enumerate(world.questions(scene, rng, scale.questions_per_image)):
            instruct.append(
                _llava_record(f"{scene.key}:{number}", f"images/instruct/{scene.key}.png", question, answer)
            )
    (root / "instruct.json").write_text(json.dumps(instruct, indent=1) + "\n")

    for split in ("validation", "test"):
        (root / "truth").mkdir(exist_ok=True)
        _write_jsonl(root / "truth" / f"{split}.jsonl", [scene.to_json() for scene in by_split[split]])
        requests = []
        for index, scene in enumerate(by_split[split]):
            rng = world.scene_rng(world_seed, split, index, "evaluation")
            image = f"images/{split}/{scene.key}.png"
            requests.append(_llava_record(f"describe:{scene.key}", image, rng.choice(prompts.captioning), None))
            for number, (kind, question, answer) in enumerate(world.questions(scene, rng, scale.questions_per_image)):
                requests.append(_llava_record(f"question:{kind}:{number}:{scene.key}", image, question, answer))
        (root / f"{split}.json").write_text(json.dumps(requests, indent=1) + "\n")
    return {
        "root": root,
        "counts": counts,
        "records": len(records),
        "instruct": len(instruct),
        "scale": asdict(scale),
        "world_seed": world_seed,
    }


def _llava_record(record_id: str, image: str, question: str, answer: str | None) -> dict:
    turns = [{"from": "human", "value": f"<image>\n{question}"}]
    if answer is not None:
        turns.append({"from": "gpt", "value": answer})
    return {"id": record_id, "image": image, "conversations": turns}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def read_truth(root: Path, split: str) -> dict[str, world.Scene]:
    scenes_by_key = {}
    for line in (root / "truth" / f"{split}.jsonl").read_text().splitlines():
        scene = world.Scene.from_json(json.loads(line))
        scenes_by_key[scene.key] = scene
    return scenes_by_key
