"""The demo's reduced run, shared by the tests of ``stic-cli demo`` and of ``scripts/gpu_check.sh --smoke`` (which
resumes it): tests that use it are in the xdist group ``demo``, so one worker runs it once."""

import pytest

from helpers import run_cli


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """``stic-cli demo scale=smoke`` run once, the way a user runs it: its output folder and the finished process."""
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_cli(["stic-cli", "demo", f"output_dir={out}", "scale=smoke"], cwd=out.parent, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out, result
