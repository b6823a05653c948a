"""Inference cost of the shipped models on this machine: LiteRT invoke time and sizes.

    python bench/inference.py [--models models] [--out bench/results/inference.json]

For every ``.tflite`` in --models: file size, invoke time with one interpreter thread
(median and 95th percentile over --n invokes after a warm-up), and the whole model
estimator's cost per estimate (window features + invoke + decoding) on a real BIDMC record
when the shared data is present. Runs with LiteRT only (no TensorFlow in this process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

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
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference.json")
    a = ap.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
