"""Respiratory rate from breathing sounds (BreathSoundRR) on the RRuJO recordings.

Each WAV in ../shared/data/rrujo/Database/<device>/<rate>/ is a healthy adult breathing paced
at <rate> breaths/min for about a minute. Every file goes through the real streaming core
(``Pipeline`` with role ``audio`` at the file's rate, resampled inside to the estimator's
2 kHz), and every second from 30 s on (a full window) is scored against the paced rate:

- MAE over the seconds that have a value, coverage = share of seconds with a value,
- per device and overall, at the estimator's quality threshold, and as a sweep of thresholds.

The estimator's constants (band, envelope, window, harmonic sum) were chosen by looking at
these same files: this is a measurement of a hand-tuned method on its development data, not
a held-out evaluation.

    .venv/bin/python bench/audio_rr.py [--out bench/results/audio_rr.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.estimators.audio import BreathSoundRR  # noqa: E402
from device.pipeline import run_recording  # noqa: E402
from device.recording import read_wav  # noqa: E402
from device.roles import EstimateKey  # noqa: E402

RR_AUDIO = EstimateKey.parse("rr_audio")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rrujo" / "Database"
FROM_S = 30
THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "audio_rr.json"))
    args = ap.parse_args()
    files = sorted(DATA.glob("*/*/*.wav"))
    if not files:
        print(f"no RRuJO data at {DATA}", file=sys.stderr)
        return 2
    default_q = BreathSoundRR().min_quality
    per_file = []
    rows = []  # (device, paced, estimate, quality) for every scored second
    t0 = time.perf_counter()
    audio_s = 0.0
    for f in files:
        device = f.parts[-3].replace("Dataset ", "")
        paced = float(f.parts[-2])
        rec = read_wav(f)
        audio_s += rec.duration_s
        est = BreathSoundRR("audio", min_quality=0.0)
        vitals = run_recording(
            {"audio": rec.role("audio")}, rec.fs_hz, chunk=4096, estimators=[est]
        )
        scored = [v for v in vitals if v.t_s >= FROM_S]
        vals = np.array([np.nan if v.rr_bpm is None else v.rr_bpm for v in scored])
        qual = np.array([v.sqi.get(RR_AUDIO, 0.0) for v in scored])
        for v, q in zip(vals, qual, strict=True):
            rows.append((device, paced, v, q))
        ok = np.isfinite(vals) & (qual >= default_q)
        err = np.abs(vals[ok] - paced)
        per_file.append(
            {
                "file": str(f.relative_to(DATA)),
                "device": device,
                "paced_bpm": paced,
                "fs_hz": rec.fs_hz,
                "duration_s": round(rec.duration_s, 1),
                "seconds_scored": len(scored),
                "coverage": round(float(ok.mean()) if len(ok) else 0.0, 3),
                "mae_bpm": round(float(err.mean()), 2) if len(err) else None,
                "median_estimate_bpm": round(float(np.median(vals[ok])), 1) if ok.any() else None,
            }
        )
    elapsed = time.perf_counter() - t0

    def summary(
        sel: list[tuple[str, float, float, float]], q: float
    ) -> dict[str, float | int | None]:
        paced = np.array([r[1] for r in sel])
        est = np.array([r[2] for r in sel])
        qual = np.array([r[3] for r in sel])
        ok = np.isfinite(est) & (qual >= q)
        err = np.abs(est[ok] - paced[ok])
        return {
            "seconds": len(sel),
            "coverage": round(float(ok.mean()), 3) if len(sel) else 0.0,
            "mae_bpm": round(float(err.mean()), 2) if len(err) else None,
            "within_2_bpm": round(float((err <= 2).mean()), 3) if len(err) else None,
        }

    devices = sorted({r[0] for r in rows})
    result = {
        "what": "BreathSoundRR on RRuJO paced-breathing recordings through the streaming pipeline; "
        f"seconds >= {FROM_S} s scored against the paced rate (folder name)",
        "note": "constants were chosen on these same files: development data, not held out",
        "files": len(files),
        "quality_threshold": default_q,
        "overall": summary(rows, default_q),
        "per_device": {d: summary([r for r in rows if r[0] == d], default_q) for d in devices},
        "per_paced_rate": {
            str(int(p)): summary([r for r in rows if r[1] == p], default_q)
            for p in sorted({r[1] for r in rows})
        },
        "threshold_sweep": {
            str(q): {
                "all": summary(rows, q),
                **{d: summary([r for r in rows if r[0] == d], q) for d in devices},
            }
            for q in THRESHOLDS
        },
        "speed_x_realtime": round(audio_s / elapsed, 1),
        "per_file": per_file,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("overall", "per_device", "threshold_sweep", "speed_x_realtime")
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
