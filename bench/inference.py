"""Inference cost of the shipped models on this machine: LiteRT invoke time and sizes.

    python bench/inference.py [--models models] [--out bench/results/inference.json]
    python bench/inference.py --delegate gpu --gpubox    # LiteRT's GPU accelerator on lavapipe

For every ``.tflite`` in --models: file size, invoke time with one interpreter thread
(median and 95th percentile over --n invokes after a warm-up), and the whole model
estimator's cost per estimate (window features + invoke + decoding) on a real BIDMC record
when the shared data is present. Runs with LiteRT only (no TensorFlow in this process).

``--delegate gpu`` times each model on LiteRT's GPU accelerator instead (WebGPU over Vulkan;
``bedside run --delegate gpu``'s path, input written and output read back in each invoke,
as the CPU figures' set/invoke/get) and compares its outputs with the CPU's on the real
windows of the bundled BIDMC excerpt (record 09, 210 s). ``--gpubox`` runs that inside the
Debian trixie root of ``lab/gpubox.py`` (lavapipe, a software Vulkan device; Debian 12's is
refused by the accelerator) and writes ``bench/results/inference_gpu_lavapipe.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.config import ModelsConfig  # noqa: E402
from device.estimators.model import ModelEstimator  # noqa: E402
from device.inference import TfliteModel, interpreter_module, shipped_models_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT.parent / "shared" / "data" / "bidmc" / "bidmc_csv" / "bidmc_01_Signals.csv.gz"


def invoke_times(path: Path, n: int) -> dict[str, float]:
    interp = interpreter_module().Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(inp["shape"]).astype(np.float32)
    if inp["dtype"] != np.float32:
        s, z = inp["quantization"]
        x = np.clip(np.round(x / s + z), -128, 127).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    for _ in range(50):
        interp.invoke()
    t = np.empty(n)
    for i in range(n):
        a = time.perf_counter()
        interp.invoke()
        t[i] = time.perf_counter() - a
    return {
        "median_us": float(np.median(t) * 1e6),
        "p95_us": float(np.percentile(t, 95) * 1e6),
        "mean_us": float(t.mean() * 1e6),
    }


def gpu_against_cpu(path: Path, n: int) -> dict[str, Any]:
    """Invoke time on LiteRT's GPU accelerator, and its outputs against the CPU's on every
    usable window of the bundled excerpt (model outputs as float: logits or dequantised)."""
    from device.features import record_windows
    from device.recording import read_csv

    excerpt = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
    cpu = TfliteModel(path, ModelsConfig())
    gpu = TfliteModel(path, ModelsConfig(delegate="gpu"))
    rec = read_csv(excerpt)
    wins = record_windows(cpu.spec, rec.role(cpu.spec.role))
    windows = wins.windows[wins.usable]
    a = np.stack([cpu.run(w) for w in windows])
    b = np.stack([gpu.run(w) for w in windows])
    diff = np.abs(a - b)
    x = windows[0]
    for _ in range(20):
        gpu.run(x)
    t = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        gpu.run(x)
        t[i] = time.perf_counter() - t0
    return {
        "runs_on": gpu.where,
        "invoke_us": {
            "median": float(np.median(t) * 1e6),
            "p95": float(np.percentile(t, 95) * 1e6),
        },
        "windows_compared": len(windows),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "output_scale_max_abs": float(np.abs(a).max()),
        "argmax_agree": float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))),
    }


def estimator_cost(path: Path) -> dict[str, float] | None:
    """CPU time per estimate of the full model estimator over a real record (8 minutes)."""
    if not RECORD.is_file():
        return None
    from device.pipeline import run_recording
    from device.recording import read_csv

    model = TfliteModel(path, ModelsConfig())
    rec = read_csv(RECORD)
    if model.spec.role not in rec.roles:
        return None
    est = ModelEstimator(model)
    t0 = time.process_time()
    vitals = run_recording(
        {model.spec.role: rec.role(model.spec.role)}, rec.fs_hz, estimators=[est]
    )
    cpu = time.process_time() - t0
    return {
        "seconds_of_signal": len(vitals),
        "invocations": est.invocations,
        "cpu_ms_per_estimate": 1e3 * cpu / max(1, len(vitals)),
        "x_realtime": len(vitals) / cpu if cpu else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", type=Path, default=shipped_models_dir())
    ap.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="more folders of .tflite models to time (e.g. float32 conversions to compare)",
    )
    ap.add_argument("--n", type=int, default=2000, help="timed invokes per model")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/inference.json")
    ap.add_argument("--delegate", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--gpubox", action="store_true", help="run in lab/gpubox.py's trixie root")
    a = ap.parse_args()
    if a.gpubox:
        return in_gpubox(a)
    if a.out is None:
        a.out = ROOT / "bench" / "results" / "inference.json"
    if a.delegate == "gpu":
        return gpu_main(a)
    rows = {}
    paths = sorted(a.models.glob("*.tflite")) + [
        p for d in a.extra for p in sorted(d.glob("*.tflite"))
    ]
    for p in paths:
        man = (
            json.loads(p.with_suffix(".json").read_text())
            if p.with_suffix(".json").is_file()
            else {}
        )
        row = {
            "size_bytes": p.stat().st_size,
            "quant": man.get("quant"),
            "target": man.get("target"),
            "invoke_1_thread": invoke_times(p, a.n),
        }
        if man.get("target", "cpu") == "cpu":
            row["estimator"] = estimator_cost(p)
        rows[p.stem] = row
        inv = row["invoke_1_thread"]
        print(
            f"{p.stem}: {row['size_bytes'] / 1024:.1f} KB, invoke median {inv['median_us']:.1f} us "
            f"(p95 {inv['p95_us']:.1f}) on 1 thread",
            flush=True,
        )
    if not rows:
        print(f"no .tflite models in {a.models}", file=sys.stderr)
        return 2
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {os.cpu_count()} cores, "
                f"{platform.processor() or 'cpu'}, "
                f"Python {platform.python_version()}",
                "runtime": "ai-edge-litert",
                "threads": 1,
                "load_average_1min_at_start": load,
                "tensorflow_imported": "tensorflow" in sys.modules,
                "models": rows,
            },
            indent=1,
        )
    )
    return 0


def gpu_main(a: argparse.Namespace) -> int:
    from lab.machine import describe

    rows = {}
    for p in sorted(a.models.glob("*.tflite")):
        rows[p.stem] = row = gpu_against_cpu(p, min(a.n, 300))
        print(
            f"{p.stem}: on {row['runs_on']}, invoke median {row['invoke_us']['median']:.0f} us "
            f"(p95 {row['invoke_us']['p95']:.0f}); vs CPU on {row['windows_compared']} windows: "
            f"max |diff| {row['max_abs_diff']:.2e} "
            f"(outputs up to {row['output_scale_max_abs']:.1f}), "
            f"argmax agree {row['argmax_agree']:.3f}",
            flush=True,
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "machine": describe(),
                "runtime": "ai-edge-litert CompiledModel, HardwareAccelerator.GPU | CPU",
                "vulkan": os.environ.get("BEDSIDE_VULKAN_DEVICE", "whatever the loader finds"),
                "models": rows,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


def in_gpubox(a: argparse.Namespace) -> int:
    """This script with --delegate gpu inside lab/gpubox.py's root; the result copied out."""
    import shutil
    import tempfile

    from lab import gpubox

    out = a.out or ROOT / "bench" / "results" / "inference_gpu_lavapipe.json"
    with tempfile.TemporaryDirectory() as tmp:
        done = gpubox.run(
            ["env", "BEDSIDE_VULKAN_DEVICE=lavapipe (Mesa, Debian trixie)", "python",
             "/src/bench/inference.py", "--delegate", "gpu", "--models", "/src/models",
             "--n", str(a.n), "--out", "/out/r.json"],
            out_dir=Path(tmp),
        )  # fmt: skip
        lines = [ln for ln in done.stdout.splitlines() if not ln.startswith(("INFO", "I0000"))]
        print("\n".join(lines))
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "r.json", out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
