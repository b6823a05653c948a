"""The core beside NeuroKit2 and HeartPy on the shared BIDMC records: accuracy per subject and
mean, on the same references, scored by the same rule, in the same run, with each one's speed.

    python bench/peers.py [--data DIR] [--records 1,17] [--jobs 2] [--out bench/results/peers.json]

Tasks (as in bench/accuracy.py), each method seeing only the one channel of its task:

- hr_ppg: bedside ``--use ppg``; NeuroKit2 ``ppg_process`` peaks; HeartPy bandpass
  0.7-3.5 Hz then ``process``.
- hr_ecg: bedside ``--use ecg``; NeuroKit2 ``ecg_clean`` + ``ecg_peaks``; HeartPy its recipe
  for noisy ECG: ``remove_baseline_wander``, ``scale_data``, ``enhance_ecg_peaks``, then
  ``process``.
- rr_resp: bedside ``--use resp``; NeuroKit2 ``rsp_process``; HeartPy none (it reads heart
  signals only).
- rr_ppg: bedside the PPG's breathing modulation; NeuroKit2 none (no default pipeline for RR
  from a pulse wave); HeartPy ``calc_breathing`` on the PPG's beat intervals (respiratory
  sinus arrhythmia: spline at 1 kHz, 0.1-0.4 Hz band, Welch peak, as its ``process`` does for a
  segment) over the 32 s ending every other second, held for the next.

References (``lab.reference``): the monitor's ECG HR; the mean of the two annotators' breath
rates over 32 s. Scored per second from t = 32 s (``lab.reference.score``): MAE over the
seconds with both, coverage = share of reference seconds with an estimate. HR is scored in
whole bpm for every method (the device publishes whole bpm, as monitors display it; the peers'
per-second rates are rounded the same way). The peers run offline over the whole record
(non-causal filters, peaks found with the future in view); NeuroKit2's per-sample rate is
averaged over each second (as ``lab/report.py`` does), HeartPy's beat-to-beat rate likewise
(intervals between beats it accepted, within its own 40-180 bpm range).

Speed: CPU time of each method on each task (the record already read), as signal seconds per
CPU second (x real time). ``--jobs`` runs records in parallel processes (CPU time is per
process, so the speeds do not depend on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import SKIP_S, TASKS, task_estimators  # noqa: E402

from device.pipeline import run_recording  # noqa: E402
from device.recording import read_csv  # noqa: E402
from lab import reference  # noqa: E402
from lab.report import _per_second_mean, hold_gaps  # noqa: E402

METHODS = ("bedside", "neurokit2", "heartpy")
#: what a peer does not attempt, and why (shown in the tables)
NOT_OFFERED = {
    ("neurokit2", "rr_ppg"): "no default pipeline for RR from a pulse wave",
    ("heartpy", "rr_resp"): "reads heart signals only (no respiration pipeline)",
}
#: RR from the PPG's beat intervals: the window of the reference, and the fewest intervals
RR_WINDOW_S = 32.0
MIN_INTERVALS = 8
#: HeartPy's RR is computed every 2 s and held for the next second (half its cost; a 32 s
#: window moved by 1 s changes a breathing rate by little)
RR_STEP_S = 2


def shared_bidmc() -> Path:
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    for cand in (
        Path(env) if env else None,
        ROOT.parent / "shared/data",
        ROOT.parents[1] / "shared/data",
    ):
        if cand is not None and (cand / "bidmc" / "bidmc_csv").is_dir():
            return cand / "bidmc" / "bidmc_csv"
    return ROOT.parent / "shared" / "data" / "bidmc" / "bidmc_csv"


#: HeartPy's own plausible range (its process() defaults bpmmin=40, bpmmax=180): a beat
#: interval outside it is not a heartbeat
HEARTPY_BPM = (40.0, 180.0)


def beat_rate_per_second(
    intervals: list[tuple[int, int]], fs: float, n_samples: int, n: int
) -> np.ndarray:
    """Per-second mean of the beat-to-beat rate: each interval (a, b) between two accepted
    beats (sample indices) gives 60 fs / (b - a), held from a to b; none between beats that
    are not both accepted, nor for an interval outside ``HEARTPY_BPM``."""
    rate = np.full(n_samples, np.nan)
    lo, hi = HEARTPY_BPM
    for a, b in intervals:
        if b > a and lo <= 60.0 * fs / (b - a) <= hi:
            rate[a:b] = 60.0 * fs / (b - a)
    return _per_second_mean(rate, fs, n)


# -- the methods: (signals, fs, n) -> per-second series -------------------------------------
def bedside(task: str, x: np.ndarray, fs: float, n: int) -> np.ndarray:
    role, q, _ = TASKS[task]
    vit = run_recording({role: x}, fs, estimators=task_estimators(task, "dsp"), whole_hr=True)
    out = np.full(n, np.nan)
    for v in vit:
        val = v.hr_bpm if q == "hr" else v.rr_bpm
        k = int(v.t_s)
        if val is not None and 0 <= k < n:
            out[k] = val
    return out


def neurokit2(task: str, x: np.ndarray, fs: float, n: int) -> np.ndarray:
    import neurokit2 as nk

    sr = int(round(fs))
    x = hold_gaps(x)
    if task == "hr_ecg":
        _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=sr), sampling_rate=sr)
        peaks = info["ECG_R_Peaks"]
    elif task == "hr_ppg":
        _, info = nk.ppg_process(x, sampling_rate=sr)
        peaks = info["PPG_Peaks"]
    elif task == "rr_resp":
        signals, _ = nk.rsp_process(x, sampling_rate=sr)
        return _per_second_mean(signals["RSP_Rate"].to_numpy(float), fs, n)
    else:
        raise ValueError(task)
    if len(peaks) < 3:
        return np.full(n, np.nan)
    rate = nk.signal_rate(peaks, sampling_rate=sr, desired_length=len(x))
    return _per_second_mean(np.asarray(rate, float), fs, n)


def _heartpy_intervals(task: str, x: np.ndarray, fs: float) -> list[tuple[int, int]]:
    """HeartPy's beat intervals (sample indices of both beats) of the PPG or ECG, between
    consecutive peaks it accepted both of (its ``RR_list_cor``)."""
    import heartpy as hp

    x = hold_gaps(x)
    if task in ("hr_ppg", "rr_ppg"):
        y = hp.filter_signal(x, cutoff=[0.7, 3.5], sample_rate=fs, order=3, filtertype="bandpass")
    else:
        y = hp.scale_data(hp.remove_baseline_wander(x, fs))
        y = hp.enhance_ecg_peaks(y, fs, aggregation="median", iterations=5)
    wd, _ = hp.process(y, fs)
    peaks = [int(p) for p in wd["peaklist"]]
    ok = [int(v) == 1 for v in wd["binary_peaklist"]]
    return [
        (peaks[i], peaks[i + 1]) for i in range(min(len(peaks), len(ok)) - 1) if ok[i] and ok[i + 1]
    ]


def heartpy(task: str, x: np.ndarray, fs: float, n: int) -> np.ndarray:
    from heartpy.analysis import calc_breathing

    intervals = _heartpy_intervals(task, x, fs)
    if task in ("hr_ppg", "hr_ecg"):
        return beat_rate_per_second(intervals, fs, len(x), n)
    # rr_ppg: breathing from the beat intervals, as HeartPy's process does for a whole
    # segment (spline at 1 kHz, 0.1-0.4 Hz band, Welch peak), over the 32 s ending each second
    out = np.full(n, np.nan)
    if len(intervals) < MIN_INTERVALS:
        return out
    iv = np.asarray(intervals, dtype=float)
    rr_ms = (iv[:, 1] - iv[:, 0]) * 1000.0 / fs
    end_s = iv[:, 1] / fs
    good = (rr_ms >= 60e3 / HEARTPY_BPM[1]) & (rr_ms <= 60e3 / HEARTPY_BPM[0])
    for k in range(int(RR_WINDOW_S), n, RR_STEP_S):
        sel = good & (end_s > k - RR_WINDOW_S) & (end_s <= k)
        if sel.sum() < MIN_INTERVALS:
            continue
        try:
            m, _ = calc_breathing(rr_ms[sel], measures={}, working_data={})
        except (ValueError, np.linalg.LinAlgError):
            continue
        out[k : k + RR_STEP_S] = 60.0 * float(m["breathingrate"])
    return out


RUNNERS: dict[str, Callable[[str, np.ndarray, float, int], np.ndarray]] = {
    "bedside": bedside,
    "neurokit2": neurokit2,
    "heartpy": heartpy,
}


def evaluate(path: Path, tasks: list[str], methods: list[str]) -> dict[str, Any]:
    rec = read_csv(path)
    ref = reference.load_bidmc_reference(path, rec.fs_hz, rec.duration_s)
    n = int(rec.duration_s) + 1
    out: dict[str, Any] = {"duration_s": rec.duration_s, "scores": {}, "cpu_s": {}, "notes": []}
    for task in tasks:
        role, q, _ = TASKS[task]
        x = np.asarray(rec.role(role), dtype=float)
        target = ref.hr_bpm if q == "hr" else ref.rr_bpm
        out["scores"][task] = {}
        out["cpu_s"][task] = {}
        for method in methods:
            if (method, task) in NOT_OFFERED:
                continue
            t0 = time.process_time()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # peers warn freely about odd segments
                    est = RUNNERS[method](task, x, rec.fs_hz, n)
            except Exception as e:  # a peer that fails on a record is reported, not fatal
                out["notes"].append(f"{method} {task}: {type(e).__name__}: {e}")
                est = np.full(n, np.nan)
            out["cpu_s"][task][method] = time.process_time() - t0
            if q == "hr":
                est = np.round(est)  # whole bpm, as the device publishes (NaN stays NaN)
            m = min(len(est), len(target))
            out["scores"][task][method] = reference.score(est[SKIP_S:m], target[SKIP_S:m])
    return out


def _evaluate_star(args: tuple[Path, list[str], list[str]]) -> tuple[str, dict[str, Any]]:
    path, tasks, methods = args
    return path.name.split("_Signals")[0], evaluate(path, tasks, methods)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "scipy", "neurokit2", "heartpy"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except ImportError:
            out[mod] = "not installed"
    try:
        from importlib.metadata import version

        out["heartpy"] = version("heartpy")  # its __version__ lags its releases
    except Exception:
        pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=shared_bidmc())
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--records", default="", help="comma list of record numbers (default all)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")
    a = ap.parse_args()
    tasks = [t for t in a.tasks.split(",") if t]
    methods = []
    for m in a.methods.split(","):
        if m == "bedside" or m in versions() and versions()[m] != "not installed":
            methods.append(m)
        else:
            print(f"{m}: not installed (pip install {m}); left out", file=sys.stderr)
    files = sorted(a.data.glob("bidmc_*_Signals.csv*"))
    if a.records:
        want = {f"bidmc_{int(r):02d}" for r in a.records.split(",")}
        files = [f for f in files if f.name.split("_Signals")[0] in want]
    if not files:
        print(f"no BIDMC records under {a.data}", file=sys.stderr)
        return 2
    t_wall = time.monotonic()
    per: dict[str, dict[str, Any]] = {}
    jobs = [(f, tasks, methods) for f in files]
    # each worker in a session of its own, so that Linux's autogroup scheduling gives each
    # its share of a shared machine (one session would share one)
    with ProcessPoolExecutor(max_workers=max(1, a.jobs), initializer=os.setsid) as pool:
        for name, res in pool.map(_evaluate_star, jobs):
            per[name] = res
            print(
                name,
                "  ".join(
                    f"{t}: " + "/".join(f"{s['mae']:.2f}" for s in res["scores"][t].values())
                    for t in tasks
                ),
                flush=True,
            )
    summary: dict[str, dict[str, Any]] = {}
    speed: dict[str, dict[str, float]] = {m: {} for m in methods}
    signal_s = sum(r["duration_s"] for r in per.values())
    for t in tasks:
        summary[t] = {}
        for m in methods:
            if (m, t) in NOT_OFFERED:
                summary[t][m] = {"not_offered": NOT_OFFERED[(m, t)]}
                continue
            summary[t][m] = reference.summarise(r["scores"][t][m] for r in per.values())
            cpu = sum(r["cpu_s"][t][m] for r in per.values())
            speed[m][t] = signal_s / cpu if cpu > 0 else float("nan")
    for t in tasks:
        row = []
        for m in methods:
            s = summary[t][m]
            row.append(
                f"{m} {s['mean_mae']:.2f} ({s['mean_coverage']:.0%}, {speed[m][t]:.0f}x)"
                if "mean_mae" in s
                else f"{m} -"
            )
        print(f"{t}: mean MAE (coverage, speed): " + "; ".join(row))
    result = {
        "what": "accuracy per subject and mean of the core's signal processing beside NeuroKit2 "
        "and HeartPy on the same BIDMC references (lab.reference), scored from t = 32 s; HR in "
        "whole bpm for all; speed = signal seconds per CPU second",
        "versions": versions(),
        "records": len(per),
        "tasks": tasks,
        "methods": methods,
        "not_offered": {f"{m}/{t}": why for (m, t), why in NOT_OFFERED.items()},
        "summary": summary,
        "speed_x_realtime": speed,
        "per_subject": {
            name: {"scores": r["scores"], "notes": r["notes"]} for name, r in sorted(per.items())
        },
        "wall_s": round(time.monotonic() - t_wall, 1),
        "jobs": a.jobs,
        "command": "python bench/peers.py " + " ".join(sys.argv[1:]),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
