"""The whole STIC workflow in LLaMA-Factory's web UI, in a real headless Chromium, on the tiny fixtures:
images -> pref (aborted, then resumed) -> STIC DPO with alpha from its field -> infuse with the stage-1
adapter -> SFT continuing it -> describe-and-respond with the stage-2 adapter. No shell step in between.

One web UI server and one browser page for the module; the tests run in order on one test process (each
step reads what the one before it wrote). Needs Debian's chromium (`make test` installs it where it can).
Skipped without it, except when STIC_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
STIC_SCREENSHOTS=FOLDER keeps the screenshots there (the README's are made so, in docs/).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import REPO, read_records, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("webui")]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
# Flags for a sandbox without network: no background connections, no first-run work.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL_NAME = "LLaVA-1.5-7B-Chat"  # a model name must be chosen; its path is then replaced by the tiny model's
SAVES = Path("saves") / MODEL_NAME / "lora"
IMAGE_COUNT = 16
RUN_TIMEOUT = 900  # seconds for a command to finish: generous, as other jobs may share the 2 cores of CI
# Training steps on CPU, as JSON in "Extra arguments" (the STIC options have their own fields)
EXTRA_ARGUMENTS = {
    "optim": "adamw_torch",
    "use_cpu": True,
    "max_steps": 2,
    "logging_steps": 1,
    "gradient_accumulation_steps": 1,
    "report_to": "none",
    "preprocessing_num_workers": 1,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_inputs(workdir: Path, images: list[Path], questions_of_images: list | None = None) -> dict:
    """16 images (the 8 given, twice), LLaVA-format instructions for infuse and questions for dar (a question and
    its answer per image where given)."""
    folder = workdir / "images"
    folder.mkdir()
    for index in range(IMAGE_COUNT):
        shutil.copy(images[index % len(images)], folder / f"image_{index:03d}.png")
    instructions = [
        {
            "id": f"sample-{index}",
            "image": f"image_{index:03d}.png",
            "conversations": [
                {"from": "human", "value": "<image>\n" + question},
                {"from": "gpt", "value": answer},
            ],
        }
        for index, (question, answer) in enumerate(
            questions_of_images or [("What do you see?", f"Coloured shapes, picture {index}.") for index in range(4)]
        )
        if index < 4
    ]
    questions = [
        {
            "id": f"question-{index}",
            "image": f"image_{index:03d}.png",
            "conversations": [
                {"from": "human", "value": "<image>\n" + question},
                {"from": "gpt", "value": answer},
            ],
        }
        for index, (question, answer) in enumerate(
            questions_of_images or [("Is this a drawing or a photograph?\nA. drawing\nB. photograph", "A")] * 3
        )
        if index < 3
    ]
    source = workdir / "source"
    source.mkdir()
    (source / "instructions.json").write_text(json.dumps(instructions))
    (source / "questions.json").write_text(json.dumps(questions))
    return dict(images=folder, instructions=source / "instructions.json", questions=source / "questions.json")


def _toy_world(workdir: Path) -> tuple[str, list[Path], list[tuple[str, str]]]:
    """The toy world's shipped base model (seed 0), 8 of its pictures (drawn for this, in no split of the
    experiment) and a question with its answer about each."""
    import random

    from stic_plugin.tools.toyworld import world
    from stic_plugin.tools.toyworld.experiment import shipped_base_models

    folder = workdir / "toy"
    folder.mkdir()
    images, questions_of_images = [], []
    for index in range(8):
        scene = world.sample_scene(0, "screenshots", index)
        world.render(scene).save(folder / f"{scene.key}.png")
        images.append(folder / f"{scene.key}.png")
        ((_, question, answer),) = world.questions(scene, random.Random(index), 1)
        questions_of_images.append((question, answer))
    return str(shipped_base_models() / "seed0"), images, questions_of_images


def _start_webui(workdir: Path):
    """``llamafactory-cli webui`` in ``workdir`` on a free port: (process, url, log), once the page answers or
    the process has ended."""
    port = _free_port()
    env = subprocess_env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    log = open(workdir / "webui.log", "w")
    process = subprocess.Popen(
        ["llamafactory-cli", "webui"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            time.sleep(1)
    log.flush()
    return process, url, log


@pytest.fixture(scope="module")
def webui(tiny, tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("STIC_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (STIC_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("no chromium: install Debian's chromium package to run the web UI tests")
    workdir = tmp_path_factory.mktemp("webui")
    if os.environ.get("STIC_SCREENSHOTS"):  # the docs' pictures: a model that sees, on pictures it knows
        model, images, questions_of_images = _toy_world(workdir)
    else:
        model, images, questions_of_images = tiny["tiny-llava"], sorted(Path(tiny["images"]).glob("*.png")), None
    inputs = _write_inputs(workdir, images, questions_of_images)
    (workdir / "data").mkdir()
    # not preference data: never offered for STIC DPO
    (workdir / "data" / "dataset_info.json").write_text(json.dumps({"plain_sft": {"file_name": "sft.json"}}))

    # Gradio gives up at launch when its own first request to the server takes over 3 s, as on a busy
    # machine ("When localhost is not accessible..."): the server is started again, up to three times.
    for attempt in range(3):
        process, url, log = _start_webui(workdir)
        if process.poll() is None:
            break
        log.close()
        text = (workdir / "webui.log").read_text()
        if "localhost is not accessible" not in text or attempt == 2:
            pytest.fail("web UI did not start:\n" + text[-3000:])
    yield dict(url=url, workdir=workdir, model=model, **inputs)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def page(webui):
    """One page for the module, with the model chosen in the top bar (a name, then the tiny model's path)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # assertions wait as long as actions: the machine may be busy
        page.goto(webui["url"], wait_until="domcontentloaded")
        page.wait_for_selector("text=Preview command")
        model_name = page.get_by_label("Model name").first
        model_name.click()
        model_name.fill(MODEL_NAME)
        page.get_by_role("option", name=MODEL_NAME, exact=True).click()
        model_path = page.get_by_label("Model path").first
        expect(model_path).to_have_value("llava-hf/llava-1.5-7b-hf")  # filled in by the name; typed over next
        model_path.fill(webui["model"])
        model_path.press("Enter")
        expect(model_path).to_have_value(webui["model"])
        expect(page.get_by_label("Chat template").first).to_have_value("llava")
        yield page
        browser.close()


# ---- what a user does ------------------------------------------------------------------------------------------
def field(page, label: str):
    """The visible field of this label, or of this label followed by its help text (the Train tab and the STIC
    data tab share some labels: the hidden one is left out)."""
    exact = page.get_by_label(label, exact=True)
    with_help = page.get_by_label(re.compile(rf"^\s*{re.escape(label)}(\s|$)"))
    return exact.or_(with_help).filter(visible=True).first


def fill(page, label: str, value) -> None:
    box = field(page, label)
    box.fill(str(value))
    box.press("Tab")


def choose(page, label: str, option: str) -> None:
    field(page, label).click()
    page.get_by_role("option", name=option, exact=True).filter(visible=True).click()


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True).filter(visible=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def pick_checkpoint(page, name: str) -> None:
    """The top bar's checkpoint: opening its list clears the choice (LLaMA-Factory's own behaviour), then this."""
    field(page, "Checkpoint path").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.keyboard.press("Escape")


def input_form(page, action: str, source: Path, images: Path) -> None:
    """The STIC data tab on an action that reads instruction data: its input file and image folder."""
    from playwright.sync_api import expect

    open_tab(page, "STIC data")
    page.get_by_label(action).check()
    # The action's own fields shown, the others' hidden (an event of the server): only then is "Input data" its own.
    for one in ("pref", "infuse", "dar"):
        fields = expect(page.locator(f"#stic_{one}_fields"))
        if f"({one})" in action:
            fields.to_be_visible()
        else:
            fields.to_be_hidden()
    fill(page, "Input data", source)
    fill(page, "Image folder", images)


def offered(page) -> list[str]:
    return [text.replace("✓", "").strip() for text in page.get_by_role("option").all_inner_texts()]


def command_preview(page, program: str) -> str:
    """The command the visible "Preview command" showed."""
    from playwright.sync_api import expect

    code = page.locator("code", has_text=f"{program} ").filter(visible=True).last
    expect(code).to_be_visible()
    return code.inner_text().strip()


def type_output_dir(page, name: str) -> None:
    """The Train tab's "Output dir" typed as a user does (a name other than the one it holds). LLaMA-Factory answers
    the typing by writing "Ready." (or its resume warning) into the output box, and that answer can arrive after a
    preview clicked next, erasing it. So a preview of the folder it holds is shown first (not an older one), and
    the typing's answer awaited: that preview erased."""
    from playwright.sync_api import expect

    output_dir = field(page, "Output dir")
    held = f"--output_dir {SAVES / output_dir.input_value()}"
    button(page, "Preview command").first.click()
    expect(page.locator("code", has_text=held).filter(visible=True)).to_have_count(1)
    output_dir.fill(name)
    output_dir.press("Enter")
    expect(page.locator("code", has_text="llamafactory-cli train ").filter(visible=True)).to_have_count(0)


def wait_for_text(page, text: str, timeout: float = RUN_TIMEOUT) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text(text).filter(visible=True).first).to_be_visible(timeout=timeout * 1000)


def set_extra_arguments(page, values: dict, remove: tuple = ()) -> None:
    """These keys added to the "Extra arguments" JSON and those of ``remove`` taken out (its other keys kept, as a
    user edits it)."""
    extra = field(page, "Extra arguments")
    if not extra.count():
        page.get_by_text("Extra configurations", exact=True).click()
    current = json.loads(field(page, "Extra arguments").input_value() or "{}")
    kept = {key: value for key, value in current.items() if key not in remove}
    fill(page, "Extra arguments", json.dumps({**kept, **values}))


def screenshot(page, tmp_path, name: str, element=None) -> Path:
    """A screenshot kept in STIC_SCREENSHOTS (the README's, committed under docs/), else in the test's folder."""
    folder = Path(os.environ.get("STIC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    target = element if element is not None else page
    target.screenshot(path=str(folder / name), style=".toast-wrap { display: none !important; }")  # no toasts
    return folder / name


def trainer_steps(output_dir: Path, count: int, webui, timeout: float = RUN_TIMEOUT) -> list[dict]:
    """The logged steps of a run the Train tab started, once it has ``count`` of them and saved its adapter."""
    deadline, steps = time.time() + timeout, []
    while time.time() < deadline:
        log = output_dir / "trainer_log.jsonl"
        if log.is_file():
            steps = [json.loads(line) for line in log.read_text().splitlines() if '"loss"' in line]
        if len(steps) >= count and (output_dir / "adapter_model.safetensors").is_file():
            return steps
        time.sleep(1)
    raise AssertionError(f"{len(steps)} steps in {output_dir}\n" + (webui["workdir"] / "webui.log").read_text()[-3000:])


def image_keys(dataset_dir: Path, name: str) -> list[str]:
    """The image of every pair written and of every image skipped or dropped, in every part."""
    keys = [record["stic"]["image"] for record in read_records(dataset_dir / name)]
    for part in sorted((dataset_dir / f"{name}.stic").glob("skipped-*.jsonl")):
        keys += [json.loads(line)["key"] for line in part.read_text().splitlines()]
    return keys


# ---- the workflow ----------------------------------------------------------------------------------------------
def test_pref_aborted_mid_run_then_started_again_writes_every_image_once(webui, page):
    open_tab(page, "STIC data")
    fill(page, "Image folder or list", webui["images"])
    fill(page, "Max new tokens", 256)  # long descriptions, one image at a time: a run of several seconds to abort
    fill(page, "Batch size", 1)
    choose(page, "Engine", "plain")
    button(page, "Preview command").click()
    preview = command_preview(page, "stic-cli")
    assert preview.split(" \\\n    ") == [
        "stic-cli pref",
        f"model_name_or_path={webui['model']}",
        "template=llava",
        f"image_dir={webui['images']}",
        "dataset_dir=data",
        "dataset_name=stic_pref",
        "batch_size=1",
        "max_new_tokens=256",
        "temperature=0.2",
        "engine=plain",
    ]

    button(page, "Start").click()
    progress = page.get_by_text(re.compile(rf"^pref: ([1-9]|1[0-5])/{IMAGE_COUNT} \["))
    progress.first.wait_for(timeout=RUN_TIMEOUT * 1000)  # the command's own progress bar: at least one image done
    button(page, "Abort").click()
    wait_for_text(page, "Aborted. Start again")
    data = webui["workdir"] / "data"
    done = image_keys(data, "stic_pref")
    assert 0 < len(done) < IMAGE_COUNT, done
    written = len(read_records(data / "stic_pref"))  # the pairs among them (a dropped pair is done, not written)

    button(page, "Start").click()  # the same command again: it goes on from where it stopped
    wait_for_text(page, "Finished: stic_pref in data.")
    expect_progress = page.get_by_text(re.compile(rf"^pref: {IMAGE_COUNT - len(done)}/{IMAGE_COUNT - len(done)} \["))
    assert expect_progress.count() >= 1  # the resumed run counted only what was left
    keys = image_keys(data, "stic_pref")
    assert sorted(keys) == [f"image_{index:03d}.png" for index in range(IMAGE_COUNT)]  # every image, once
    log = field(page, "Log").input_value()
    assert f"{len(done)} already done, {IMAGE_COUNT - len(done)} to do" in log
    assert "stic-cli pref: " in log  # the log is the run's whole output, its summary included
    whole_log = (data / "stic_pref.stic" / "webui.log").read_text()
    assert whole_log.count("===== ") == 2  # both runs, kept
    # Abort is a Ctrl-C: the command said what it had written, and that the same command resumes.
    assert f"stic-cli pref: interrupted: {written} written; run the same command to resume" in whole_log


def test_pref_results_then_the_dataset_in_the_train_tab(webui, page, tmp_path):
    from playwright.sync_api import expect

    records = page.locator("table.stic-records").filter(visible=True)
    expect(records).to_be_visible()
    images = records.locator("img.stic-image")
    assert images.count() >= 4  # each pair's image, and the corrupted image of a corruption negative
    assert all(width > 0 for width in images.evaluate_all("(all) => all.map((image) => image.naturalWidth)"))
    text = records.inner_text()
    assert "Chosen" in text and "Rejected" in text
    assert "from a corrupted image:" in text or "from a hallucination prompt:" in text
    panel = page.get_by_role("tabpanel").filter(visible=True).first
    for label in ("Summary", "Response lengths"):  # the numbers of NAME.stats.json, the plot NAME.lengths.png
        expect(panel.get_by_text(label, exact=True)).to_be_visible()
    expect(panel).to_contain_text('"pairs_by_negative"')
    screenshot(page, tmp_path, "webui-stic-data-pref.png", panel)

    # Without a restart, the Train tab lists the new dataset (for STIC DPO: the preference datasets only).
    open_tab(page, "Train")
    choose(page, "Stage", "STIC DPO")
    field(page, "Dataset").click()
    expect(page.get_by_role("option", name="stic_pref", exact=True)).to_be_visible()
    assert offered(page) == ["stic_pref"]
    page.keyboard.press("Escape")

    # "Train on this dataset" sets the Train tab to it, whatever stage it was on.
    choose(page, "Stage", "Supervised Fine-Tuning")
    open_tab(page, "STIC data")
    button(page, "Train on this dataset").click()
    expect(page.get_by_role("tab", name="Train", exact=True)).to_have_attribute("aria-selected", "true")
    expect(field(page, "Stage")).to_have_value("STIC DPO")
    chosen = page.locator(".token", has_text="stic_pref").filter(visible=True)
    expect(chosen).to_have_count(1)
    # ... with the settings of the stage-1 recipe of the template's model family, not the form's defaults
    expect(field(page, "Learning rate")).to_have_value("1e-07")
    expect(field(page, "Epochs")).to_have_value("1")
    open_tab(page, "STIC data")
    wait_for_text(page, "set from recipes/llava-1.5-7b/stage1.yaml: learning_rate 1e-07")
    open_tab(page, "Train")


def test_stic_options_only_for_stic_dpo_and_a_bad_value_refused_before_start(webui, page):
    from playwright.sync_api import expect

    accordion = page.get_by_text("STIC", exact=True).filter(visible=True)
    expect(accordion).to_have_count(1)
    alpha = field(page, "α, weight of the NLL (stic_alpha)")
    expect(alpha).to_have_value("0.0009765625")
    expect(field(page, "NLL reduction (stic_nll_reduction)")).to_have_value("sum")
    for stage in ("DPO", "Supervised Fine-Tuning"):
        choose(page, "Stage", stage)
        expect(page.get_by_text("STIC", exact=True).filter(visible=True)).to_have_count(0)
    choose(page, "Stage", "STIC DPO")
    expect(accordion).to_have_count(1)
    field(page, "Dataset").click()
    page.get_by_role("option", name="stic_pref", exact=True).click()
    page.keyboard.press("Escape")
    choose(page, "Compute type", "fp32")  # CPU

    saves = webui["workdir"] / "saves"
    fill(page, "α, weight of the NLL (stic_alpha)", -1)
    for name in ("Preview command", "Start"):
        button(page, name).first.click()
        wait_for_text(page, "stic_alpha must be a finite number >= 0, got -1", timeout=60)  # the option's message
    assert not saves.exists()  # nothing started

    fill(page, "α, weight of the NLL (stic_alpha)", 0.5)
    set_extra_arguments(page, {"optim": "adamw_torch", "stic_alpah": 0.5})
    button(page, "Start").first.click()
    wait_for_text(page, "Unknown STIC option stic_alpah. Did you mean stic_alpha?", timeout=60)
    assert not saves.exists()

    # A key in "Extra arguments" wins over its field, as for LLaMA-Factory's own keys.
    set_extra_arguments(page, {"optim": "adamw_torch", "stic_alpha": 0.25}, remove=("stic_alpah",))
    button(page, "Preview command").first.click()
    preview = command_preview(page, "llamafactory-cli train")
    assert "--stic_alpha 0.25" in preview and "--stic_alpha 0.5" not in preview

    # Saved and loaded with the training configuration.
    button(page, "Save arguments").click()
    wait_for_text(page, "Arguments have been saved at", timeout=60)
    (saved,) = (webui["workdir"] / "llamaboard_config").glob("*.yaml")
    assert yaml.safe_load(saved.read_text())["train.stic_alpha"] == 0.5
    fill(page, "α, weight of the NLL (stic_alpha)", 0.125)
    button(page, "Load arguments").click()
    expect(alpha).to_have_value("0.5")

    # The labels in Chinese, and back.
    choose(page, "Language", "zh")
    expect(page.get_by_text("STIC 参数设置", exact=True).filter(visible=True)).to_have_count(1)
    expect(page.get_by_role("tab", name="STIC 数据", exact=True)).to_be_visible()
    choose(page, "语言", "en")
    expect(accordion).to_have_count(1)


def test_stic_dpo_trains_with_alpha_from_its_field(webui, page, tmp_path):
    set_extra_arguments(page, EXTRA_ARGUMENTS, remove=("stic_alpha",))  # the field's α, not the extra key's
    type_output_dir(page, "stage1")
    button(page, "Preview command").first.click()
    preview = command_preview(page, "llamafactory-cli train")
    assert f"--output_dir {SAVES / 'stage1'}" in preview
    for expected in ("--stage stic_dpo", "--stic_alpha 0.5", "--stic_nll_reduction sum", "--pref_beta 0.1"):
        assert expected in preview
    assert f"--model_name_or_path {webui['model']}" in preview
    screenshot(page, tmp_path, "webui-train-stic.png", page.get_by_role("tabpanel").filter(visible=True).first)

    # Start: the web UI runs `llamafactory-cli train` in a child process, which loads the plugin by itself.
    button(page, "Start").first.click()
    stage1 = webui["workdir"] / SAVES / "stage1"
    steps = trainer_steps(stage1, 2, webui)
    for step in steps:
        assert step["loss"] == pytest.approx(step["stic/dpo_loss"] + 0.5 * step["stic/nll"], rel=1e-5)
    # Trained with the recipe's settings that "Train on this dataset" put into the form (the form's own
    # defaults are 5e-5, 3 epochs, rank 8, cutoff 2048), the CPU keys added to them in "Extra arguments".
    args = yaml.safe_load((stage1 / "training_args.yaml").read_text())
    recipe = yaml.safe_load((REPO / "recipes" / "llava-1.5-7b" / "stage1.yaml").read_text())
    for key in ("learning_rate", "lora_rank", "lora_alpha", "lora_target", "lr_scheduler_type", "warmup_ratio"):
        assert args[key] == recipe[key], key
    assert args["num_train_epochs"] == recipe["num_train_epochs"] and args["cutoff_len"] == recipe["cutoff_len"]
    assert args["pref_beta"] == recipe["pref_beta"] and args["per_device_train_batch_size"] == 1
    # The log the web UI shows is kept whole and written once (one LogCallback, one log handler).
    lines = (stage1 / "running_log.txt").read_text().splitlines()
    assert sum("Loading dataset stic_pref" in line for line in lines) == 1
    wait_for_text(page, "Finished.")


def test_infuse_with_the_stage_one_adapter_then_sft_continuing_it(webui, page, tmp_path):
    from playwright.sync_api import expect

    pick_checkpoint(page, "stage1")
    input_form(page, "Description-infused data (infuse)", webui["instructions"], webui["images"])
    fill(page, "Max new tokens", 12)
    fill(page, "Batch size", 2)
    choose(page, "Engine", "continuous")
    button(page, "Preview command").click()
    preview = command_preview(page, "stic-cli")
    assert preview.startswith("stic-cli infuse")
    for expected in (
        f"adapter_name_or_path={SAVES / 'stage1'}",
        f"llava_file={webui['instructions']}",
        f"image_folder={webui['images']}",
        "dataset_name=stic_sft",
        "num_samples=5000",
    ):
        assert expected in preview.split(" \\\n    ")

    button(page, "Start").click()
    wait_for_text(page, "Finished: stic_sft in data.")
    records = page.locator("table.stic-records").filter(visible=True)
    expect(records).to_contain_text("First user turn, infused")
    expect(records).to_contain_text("Image description:")
    assert records.locator("img.stic-image").count() == 4
    screenshot(page, tmp_path, "webui-stic-data-infuse.png", page.get_by_role("tabpanel").filter(visible=True).first)

    # Hand-over: stage SFT on stic_sft; the checkpoint stays the stage-1 adapter, which the training continues.
    button(page, "Train on this dataset").click()
    expect(field(page, "Stage")).to_have_value("Supervised Fine-Tuning")
    expect(page.locator(".token", has_text="stic_sft").filter(visible=True)).to_have_count(1)
    type_output_dir(page, "stage2")
    button(page, "Preview command").first.click()
    preview = command_preview(page, "llamafactory-cli train")
    assert "--stage sft" in preview and "--dataset stic_sft" in preview
    assert f"--output_dir {SAVES / 'stage2'}" in preview
    assert f"--adapter_name_or_path {SAVES / 'stage1'}" in preview
    button(page, "Start").first.click()
    stage2 = webui["workdir"] / SAVES / "stage2"
    trainer_steps(stage2, 2, webui)
    args = yaml.safe_load((stage2 / "training_args.yaml").read_text())
    assert args["adapter_name_or_path"] == str(SAVES / "stage1") and args["stage"] == "sft"
    assert args["learning_rate"] == 2e-5 and args["num_train_epochs"] == 1.0  # the stage-2 recipe's
    wait_for_text(page, "Finished.")


def test_describe_and_respond_with_the_stage_two_adapter(webui, page, tmp_path):
    from playwright.sync_api import expect

    pick_checkpoint(page, "stage2")
    input_form(page, "Describe and respond (dar)", webui["questions"], webui["images"])
    metric = "exact" if os.environ.get("STIC_SCREENSHOTS") else "choice"  # the toy world's one-word answers
    choose(page, "Metric", metric)
    fill(page, "Max new tokens", 8)
    button(page, "Preview command").click()
    preview = command_preview(page, "stic-cli").split(" \\\n    ")
    assert preview[0] == "stic-cli dar" and f"adapter_name_or_path={SAVES / 'stage2'}" in preview
    assert "dataset_dir=predictions" in preview and f"metric={metric}" in preview

    button(page, "Start").click()
    wait_for_text(page, "Finished: dar in predictions.")
    records = page.locator("table.stic-records").filter(visible=True)
    for column in ("Question", "Description", "Prediction", "Reference"):
        expect(records).to_contain_text(column)
    expect(page.get_by_text('"accuracy"').filter(visible=True).first).to_be_visible()
    predictions = read_records(webui["workdir"] / "predictions" / "dar")
    questions = json.loads(Path(webui["questions"]).read_text())
    references = {question["id"]: question["conversations"][1]["value"] for question in questions}
    assert {p["source_id"]: p["reference"] for p in predictions} == references  # each question's own answer
    assert all(p["description"] for p in predictions)
    expect(button(page, "Train on this dataset")).to_have_count(0)  # predictions are not a training set
    screenshot(page, tmp_path, "webui-stic-data-dar.png", page.get_by_role("tabpanel").filter(visible=True).first)
