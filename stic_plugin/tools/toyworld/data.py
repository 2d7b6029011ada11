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

from ...assets import dataset_entry
from . import world

IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's, in the data it reads


@dataclass(frozen=True)
class Scale:
    """How big the world and the base model's training are."""

    pretrain_images: int = 6000
    base_steps: int = 4000
    unlabeled_images: int = 400
    instruction_images: int = 300
    validation_images: int = 200
    test_images: int = 300
    questions_per_image: int = 2  # of the instruction, validation and test pictures
    pretrain_questions: int = 3  # of each pretraining picture


DEMO = Scale()
SMOKE = Scale(
    pretrain_images=120, base_steps=20, unlabeled_images=8, instruction_images=6, validation_images=6, test_images=6
)  # the test suite's reduced run: every stage, seconds each

# The world seed of every split but the test split, and of the test split: the test pictures were drawn with a
# seed of their own, first used when the protocol (docs/toy-world/protocol.md) was fixed.
WORLD_SEED = 0
TEST_WORLD_SEED = 1
# Shares of the pretraining data (per picture): a careful description under the step-by-step prompt, a
# description with imagined objects under a hallucination prompt, and a question that comes with a
# description of the picture in its turn (infused as stage 2 infuses), careful or careless.
CAREFUL_SHARE = 0.4
IMAGINED_SHARE = 0.15
INFUSED_SHARE = 0.75
CAREFUL_INFUSED_SHARE = 0.7  # of the descriptions before questions, the careful ones


@dataclass(frozen=True)
class Prompts:
    captioning: list
    hallucination: list
    preferred: list

    @classmethod
    def shipped(cls) -> "Prompts":
        from ...assets import default_prompt_file, read_prompts

        return cls(
            *(read_prompts(default_prompt_file(name), name) for name in ("captioning", "hallucination", "preferred"))
        )

    def all(self) -> list[str]:
        return list(self.captioning) + list(self.hallucination) + list(self.preferred)


def scenes(world_seed: int, split: str, count: int) -> list[world.Scene]:
    return [world.sample_scene(world_seed, split, index) for index in range(count)]


def pretraining_messages(
    scene: world.Scene, rng: random.Random, prompts: Prompts, questions: int, infusion_format: str
) -> list[tuple[str, str]]:
    """(user turn, answer) pairs the base model learns from for one scene.

    A caption under a captioning prompt, written carelessly (``world.careless_objects``); for some scenes a
    careful description under the step-by-step prompt, and a description with imagined objects under a
    hallucination prompt (what such a prompt asks for); questions with their right answers, most of them
    after a description of the picture (careful or careless: the model learns to read one, and that it
    may be wrong)."""
    image = IMAGE_PLACEHOLDER + "\n"
    pairs = [(image + rng.choice(prompts.captioning), world.describe(world.careless_objects(scene, rng)))]
    if rng.random() < CAREFUL_SHARE:
        pairs.append((image + rng.choice(prompts.preferred), world.describe(scene.objects)))
    if rng.random() < IMAGINED_SHARE:
        imagined = world.imagined_objects(scene, rng, rng.randint(1, 2))
        pairs.append((image + rng.choice(prompts.hallucination), world.describe(list(scene.objects) + imagined)))
    for _, question, answer in world.questions(scene, rng, questions):
        if rng.random() < INFUSED_SHARE:
            seen = scene.objects if rng.random() < CAREFUL_INFUSED_SHARE else world.careless_objects(scene, rng)
            turn = infusion_format.format(
                images=IMAGE_PLACEHOLDER, description=world.describe(seen), instruction=question
            )
            pairs.append((turn, answer))
        else:
            pairs.append((image + question, answer))
    return pairs


def split_seed(split: str) -> int:
    return TEST_WORLD_SEED if split == "test" else WORLD_SEED


def write_world(root: Path, scale: Scale, prompts: Prompts, infusion_format: str, pretraining: bool = True) -> dict:
    """Write every split under ``root`` (the pretraining pictures and data only with ``pretraining``: a
    shipped base model needs none); returns what was written."""
    images = root / "images"
    counts = {
        "unlabeled": scale.unlabeled_images,
        "instruct": scale.instruction_images,
        "validation": scale.validation_images,
        "test": scale.test_images,
    }
    if pretraining:
        counts = {"pretrain": scale.pretrain_images, **counts}
    by_split = {split: scenes(split_seed(split), split, count) for split, count in counts.items()}
    for split, split_scenes in by_split.items():
        (images / split).mkdir(parents=True, exist_ok=True)
        for scene in split_scenes:
            world.render(scene).save(images / split / f"{scene.key}.png")
        if split != "pretrain":
            (root / "truth").mkdir(exist_ok=True)
            _write_jsonl(root / "truth" / f"{split}.jsonl", [scene.to_json() for scene in split_scenes])

    records = []
    for index, scene in enumerate(by_split.get("pretrain", [])):
        rng = world.scene_rng(WORLD_SEED, "pretrain", index, "texts")
        for turn, answer in pretraining_messages(scene, rng, prompts, scale.pretrain_questions, infusion_format):
            records.append(
                {
                    "messages": [{"role": "user", "content": turn}, {"role": "assistant", "content": answer}],
                    "images": [f"images/pretrain/{scene.key}.png"],
                }
            )
    if pretraining:
        random.Random(f"toyworld:shuffle:{WORLD_SEED}").shuffle(records)
        _write_jsonl(root / "pretrain.jsonl", records)
        # the same columns as the SFT data stic-cli writes
        entry = {"file_name": "pretrain.jsonl", **dataset_entry("stic_sft")}
        (root / "dataset_info.json").write_text(json.dumps({"toy_pretrain": entry}, indent=2) + "\n")

    instruct = []
    for index, scene in enumerate(by_split["instruct"]):
        rng = world.scene_rng(WORLD_SEED, "instruct", index, "texts")
        for number, (_, question, answer) in enumerate(world.questions(scene, rng, scale.questions_per_image)):
            instruct.append(
                _llava_record(f"{scene.key}:{number}", f"images/instruct/{scene.key}.png", question, answer)
            )
    (root / "instruct.json").write_text(json.dumps(instruct, indent=1) + "\n")

    for split in ("validation", "test"):
        requests, with_truth = [], []
        for index, scene in enumerate(by_split[split]):
            rng = world.scene_rng(split_seed(split), split, index, "evaluation")
            image = f"images/{split}/{scene.key}.png"
            requests.append(_llava_record(f"describe:{scene.key}", image, rng.choice(prompts.captioning), None))
            for number, (kind, question, answer) in enumerate(world.questions(scene, rng, scale.questions_per_image)):
                record_id = f"question:{kind}:{number}:{scene.key}"
                requests.append(_llava_record(record_id, image, question, answer))
                # the same question after the true description: what describe-and-respond gives at best
                infused = infusion_format.format(
                    images="", description=world.describe(scene.objects), instruction=question
                )
                with_truth.append(_llava_record(record_id, image, infused.lstrip("\n"), answer))
        (root / f"{split}.json").write_text(json.dumps(requests, indent=1) + "\n")
        (root / f"{split}_true_descriptions.json").write_text(json.dumps(with_truth, indent=1) + "\n")
    return {"counts": counts, "records": len(records), "instruct": len(instruct), "scale": asdict(scale)}


def _llava_record(record_id: str, image: str, question: str, answer: str | None) -> dict:
    turns = [{"from": "human", "value": f"{IMAGE_PLACEHOLDER}\n{question}"}]
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
