"""CPU cost of the audio path: capture-rate samples in, audio vitals out, per second of audio.

A real breath-sound recording (the bundled RRuJO excerpt, 2000 Hz) is resampled offline to
each capture rate (scipy, outside the timed part), looped to ``--seconds`` of audio, and fed
through the streaming core (``Pipeline`` with role ``audio``, the default estimators for
``listens = "auto"``: polyphase decimation to 2 kHz, breath-sound RR and heart-sound HR) in
blocks of 1024 frames, as ``AudioSource`` delivers them. The figure is process CPU time
(``time.process_time``) per second of audio, i.e. the share of one core the audio path
takes; the best of ``--repeat`` runs is kept (other jobs on the machine only add time).

    python bench/audio_cost.py [--seconds 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.estimators.audio_vitals import audio_estimators  # noqa: E402
from device.pipeline import Pipeline  # noqa: E402
from device.recording import read_wav  # noqa: E402

EXCERPT = Path(__file__).resolve().parents[1] / "device" / "data" / "rrujo_thinklabs_paced12.wav"
RATES = (8000.0, 48000.0)
TARGETS = {8000.0: 0.01, 48000.0: 0.02}
BLOCK = 1024


def audio_at(fs_hz: float, seconds: float) -> np.ndarray:
    from scipy.signal import resample_poly

    rec = read_wav(EXCERPT)
    r = Fraction(fs_hz / rec.fs_hz).limit_denominator(1000)
    x = resample_poly(rec.role("audio"), r.numerator, r.denominator)
    n = int(seconds * fs_hz)
    return np.resize(x, n)  # loops the recording


def cost(x: np.ndarray, fs_hz: float) -> tuple[float, int]:
    core = Pipeline({"audio": fs_hz}, audio_estimators("auto"))
    n_vitals = 0
    t0 = time.process_time()
    for a in range(0, len(x), BLOCK):
        core.feed("audio", x[a : a + BLOCK])
        n_vitals += len(core.drain())
    return time.process_time() - t0, n_vitals


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "audio_cost.json"))
    args = ap.parse_args()
    rows = {}
    for fs in RATES:
        x = audio_at(fs, args.seconds)
        runs = [cost(x, fs) for _ in range(args.repeat)]
        best = min(r[0] for r in runs)
        rows[str(int(fs))] = {
            "audio_s": args.seconds,
            "vitals": runs[0][1],
            "cpu_s_per_audio_s": round(best / args.seconds, 5),
            "share_of_one_core_pct": round(100 * best / args.seconds, 3),
            "target_pct": 100 * TARGETS[fs],
            "met": best / args.seconds <= TARGETS[fs],
            "runs_cpu_s": [round(r[0], 3) for r in runs],
        }
        print(f"{int(fs)} Hz: {rows[str(int(fs))]}")
    result = {
        "what": "CPU seconds per second of audio through the streaming core's audio path "
        "(polyphase decimation to 2 kHz, breath-sound RR, heart-sound HR), blocks of "
        f"{BLOCK} frames, best of {args.repeat}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end",
        "recording": EXCERPT.name,
        "rates": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
