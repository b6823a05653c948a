"""Respiratory rate from breath sounds on the RRuJO recordings, cross-validated by subject.

Each WAV in ../shared/data/rrujo/Database/<device>/<rate>/<subject>.wav is a healthy adult
breathing paced at <rate> breaths/min for about a minute, recorded by an ESP32 + INMP441
stethoscope (RRinervasO, 4500 Hz; one subject at 2000 Hz) or a Thinklabs electronic
stethoscope (ThinklabsO, 2000 or 8000 Hz). 23 subjects, 10 files each.

The breath-sound estimator (``device/estimators/breath_sounds.py``) has one learned part, the
octave classifier (half, once or twice the burst rate). Subject-level cross-validation:
subjects are shuffled with the seed and dealt into ``--folds`` folds; for each fold the
classifier is fitted (``convert.breath_octave.fit``) on the other folds' subjects only, and
the fold's files run through the real streaming core (``Pipeline`` with role ``audio`` at
the file's rate, the polyphase decimator, the default ``listens = "auto"`` estimators: heart
and breath, each guarding the other) with that classifier. Every second from 32 s on is
scored against the paced rate:

- MAE over the seconds that have a value; coverage = share of seconds with a value;
  file coverage = share of files with at least one value; mean of per-file MAEs,
- overall, per device, per file rate, per paced rate, per subject, and as a sweep of quality
  thresholds (the shipped threshold is ``BreathSoundsRR().min_quality``).

The other constants (bands, window, features, prominence gate) were chosen on these files by
looking at pooled results, not inside folds; the threshold sweep shows how the figures move
with the one that trades coverage for error.

    BEDSIDE_SHARED_DATA=../shared/data python bench/audio_rr.py [--folds 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.breath_octave import DATA, FROM_S, RRujoFile, fit, rrujo_files, table  # noqa: E402
from device.estimators.audio_vitals import audio_estimators  # noqa: E402
from device.roles import EstimateKey  # noqa: E402

RR_AUDIO = EstimateKey.parse("rr_audio")
from device.estimators.breath_sounds import BreathSoundsRR  # noqa: E402
from device.pipeline import Pipeline  # noqa: E402
from device.recording import read_wav  # noqa: E402

THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def run_file(f: RRujoFile, model: dict[str, Any]) -> list[tuple[int, float | None, float]]:
    """(second, breath-sound RR or None, quality) for every second of one file."""
    rec = read_wav(f.path)
    ests = audio_estimators("auto")
    for e in ests:
        if isinstance(e, BreathSoundsRR):
            e.model, e.min_quality = model, 0.0
    core = Pipeline({"audio": rec.fs_hz}, ests)
    x = rec.role("audio")
    out = []
    for a in range(0, len(x), 4096):
        core.feed("audio", x[a : a + 4096])
        for second in core.drain():
            est = second.estimates[RR_AUDIO]
            out.append((int(second.t_s), est.value, est.quality))
    return out


def summary(rows: list[dict[str, Any]], q: float) -> dict[str, Any]:
    """Scores of per-second rows (file, paced, value, quality) at quality threshold q."""
    if not rows:
        return {}
    paced = np.array([r["paced"] for r in rows])
    val = np.array([np.nan if r["value"] is None else r["value"] for r in rows])
    ok = np.isfinite(val) & (np.array([r["quality"] for r in rows]) >= q)
    err = np.abs(val[ok] - paced[ok])
    per_file: dict[str, list[float]] = defaultdict(list)
    files = set()
    for r, k, e in zip(rows, ok, np.abs(val - paced), strict=True):
        files.add(r["file"])
        if k:
            per_file[r["file"]].append(float(e))
    return {
        "files": len(files),
        "seconds": len(rows),
        "mae_bpm": round(float(err.mean()), 2) if len(err) else None,
        "coverage": round(float(ok.mean()), 3),
        "file_coverage": round(len(per_file) / len(files), 3),
        "mean_file_mae_bpm": round(float(np.mean([np.mean(v) for v in per_file.values()])), 2)
        if per_file
        else None,
        "within_1_bpm": round(float((err <= 1).mean()), 3) if len(err) else None,
        "over_5_bpm_off": round(float((err > 5).mean()), 3) if len(err) else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--folds", type=int, default=5, help="subject folds (23: leave one out)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "audio_rr.json"))
    args = ap.parse_args()
    files = rrujo_files(args.data)
    if not files:
        print(f"no RRuJO data at {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    train_rows = table(files)
    subjects = sorted({f.subject for f in files})
    perm = [subjects[i] for i in np.random.default_rng(args.seed).permutation(len(subjects))]
    folds = [set(perm[i :: args.folds]) for i in range(args.folds)]
    rows: list[dict[str, Any]] = []
    for k, test in enumerate(folds):
        model = fit([r for r in train_rows if r["subject"] not in test])
        for f in (f for f in files if f.subject in test):
            for t, value, quality in run_file(f, model):
                if t >= FROM_S:
                    rows.append(
                        {
                            "file": str(f.path.relative_to(args.data)),
                            "device": f.device,
                            "fs_hz": f.fs_hz,
                            "paced": f.paced_bpm,
                            "subject": f.subject,
                            "fold": k,
                            "t_s": t,
                            "value": value,
                            "quality": quality,
                        }
                    )
        print(f"fold {k + 1}/{args.folds}: {len(test)} subjects", file=sys.stderr)
    q = BreathSoundsRR().min_quality

    def by(key: str) -> dict[str, Any]:
        vals = sorted({r[key] for r in rows})
        return {
            (str(int(v)) if isinstance(v, float) else str(v)): summary(
                [r for r in rows if r[key] == v], q
            )
            for v in vals
        }

    result = {
        "what": "RR from breath sounds (BreathSoundsRR, listens=auto) on RRuJO, subject-level "
        f"{args.folds}-fold cross-validation (octave classifier fitted on the training "
        f"subjects of each fold), seconds >= {FROM_S} s scored against the paced rate",
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "folds": args.folds,
        "seed": args.seed,
        "subjects": len(subjects),
        "quality_threshold": q,
        "overall": summary(rows, q),
        "per_device": by("device"),
        "per_fs_hz": by("fs_hz"),
        "per_paced_rate": by("paced"),
        "per_device_and_fs": {
            f"{d}@{int(fs)}": summary([r for r in rows if r["device"] == d and r["fs_hz"] == fs], q)
            for d, fs in sorted({(r["device"], r["fs_hz"]) for r in rows})
        },
        "per_subject": by("subject"),
        "threshold_sweep": {str(t): summary(rows, t) for t in THRESHOLDS},
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    show = ("overall", "per_device", "per_fs_hz", "per_paced_rate", "threshold_sweep")
    print(json.dumps({k: result[k] for k in show}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
