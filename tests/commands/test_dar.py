"""`stic-cli dar` end to end on the tiny models, in this process (``stic``): accuracy against a hand count,
questions without answers, scoring again without generating again."""

import json
from pathlib import Path

from helpers import dar_args, read_records


def test_dar_accuracy_matches_a_hand_count(tiny, tmp_path, stic):
    questions = [
        {
            "id": str(i),
            "image": f"image_00{i}.png",
            "conversations": [
                {"from": "human", "value": "<image>\nName one letter."},
                {"from": "gpt", "value": letter},
            ],
        }
        for i, letter in enumerate(["e", "a", "zzzz", "t", "s", "q"])
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    base = dar_args(
        tiny, tmp_path / "q.json", tmp_path / "pred", max_new_tokens=16, description_max_new_tokens=8, metric="contains"
    )
    for mode in ("true", "false"):
        result = stic(*base + [f"dar={mode}", f"predictions_name=dar_{mode}"])
        assert result.returncode == 0, result.stderr[-3000:]
        predictions = read_records(tmp_path / "pred" / f"dar_{mode}")
        assert sorted(p["id"] for p in predictions) == list(range(6))
        # the hand count: is the reference letter somewhere in the prediction, ignoring case
        correct = sum(p["reference"].lower() in p["prediction"].lower() for p in predictions)
        assert f"accuracy (contains): {correct / 6:.4f} ({correct}/6)" in result.stdout
        stats = json.loads((tmp_path / "pred" / f"dar_{mode}.stats.json").read_text())
        assert (stats["correct"], stats["counted"]) == (correct, 6)
        has_descriptions = all(p["description"] for p in predictions)
        assert has_descriptions == (mode == "true")
        if mode == "true":
            assert all(p["question"] == "<image>\nName one letter." for p in predictions)


def test_dar_unanswered_questions_and_rescoring_without_regenerating(tiny, tmp_path, stic):
    questions = [
        {"id": "1", "image": "image_000.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}]},
        {
            "id": "2",
            "image": "image_001.png",
            "conversations": [{"from": "human", "value": "<image>\nWho?"}, {"from": "gpt", "value": "e"}],
        },
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    base = dar_args(tiny, tmp_path / "q.json", tmp_path / "pred", max_new_tokens=8, description_max_new_tokens=8)
    first = stic(*base)
    assert first.returncode == 0, first.stderr[-2000:]
    predictions = {p["id"]: p for p in read_records(tmp_path / "pred" / "dar")}
    assert predictions[0]["reference"] is None and predictions[1]["reference"] == "e"
    rescored = stic(*base + ["metric=contains"])
    assert rescored.returncode == 0, rescored.stderr[-2000:]
    assert "2 already done, 0 to do" in rescored.stderr
    correct = int("e" in predictions[1]["prediction"].lower())
    assert f"accuracy (contains): {correct:.4f} ({correct}/1)" in rescored.stdout


def test_the_second_pass_shows_the_image_first_as_llava_does(tiny, tmp_path, stic, monkeypatch):
    from stic_plugin.generation.transformers_engine import ContinuousGenerator

    questions = [
        {
            "id": "1",
            "image": "image_000.png",
            "conversations": [{"from": "human", "value": "Which color?\n<image>"}, {"from": "gpt", "value": "e"}],
        }
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    asked = []
    stream = ContinuousGenerator.generate_stream

    def recording(self, requests, *args, **kwargs):
        def answers_seen():  # the second pass's requests, as the engine takes them
            for request in requests:
                if request.key.startswith("answer:"):
                    asked.append(request.messages[0]["content"])
                yield request

        return stream(self, answers_seen(), *args, **kwargs)

    monkeypatch.setattr(ContinuousGenerator, "generate_stream", recording)
    base = dar_args(tiny, tmp_path / "q.json", tmp_path / "pred", max_new_tokens=4, description_max_new_tokens=6)
    for extra in ([], ["dar=false", "predictions_name=direct"], ["image_placement=keep", "predictions_name=kept"]):
        assert stic(*base, *extra).returncode == 0
    described = read_records(tmp_path / "pred" / "dar")[0]["description"]
    assert asked == [
        f"<image>\nImage description:\n{described}\n\nWhich color?",
        "<image>\nWhich color?",
        f"Image description:\n{described}\n\nWhich color?\n<image>",
    ]


def test_answers_cut_at_max_new_tokens_are_flagged(tiny, tmp_path, stic):
    questions = [
        {
            "id": str(i),
            "image": f"image_00{i}.png",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe it at length."},
                {"from": "gpt", "value": "x"},
            ],
        }
        for i in range(3)
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    result = stic(
        *dar_args(tiny, tmp_path / "q.json", tmp_path / "pred", max_new_tokens=2, description_max_new_tokens=3)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    predictions = read_records(tmp_path / "pred" / "dar")
    assert all(isinstance(p["truncated"], bool) and isinstance(p["description_truncated"], bool) for p in predictions)
    cut = sum(p["truncated"] for p in predictions)
    assert cut >= 1  # two tokens: a random model rarely stops that soon
    stats = json.loads((tmp_path / "pred" / "dar.stats.json").read_text())
    assert stats["truncated_answers"] == cut
    assert stats["truncated_descriptions"] == sum(p["description_truncated"] for p in predictions)
    assert f"truncated:        {cut} answer(s) at max_new_tokens=2" in result.stdout


def test_a_resumed_dar_answers_from_the_descriptions_it_logged(tiny, tmp_path, stic, monkeypatch):
    from stic_plugin.generation.transformers_engine import ContinuousGenerator

    questions = [
        {"id": str(i), "image": f"image_00{i % 2}.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}]}
        for i in range(3)
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    base = dar_args(tiny, tmp_path / "q.json", tmp_path / "pred", max_new_tokens=4, description_max_new_tokens=6)
    assert stic(*base).returncode == 0
    logged = [
        json.loads(line) for path in (tmp_path / "pred" / "dar.stic").glob("descriptions-*") for line in path.open()
    ]
    assert sorted(entry["image"] for entry in logged) == sorted(
        {str(Path(tiny["images"]) / "image_000.png"), str(Path(tiny["images"]) / "image_001.png")}
    )
    # The predictions of questions 1 and 2 are lost; the rerun answers them and describes nothing again.
    part = next((tmp_path / "pred" / "dar").glob("*.jsonl"))
    first_line = part.read_text().splitlines()[0]
    part.write_text(first_line + "\n")
    keys = []
    stream = ContinuousGenerator.generate_stream

    def recording(self, requests, *args, **kwargs):
        def seen():
            for request in requests:
                keys.append(request.key.split(":")[0])
                yield request

        return stream(self, seen(), *args, **kwargs)

    monkeypatch.setattr(ContinuousGenerator, "generate_stream", recording)
    again = stic(*base)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 already done, 2 to do" in again.stderr
    assert keys == ["answer", "answer"]
    assert sorted(p["id"] for p in read_records(tmp_path / "pred" / "dar")) == [0, 1, 2]


def test_the_truncated_line_names_only_what_was_cut(tiny, tmp_path, stic):
    """Questions without images: describe-and-respond describes nothing, and the summary says nothing of
    descriptions (before: "0 description(s) at description_max_new_tokens=...")."""
    questions = [
        {"id": str(i), "conversations": [{"from": "human", "value": f"Say something long, {i}."}]} for i in range(3)
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    args = dar_args(tiny, tmp_path / "q.json", tmp_path / "pred", max_new_tokens=2, description_max_new_tokens=8)
    result = stic(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    cut = sum(p["truncated"] for p in read_records(tmp_path / "pred" / "dar"))
    assert cut >= 1  # two tokens: a random model rarely stops that soon
    line = next(line for line in result.stdout.splitlines() if line.startswith("  truncated:"))
    assert line == f"  truncated:        {cut} answer(s) at max_new_tokens=2 (flagged in the predictions)"


def test_a_missing_image_names_the_media_dir_and_the_current_folder_searched(tiny, tmp_path, stic, monkeypatch):
    monkeypatch.chdir(tmp_path)
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A."}]
    questions = [{"id": "q", "image": "image_000.png", "conversations": turns}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"q": {"file_name": "q.json", "formatting": "llava"}}))
    (tmp_path / "media").mkdir()
    result = stic(
        "dar",
        f"model_name_or_path={tiny['tiny-llava']}",
        "template=llava",
        "dataset=q",
        "source_dataset_dir=.",
        "media_dir=media",
        "dataset_dir=pred",
    )
    assert result.returncode == 1
    searched = f"image_000.png is in neither {tmp_path / 'media'} nor the current folder {tmp_path}"
    assert f"skipped sample 0: missing file: {searched}" in result.stderr


def test_on_ray_a_question_whose_image_the_workers_cannot_read_is_skipped_and_so_are_later_ones_on_it(tmp_path):
    """``executor: ray``, answering directly: the request names its images; the one a Ray worker cannot read
    skips its question, and a later question on the same image is skipped before any request."""
    from PIL import Image

    from stic_plugin.assets import default_infusion_format_file
    from stic_plugin.commands.config import DarConfig
    from stic_plugin.commands.dar import AnswerJob
    from stic_plugin.data.sources import Sample
    from stic_plugin.generation.base import Generation, UnreadableImage
    from stic_plugin.method.dar import DescribeAndRespond
    from stic_plugin.method.infusion import read_infusion_format
    from stic_plugin.pipeline.describer import ImageDescriber, Sampling
    from stic_plugin.pipeline.image_inputs import ImageFile

    good, bad = str(tmp_path / "good.png"), str(tmp_path / "bad.png")
    for path in (good, bad):
        Image.new("RGB", (8, 8)).save(path)
    cfg = DarConfig(
        model_name_or_path="m",
        template="llava",
        llava_file=str(tmp_path / "q.json"),
        engine="vllm",
        executor="ray",
        dar=False,
    )
    describer = ImageDescriber(None, ["Describe."], Sampling(0.0, None, 0, 4, None), 8)
    responder = DescribeAndRespond(
        describer, read_infusion_format(default_infusion_format_file()), describe_first=False
    )
    job = AnswerJob(cfg, responder)

    def question(index: int, *images: str) -> Sample:
        turns = [{"role": "user", "content": "<image>" * len(images) + "Q"}, {"role": "assistant", "content": "A"}]
        return Sample(index, turns, list(images))

    first, later = question(0, good, bad), question(1, bad)
    prepared = job.prepare([first])
    (request,) = job.start(first, prepared)
    assert [type(image) for image in request.images] == [ImageFile, ImageFile]
    unreadable = UnreadableImage("unreadable", "cannot identify image file", image=1)
    (outcome,) = job.finish(request, Generation("", 0, False, unreadable))
    assert (outcome.record, outcome.skipped["path"], outcome.skipped["reason"]) == (None, bad, "unreadable")
    (outcome,) = job.start(later, job.prepare([later]))
    assert outcome.skipped["key"] == "1"
