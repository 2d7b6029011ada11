"""LLaMA-Factory's web UI in a real headless Chromium: the STIC DPO stage end to end.

Needs Debian's chromium (`make test` installs it where it can). Skipped without it, except when
STIC_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import PREF_DATASET_INFO, subprocess_env, write_pref_dataset

pytestmark = pytest.mark.slow

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def webui(tiny, tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("STIC_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (STIC_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("no chromium: install Debian's chromium package to run the web UI test")
    workdir = tmp_path_factory.mktemp("webui")
    images = sorted(Path(tiny["images"]).glob("*.png"))
    write_pref_dataset(workdir / "data", images)
    info_path = workdir / "data" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["plain_sft"] = {"file_name": "sft.json"}  # not preference data: must not be offered for STIC DPO
    info_path.write_text(json.dumps(info))
    assert info["stic_pref"] == dict(PREF_DATASET_INFO, file_name="stic_pref.jsonl")

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
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("web UI did not start:\n" + (workdir / "webui.log").read_text()[-3000:])
            time.sleep(1)
    yield dict(url=url, workdir=workdir, model=tiny["tiny-llava"])
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def _choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).first.click()


def test_stic_dpo_in_the_web_ui(webui):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        page.set_default_timeout(60_000)
        page.goto(webui["url"], wait_until="domcontentloaded")
        page.wait_for_selector("text=Preview command")

        model_name = page.get_by_label("Model name").first
        model_name.click()
        model_name.fill("LLaVA-1.5-7B-Chat")
        page.get_by_role("option", name="LLaVA-1.5-7B-Chat", exact=True).click()
        model_path = page.get_by_label("Model path").first
        # Choosing a model name fills in its hub path; wait for that before typing over it.
        expect(model_path).to_have_value("llava-hf/llava-1.5-7b-hf")
        model_path.fill(webui["model"])
        model_path.press("Enter")
        expect(model_path).to_have_value(webui["model"])

        page.get_by_label("Stage", exact=True).first.click()
        stages = [text.replace("✓", "").strip() for text in page.get_by_role("option").all_inner_texts()]
        assert "STIC DPO" in stages and "DPO" in stages
        page.get_by_role("option", name="STIC DPO", exact=True).click()

        expect(page.get_by_role("option", name="Reward Modeling")).to_have_count(0)  # the stage list closed
        page.get_by_label("Dataset", exact=True).first.click()
        expect(page.get_by_role("option", name="stic_pref", exact=True)).to_be_visible()
        offered = [text.replace("✓", "").strip() for text in page.get_by_role("option").all_inner_texts()]
        assert offered == ["stic_pref"]  # the ranking dataset only
        page.get_by_role("option", name="stic_pref", exact=True).click()
        page.keyboard.press("Escape")

        _choose(page, "Compute type", "fp32")  # CPU
        page.get_by_text("Extra configurations", exact=True).click()
        extra = page.get_by_label("Extra arguments").first
        extra.fill(
            json.dumps(
                {
                    "optim": "adamw_torch",
                    "use_cpu": True,
                    "max_steps": 2,
                    "logging_steps": 1,
                    "stic_alpha": 0.5,
                    "report_to": "none",
                    "preprocessing_num_workers": 1,
                }
            )
        )
        extra.press("Tab")

        page.get_by_role("button", name="Preview command").click()
        preview = page.locator("code", has_text="llamafactory-cli train").first.inner_text()
        assert "--stage stic_dpo" in preview
        assert "--pref_beta 0.1" in preview and "--pref_loss sigmoid" in preview
        assert "--stic_alpha 0.5" in preview
        assert f"--model_name_or_path {webui['model']}" in preview

        # Start: the web UI runs `llamafactory-cli train` in a child process, which loads the plugin by itself.
        page.get_by_role("button", name="Start").click()
        deadline, steps = time.time() + 300, []
        while time.time() < deadline and len(steps) < 2:
            for log in Path(webui["workdir"], "saves").glob("**/trainer_log.jsonl"):
                steps = [json.loads(line) for line in log.read_text().splitlines() if '"loss"' in line]
            time.sleep(1)
        browser.close()

    assert len(steps) == 2, (Path(webui["workdir"]) / "webui.log").read_text()[-3000:]
    for step in steps:
        assert step["loss"] == pytest.approx(step["stic/dpo_loss"] + 0.5 * step["stic/nll"], rel=1e-5)
    # The log the web UI shows is kept whole and written once (one LogCallback, one log handler).
    (running_log,) = Path(webui["workdir"], "saves").glob("**/running_log.txt")
    lines = running_log.read_text().splitlines()
    assert sum("Loading dataset stic_pref.jsonl" in line for line in lines) == 1
