"""`stic-cli pref` with `executor: ray` on N small images: the driver's peak resident memory and the time to the
first written record (not a test: its figures depend on the machine).

    python benchmarks/ray_stream.py --images 500 --images 5000

Each run builds (once, in --workdir) the tiny LLaVA that vLLM loads and N images of --size pixels square, then
runs pref with the tiny model on vLLM's engines in a Ray instance of this machine, max_new_tokens 1, and reads
the command's /proc entry (VmHWM: its peak resident memory, Ray's and vLLM's processes apart) and its output
file as it runs. One line per run, and the figures as JSON on the last line.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# vLLM's CPU build as the project's tests run it: a small KV cache, no graph compilation.
VLLM_CPU = dict(VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING", TORCH_COMPILE_DISABLE="1")


def peak_resident_mb(pid: int) -> float | None:
    """The process's peak resident memory so far (VmHWM), in MB; None once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def tiny_model(workdir: Path) -> str:
    models = workdir / "models"
    if not (models / "tiny-llava-vllm").is_dir():
        subprocess.run([sys.executable, "-m", "stic_plugin.tools.fixtures", "--vllm", str(models)], check=True)
    return str(models / "tiny-llava-vllm")


def images(workdir: Path, count: int, size: int) -> Path:
    from stic_plugin.tools.fixtures import make_images

    folder = workdir / f"images-{count}-{size}px"
    if len(list(folder.glob("*.png"))) != count:
        shutil.rmtree(folder, ignore_errors=True)
        make_images(folder, count=count, size=size, seed=count)
    return folder


def run(model: str, folder: Path, out: Path, batch_size: int, concurrency: int, timeout: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    keys = dict(
        model_name_or_path=model,
        template="llava",
        image_dir=str(folder),
        dataset_dir=str(out),
        engine="vllm",
        executor="ray",
        concurrency=concurrency,
        infer_dtype="float32",
        max_new_tokens=1,
        batch_size=batch_size,
    )
    command = ["stic-cli", "pref", *(f"{key}={value}" for key, value in keys.items())]
    stic_cli = str(Path(sys.executable).with_name("stic-cli"))  # this environment's, on the PATH or not
    part = out / "stic_pref" / "part-00000-of-00001.jsonl"
    started = time.monotonic()
    process = subprocess.Popen(
        [stic_cli, *command[1:]],
        env={**os.environ, **VLLM_CPU},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, first, timed_out = 0.0, None, False
    while process.poll() is None:
        peak = max(peak, peak_resident_mb(process.pid) or 0.0)
        if first is None and part.is_file() and part.stat().st_size > 0:
            first = time.monotonic() - started
        if time.monotonic() - started > timeout:  # the figures so far are still reported
            process.terminate()
            timed_out = True
            break
        time.sleep(0.05)
    stderr = process.communicate()[1]
    if process.returncode != 0 and not timed_out:
        raise SystemExit(f"pref ended with status {process.returncode}:\n{stderr[-3000:]}")
    records = sum(1 for _ in part.open()) if part.is_file() else 0
    return dict(
        images=len(list(folder.glob("*.png"))),
        records=records,
        driver_peak_rss_mb=round(peak, 1),
        first_record_s=None if first is None else round(first, 1),
        total_s=round(time.monotonic() - started, 1),
        timed_out=timed_out,
        command=" ".join(command),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, action="append", help="images of one run (repeat for several)")
    parser.add_argument("--size", type=int, default=48, help="width and height of each image, in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stic-ray-stream"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = tiny_model(args.workdir)
    figures = []
    for count in args.images or [500, 5000]:
        folder = images(args.workdir, count, args.size)
        result = run(model, folder, args.workdir / f"out-{count}", args.batch_size, args.concurrency, args.timeout)
        figures.append(result)
        print(
            f"{count} images of {args.size}x{args.size}: driver peak {result['driver_peak_rss_mb']} MB, first record "
            f"after {result['first_record_s']} s, {result['records']} records in {result['total_s']} s",
            flush=True,
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
