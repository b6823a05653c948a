"""Heart rate from heart sounds (HeartSoundsHR) against ECG R-peaks, and how often it answers
on breath-sound recordings.

1. ``../shared/data/pcg/pcg_1.wav`` (29.5 s phonocardiogram at 1000 Hz, with the times of the
   simultaneous ECG R-peaks): the streaming core (role ``audio``, ``listens = "heart"``, the
   8 s window) every second from 8 s on, and the estimator's function on windows of 4, 6 and
   8 s every second; each scored against 60 / mean R-R interval of the R-peaks inside the
   same window. MAE, coverage, worst error.
2. The RRuJO recordings (breathing at the chest or neck; a heart is audible in a few, with no
   reference to score it): share of seconds and of files for which the default
   ``listens = "auto"`` core publishes a heart rate, and the values.

    BEDSIDE_SHARED_DATA=../shared/data python bench/audio_hr.py
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.breath_octave import SHARED, rrujo_files  # noqa: E402
from device.dsp.audio_features import AUDIO_FS_HZ, HEART_ENVELOPE_FS_HZ, HeartEnvelope  # noqa: E402
from device.dsp.polyphase import PolyphaseResampler  # noqa: E402
from device.estimators.audio_vitals import audio_estimators  # noqa: E402
from device.estimators.heart_sounds import HeartSoundsHR, heart_rate  # noqa: E402
from device.pipeline import Pipeline  # noqa: E402
from device.recording import read_wav  # noqa: E402

PCG = SHARED / "pcg"


def reference(peaks: np.ndarray, t0: float, t1: float) -> float | None:
    p = peaks[(peaks >= t0) & (peaks <= t1)]
    return 60.0 / float(np.mean(np.diff(p))) if len(p) >= 3 else None


def score(pairs: list[tuple[float | None, float]], n: int) -> dict[str, float | int | None]:
    errs = [abs(e - r) for e, r in pairs if e is not None]
    return {
        "seconds": n,
        "coverage": round(len(errs) / n, 3) if n else 0.0,
        "mae_bpm": round(float(np.mean(errs)), 2) if errs else None,
        "max_error_bpm": round(float(np.max(errs)), 2) if errs else None,
    }


def pcg() -> dict[str, object]:
    rec = read_wav(PCG / "pcg_1.wav")
    lines = (PCG / "annotations.csv").read_text().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    peaks = np.array([float(v) for v in row[header.index("rpeak_times_s")].split()])
    x = rec.role("audio")
    core = Pipeline({"audio": rec.fs_hz}, audio_estimators("heart"))
    core.feed("audio", x)
    pairs = []
    for v in (s.vitals for s in core.drain()):
        ref = reference(peaks, v.t_s - 8.0, v.t_s)
        if v.t_s >= 8 and ref is not None:
            pairs.append((v.hr_bpm, ref))
    out: dict[str, object] = {"core_8s_window": score(pairs, len(pairs))}
    env, _ = HeartEnvelope().push(PolyphaseResampler(rec.fs_hz, AUDIO_FS_HZ)(x))
    q_min = HeartSoundsHR().min_quality
    for w in (4.0, 6.0, 8.0):
        pairs = []
        for t in range(int(w), int(rec.duration_s) + 1):
            ref = reference(peaks, t - w, t)
            if ref is None:
                continue
            seg = env[int((t - w) * HEART_ENVELOPE_FS_HZ) : int(t * HEART_ENVELOPE_FS_HZ)]
            hr, q = heart_rate(seg)
            pairs.append((hr if q >= q_min else None, ref))
        out[f"window_{int(w)}s"] = score(pairs, len(pairs))
    out["reference_mean_hr_bpm"] = round(60.0 / float(np.mean(np.diff(peaks))), 1)
    return out


def rrujo() -> dict[str, object]:
    files = rrujo_files()
    seconds = with_hr = 0
    per_file = {}
    for f in files:
        rec = read_wav(f.path)
        core = Pipeline({"audio": rec.fs_hz}, audio_estimators("auto"))
        core.feed("audio", rec.role("audio"))
        hrs = [s.vitals.hr_bpm for s in core.drain()]
        seconds += len(hrs)
        vals = [h for h in hrs if h is not None]
        with_hr += len(vals)
        if vals:
            per_file[str(f.path.relative_to(f.path.parents[2]))] = vals
    return {
        "files": len(files),
        "seconds": seconds,
        "share_of_seconds_with_hr": round(with_hr / seconds, 4) if seconds else None,
        "files_with_any_hr": len(per_file),
        "values": per_file,
    }


def main() -> int:
    out: dict[str, object] = {
        "what": "HeartSoundsHR: pcg_1 against ECG R-peaks; answers on RRuJO breath recordings",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    if (PCG / "pcg_1.wav").exists():
        out["pcg_1"] = pcg()
    if rrujo_files():
        out["rrujo"] = rrujo()
    path = Path(__file__).parent / "results" / "audio_hr.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "rrujo"}, indent=1))
    r = out.get("rrujo")
    if isinstance(r, dict):
        print({k: v for k, v in r.items() if k != "values"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
