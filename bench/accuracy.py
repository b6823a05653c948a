"""Accuracy of the device pipeline on the shared BIDMC records, per subject and mean.

    python bench/accuracy.py [--data DIR] [--tasks hr_ppg,hr_ecg,rr_resp] [--records 1,17]
                             [--unrounded] [--out bench/results/accuracy.json]

Scores, from t = 32 s on (the reference RR needs 32 s of breaths):
- HR from PPG alone (``--use ppg``), HR from ECG alone (``--use ecg``): against the monitor's
  ECG-derived HR in ``_Numerics``;
- RR from impedance alone (``--use resp``): against the annotated breaths;
- RR from PPG alone (``rr_ppg``, the breathing modulation of the pulse wave): the same.
MAE over seconds where both estimate and reference exist; coverage = share of seconds with a
reference that have an estimate.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.config import ModelsConfig  # noqa: E402
from device.estimators.base import Estimator  # noqa: E402
from device.estimators.registry import select_estimators  # noqa: E402
from device.pipeline import run_recording  # noqa: E402
from device.recording import read_csv  # noqa: E402
from lab import reference  # noqa: E402
from lab.reference import load_bidmc_reference  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bidmc" / "bidmc_csv"
SKIP_S = 32

TASKS = {  # name -> (role used, quantity, target MAE)
    "hr_ppg": ("ppg", "hr", 1.2),
    "hr_ecg": ("ecg", "hr", 0.8),
    "rr_resp": ("resp", "rr", 0.5),
    # RR from the PPG's breathing modulation, the pipeline's fallback when only a pulse
    # oximeter is on; the target is the models issue's (a plain spectral estimator: ~2.2)
    "rr_ppg": ("ppg", "rr", 1.5),
}


def score(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The shared scoring rule, from SKIP_S on."""
    return reference.score(est[SKIP_S:], ref[SKIP_S:])


def task_estimators(task: str, which: str) -> list[Estimator] | None:
    """``dsp``: the signal-processing estimators for the task's role (with RR from the PPG's
    breathing modulation for ``rr_ppg``); ``pipeline``: whatever the device would choose
    (None: the pipeline's defaults, shipped models included)."""
    if which == "pipeline":
        return None
    role, _quantity, _ = TASKS[task]
    return select_estimators([role], ModelsConfig(enabled=False))


def evaluate(
    path: Path, tasks: list[str], which: str = "dsp", whole_hr: bool = True
) -> tuple[dict[str, dict[str, Any]], float, float]:
    rec = read_csv(path)
    ref = load_bidmc_reference(path, rec.fs_hz, rec.duration_s)
    out: dict[str, dict[str, Any]] = {}
    cpu = 0.0
    for task in tasks:
        role, q, _ = TASKS[task]
        t0 = time.process_time()
        vit = run_recording(
            {role: rec.role(role)},
            rec.fs_hz,
            estimators=task_estimators(task, which),
            whole_hr=whole_hr,
        )
        cpu += time.process_time() - t0
        est = np.full(len(vit) + 1, np.nan)
        used: set[str] = set()
        for v in vit:
            val = v.hr_bpm if q == "hr" else v.rr_bpm
            if val is not None:
                est[int(v.t_s)] = val
                used.add(str(v.hr_model if q == "hr" else v.rr_model))
        out[task] = score(est, ref.hr_bpm if q == "hr" else ref.rr_bpm)
        out[task]["estimators"] = ",".join(sorted(used))
    return out, cpu, rec.duration_s


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--records", default="", help="comma list of record numbers (default all)")
    ap.add_argument(
        "--estimators",
        choices=("dsp", "pipeline"),
        default="dsp",
        help="dsp (default): the signal-processing estimators; pipeline: what the device "
        "chooses, shipped models included (those were trained on these records, so their "
        "figures here are in-sample: score models by cross-validation with `bedside eval`)",
    )
    ap.add_argument(
        "--unrounded",
        action="store_true",
        help="score HR as the estimators give it, before the rounding to whole bpm that the "
        "device publishes (the reference is the monitor's integer HR)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "accuracy.json")
    a = ap.parse_args()
    tasks = a.tasks.split(",")
    files = sorted(a.data.glob("bidmc_*_Signals.csv*"))
    if a.records:
        want = {f"bidmc_{int(r):02d}" for r in a.records.split(",")}
        files = [f for f in files if f.name.split("_Signals")[0] in want]
    if not files:
        print(f"no BIDMC records under {a.data}", file=sys.stderr)
        return 2
    per: dict[str, dict[str, dict[str, Any]]] = {}
    cpu_total = dur_total = 0.0
    for f in files:
        name = f.name.split("_Signals")[0]
        res, cpu, dur = evaluate(f, tasks, a.estimators, whole_hr=not a.unrounded)
        per[name] = res
        cpu_total += cpu
        dur_total += dur * len(tasks)
        print(
            name,
            "  ".join(f"{t}: {r['mae']:.2f} ({r['coverage']:.0%})" for t, r in res.items()),
            flush=True,
        )
    summary = {}
    for t in tasks:
        maes = [per[s][t]["mae"] for s in per]
        covs = [per[s][t]["coverage"] for s in per]
        summary[t] = {
            "mean_subject_mae": float(np.nanmean(maes)),
            "median_subject_mae": float(np.nanmedian(maes)),
            "worst_subject_mae": float(np.nanmax(maes)),
            "mean_coverage": float(np.mean(covs)),
            "min_coverage": float(np.min(covs)),
            "target_mae": TASKS[t][2],
        }
        s = summary[t]
        print(
            f"{t}: mean MAE {s['mean_subject_mae']:.3f} (target <= {s['target_mae']}), "
            f"median {s['median_subject_mae']:.3f}, worst {s['worst_subject_mae']:.2f}; "
            f"coverage mean {s['mean_coverage']:.1%}, min {s['min_coverage']:.1%}"
        )
        low = [f"{n} {per[n][t]['coverage']:.0%}" for n in per if per[n][t]["coverage"] < 0.9]
        if low:
            print(f"  {t}: coverage below 90 %: {', '.join(low)}")
    speed = dur_total / cpu_total if cpu_total else float("nan")
    print(
        f"pipeline speed: {speed:.0f}x real time on one core "
        f"(CPU time, {len(files)} records x {len(tasks)} tasks)"
    )
    machine = f"{platform.machine()} {platform.processor() or ''} {platform.python_version()}"
    machine = machine.strip()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "machine": machine,
                "records": len(files),
                "estimators": a.estimators,
                "hr_whole_bpm": not a.unrounded,
                "summary": summary,
                "speed_x_realtime": speed,
                "per_subject": per,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
