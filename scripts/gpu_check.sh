#!/usr/bin/env bash
# Everything this project measures on a GPU, in one call of at most 9 minutes on one H100 or H200, written to one
# JSON; and the same steps at tiny sizes on a CPU (--smoke, under 3 minutes), which tests/tools/test_gpu_check.py
# runs so that this script cannot rot.
#
# On a bare GPU machine (torch 2.11, transformers 5.17, no LLaMA-Factory, no network), from the repository root:
#   1. Here, where pip reaches PyPI, once per checkout (about 17 MB into .whl/, which git ignores):
#        bash scripts/gpu_check.sh --prepare
#      LLaMA-Factory 0.9.5 and the versions of its packages that it needs there (transformers 5.6.0, trl, peft, ...),
#      and hatchling, which builds this project there from the tree that travels.
#   2. There, with the repository and its .whl/ copied over, one command given ten minutes:
#        bash scripts/gpu_check.sh
#      The targets are H200 figures (an H100's memory is slower). LLaVA-1.5-7B at batch 128 (keys and values not
#      grouped: about 58 GiB of cache at these lengths, and 13 GiB of weights) fits an H100 too, barely; a run that
#      does not fit is recorded as out of memory and the others go on.
#   3. Back come $OUT/gpu_check-DATE-DEVICE.json (every figure) and $OUT/gpu_check-logs.tar.gz (each step's log).
#      Commit the JSON under benchmarks/ (docs/engines.md, "Speed").
#
# Steps, in this order, the targets' figures first; each has its own time limit and none runs past the call's 9
# minutes (those left are recorded as skipped). A step that fails or runs out of time is recorded (the end of its
# log goes into the JSON; the bench prints a line as each of its runs ends) and the next one runs.
#   install                 the carried wheels, then this project built from the tree (no network there);
#                           skipped where there is no .whl/ (a machine of one's own with the project installed)
#   demo                    `stic-cli demo`, in the background on the CPU while the GPU steps run (see run_demo)
#   GEOMETRY.continuous     stic-cli bench parts=[generation] engines=[continuous]: equal lengths (with the decode
#                           bound from the measured memory bandwidth, and the share of it reached), then the spread
#                           of lengths, at batch 128, 64 and 1 (the largest first: the target's run)
#   GEOMETRY.training       stic-cli bench parts=[training]: a stic_dpo step against LLaMA-Factory's dpo step
#   GEOMETRY.vllm           as continuous, on vLLM; skipped, with the reason, where vLLM is not installed (its CUDA
#                           wheel, 304 MB, is more than a call carries)
#   GEOMETRY.plain          as continuous, on transformers' generate (the baseline)
#   each for GEOMETRY llava-1.5-7b, then llava-v1.6-mistral-7b (random weights, stic_plugin/model_configs), before
#   the next kind of step; --smoke: tiny.
#
# Usage: bash scripts/gpu_check.sh [--smoke | --prepare]
#   OUT              the folder for the JSON and the logs (default: gpu_check_out)
#   GPU_CHECK_FAIL   names of steps (comma-separated) that fail on purpose, to check that failures are reported
#   GPU_CHECK_DEMO_DIR  the demo's folder, kept (default: one in the work folder, removed at the end); a demo that
#                    finished there before is not run again (the demo resumes step by step), so a second call on
#                    the same machine spends its CPU on the other steps
#   PYTHON           the interpreter (default: python3)
# stdout: the summary (at most 40 lines); stderr: one line as each step ends. Exit status 0 when every step ran or
# was skipped with its reason, 1 when one failed or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
self=$root/scripts/gpu_check.sh
PY=${PYTHON:-python3}
mode=${1:-gpu}

prepare() {
    # The packages of LLaMA-Factory 0.9.5 that the GPU machine lacks or has in other versions (checked on an H200:
    # llamafactory-cli train runs there with these), for its Python 3.12 on x86-64; hatchling builds this project.
    set -e
    mkdir -p .whl
    for spec in llamafactory==0.9.5 transformers==5.6.0 trl==0.24.0 peft==0.18.1 accelerate==1.11.0 datasets==4.0.0 \
        dill==0.3.8 multiprocess==0.70.16 omegaconf==2.4.0 tokenizers==0.22.2 fsspec==2025.3.0 hatchling==1.33.0 \
        trove-classifiers==2026.9.21.13; do
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$spec"
    done
    du -sh .whl
    echo 'Now, on the GPU machine (an H200 for the targets), with the repository and .whl/ copied there: bash scripts/gpu_check.sh (about 9 minutes)'
}

# The carried wheels into the machine's own environment (console scripts on PATH, .pth files run), then this project,
# built from the tree that travelled (so never older than it) by the carried hatchling.
install_wheels() {
    set -e
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir .
    stic-cli --help >/dev/null
}

case "$mode" in
    --prepare) prepare; exit ;;
    --install) install_wheels; exit ;; # the install step, run under its time limit
    --smoke) smoke=1 ;;
    gpu) smoke= ;;
    *) echo "usage: bash scripts/gpu_check.sh [--smoke | --prepare] (the comments at its top say more)" >&2; exit 2 ;;
esac

OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
work=$(mktemp -d -t gpu_check.XXXXXX)
mkdir -p "$work/logs" "$work/figures" "$work/tmp"
: >"$work/steps.tsv"
export TMPDIR=$work/tmp # the bench's models (a vLLM twin's weights: 14 GB) go with the rest of the work at the end
# Nothing is downloaded: the GPU machine has no network, and a hub lookup would only wait for its time-out.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH"  # where pip puts stic-cli
export VLLM_LOGGING_LEVEL=WARNING

if [[ -n $smoke ]]; then
    geometries=(tiny)
    generation_keys=("batch_sizes=[3,1]" new_tokens=6 spread_min=2 spread_max=12 spread_mean=5 spread_batches=2
        warmup_steps=1)
    training_keys=(train_pairs=2 train_response_tokens=12 train_steps=1 warmup_steps=1)
    demo_keys=(scale=smoke)
    # vLLM's CPU build: a small key/value cache, the engine in the command's process, its sampler uncompiled
    # (as the test suite runs it: tests/helpers.py).
    export VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0
    vllm_env=(TORCH_COMPILE_DISABLE=1)
    call_seconds=600 # a bound for a stuck step, far above the smoke run's time
    limits=(install=60 continuous=120 training=120 vllm=180 plain=120)
else
    geometries=(llava-1.5-7b llava-v1.6-mistral-7b)
    # new_tokens 256 at batch 128 is the run whose decode bound the targets quote (about 8,400 tokens/s on an H200).
    # The spread is shorter than bench's default (100 to 1,000 tokens): the plain engine's batches then fit the
    # call, and its longest output is the equal run's, so the continuous engine's cache has the same shape in both
    # runs (each new shape compiles the decoding step again) and LLaVA-1.5-7B's batch 128 fits an H100 too.
    generation_keys=("batch_sizes=[128,64,1]" new_tokens=256 spread_min=50 spread_max=256 spread_mean=150
        spread_batches=2 warmup_steps=1)
    training_keys=()
    demo_keys=()
    vllm_env=()
    call_seconds=510 # 9 minutes, less the last step's grace to stop and the report's time
    limits=(install=120 continuous=180 training=90 vllm=150 plain=150)
fi
deadline=$((SECONDS + call_seconds))

limit_of() { # the time limit of a step kind, from `limits`
    local entry
    for entry in "${limits[@]}"; do [[ ${entry%%=*} == "$1" ]] && echo "${entry#*=}"; done
}

record() { # NAME STATUS SECONDS LIMIT NOTE COMMAND: one line of steps.tsv (tabs and newlines in the text made spaces)
    local fields=("$@") i
    for i in 4 5; do fields[i]=$(tr '\t\n' '  ' <<<"${fields[i]}"); fields[i]=${fields[i]% }; done
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${fields[@]}" >>"$work/steps.tsv"
    echo "gpu_check: $1 $2 (${3} s) ${fields[4]}" >&2
}

# run_step NAME LIMIT COMMAND...: COMMAND with its output in logs/NAME.log, stopped after LIMIT seconds or at the
# call's deadline, whichever comes first; recorded as ok, failed or timed out.
run_step() {
    local name=$1 limit=$2 left=$((deadline - SECONDS)) started=$SECONDS rc=0
    shift 2
    local command="$*"
    if ((left < 30)); then
        record "$name" skipped 0 0 "no time left in the call's $((call_seconds / 60)) minutes" "$command"
        return
    fi
    ((limit > left)) && limit=$left
    if [[ ",${GPU_CHECK_FAIL:-}," == *",$name,"* ]]; then
        set -- bash -c 'echo "failed on purpose: GPU_CHECK_FAIL names this step"; exit 1'
    fi
    timeout -k 10 "$limit" "$@" >"$work/logs/$name.log" 2>&1 || rc=$?
    case $rc in
        0) record "$name" ok $((SECONDS - started)) "$limit" "" "$command" ;;
        124 | 137) record "$name" "timed out" $((SECONDS - started)) "$limit" "stopped after $limit s" "$command" ;;
        *) record "$name" failed $((SECONDS - started)) "$limit" "" "$command" ;;
    esac
}

install_project() {
    if [[ -n $smoke ]]; then
        record install skipped 0 0 "--smoke measures this environment as it is" ""
    elif [[ ! -d .whl ]]; then # a machine of one's own, the project installed: nothing to install
        record install skipped 0 0 "no .whl/ here: this environment as it is (a bare machine needs --prepare's)" ""
    else
        run_step install "$(limit_of install)" bash "$self" --install
    fi
}

# make demo runs `stic-cli demo output_dir=demo_output` once make has made .venv, which needs the network: the
# command itself runs here. The demo runs on the CPU by design (its numerics are pinned to CPU kernels, one thread
# per command; its table is the committed report's only so), so the GPU is hidden from it: otherwise its pref and
# dar would generate there, with other numbers, and in the way of the GPU steps. It takes 2 of the CPU cores
# (workers=2) in the background while the GPU steps run; its time is make demo's time on this machine's CPU. Where
# no base model is shipped (stic_plugin/tools/toyworld/base_models) it trains one first, one thread for minutes,
# and may not finish in the call: then it is recorded as timed out, the steps it finished in its log.
demo_dir=${GPU_CHECK_DEMO_DIR:-$work/demo}
run_demo() {
    run_step demo "$((deadline - SECONDS))" env CUDA_VISIBLE_DEVICES= stic-cli demo "output_dir=$demo_dir" \
        "${demo_keys[@]}" &
    demo_pid=$!
}

bench_step() { # GEOMETRY PART: one stic-cli bench run, its figures in figures/GEOMETRY.PART.json
    local geometry=$1 part=$2 name="$1.$2"
    local keys=("architecture=$geometry" "output_json=$work/figures/$name.json")
    case $part in
        training) keys+=("parts=[training]" "${training_keys[@]}") ;;
        *) keys+=("parts=[generation]" "engines=[$part]" "${generation_keys[@]}") ;;
    esac
    if [[ $part == vllm ]]; then
        if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("vllm") is None)'; then
            record "$name" skipped 0 0 "vLLM is not installed here (its CUDA wheel, 304 MB, is more than a call \
carries; scripts/install_vllm.sh where there is network)" "stic-cli bench ${keys[*]}"
            return
        fi
        run_step "$name" "$(limit_of vllm)" env "${vllm_env[@]}" stic-cli bench "${keys[@]}"
        return
    fi
    run_step "$name" "$(limit_of "$part")" stic-cli bench "${keys[@]}"
}

install_project
run_demo
for part in continuous training vllm plain; do
    for geometry in "${geometries[@]}"; do
        bench_step "$geometry" "$part"
    done
done
wait "$demo_pid"
if [[ $demo_dir != "$work/demo" && -f $demo_dir/report.json ]]; then # the report reads it from the work folder
    mkdir -p "$work/demo" && cp "$demo_dir/report.json" "$work/demo/"
fi

tar -czf "$OUT/gpu_check-logs.tar.gz" -C "$work" logs
# The report runs from the tree, so that it runs where the install failed too.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m stic_plugin.tools.gpu_check "$work" "$OUT" \
    --seconds "$SECONDS" ${smoke:+--smoke}
status=$?
rm -rf "$work"
exit $status
