"""Fit the breath-sound estimator's octave classifier on the RRuJO recordings.

``device/estimators/breath_sounds.py`` finds the burst rate of breath sounds and asks a
multinomial logistic regression whether breathing is at half, once or twice that rate. This
module builds its training table (every second from 30 s on of every recording, through the
device's own decimator and features), fits it, and writes ``breath_octave.json``.

    python -m convert.breath_octave [--data ../shared/data/rrujo/Database] [--out PATH]

Cross-validation by subject is ``bench/audio_rr.py``, which uses ``table`` and ``fit`` from
here inside each training fold.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.dsp.audio_features import AUDIO_FS_HZ, BREATH_FEATURE_FS_HZ, BreathBands
from device.dsp.polyphase import PolyphaseResampler
from device.estimators.breath_sounds import (
    COEF_PATH,
    FEATURES,
    OCTAVES,
    WINDOW_S,
    octave_features,
    transform,
)
from device.recording import read_wav

#: ``../shared/data`` beside the checkout, or BEDSIDE_SHARED_DATA
SHARED = Path(
    os.environ.get("BEDSIDE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
DATA = SHARED / "rrujo" / "Database"
#: Seconds scored and used for training: from a full window on.
FROM_S = 32
#: A window whose best octave is further than this from the paced rate teaches nothing about
#: octaves (the burst rate itself was wrong): left out of training.
LABEL_TOL_BPM = 2.0
#: L2 penalty on the standardised weights.
L2 = 1.0


@dataclass(frozen=True)
class RRujoFile:
    path: Path
    device: str  # "RRinervasO" (ESP32 + INMP441) or "ThinklabsO"
    paced_bpm: float
    subject: str
    fs_hz: float


def rrujo_files(data: Path = DATA) -> list[RRujoFile]:
    """Every RRuJO recording: <device>/<paced rate>/<subject>.wav."""
    out = []
    for p in sorted(data.glob("*/*/*.wav")):
        rec_fs = _wav_rate(p)
        out.append(
            RRujoFile(p, p.parts[-3].replace("Dataset ", ""), float(p.parts[-2]), p.stem, rec_fs)
        )
    return out


def _wav_rate(p: Path) -> float:
    import wave

    with wave.open(str(p), "rb") as w:
        return float(w.getframerate())


def band_features(path: Path) -> np.ndarray:
    """The device's breath-band features of a whole file (causal, so any window of them is
    what the streaming estimator holds at that second)."""
    rec = read_wav(path)
    y = PolyphaseResampler(rec.fs_hz, AUDIO_FS_HZ)(rec.role("audio"))
    feats, _ = BreathBands().push(y)
    return feats


def table(files: list[RRujoFile]) -> list[dict[str, Any]]:
    """One row per file and second >= FROM_S: burst rate, features, label, metadata."""
    rows = []
    n_win = int(round(WINDOW_S * BREATH_FEATURE_FS_HZ))
    for f in files:
        e = band_features(f.path)
        for t in range(FROM_S, int(len(e) / BREATH_FEATURE_FS_HZ) + 1):
            b = int(round(t * BREATH_FEATURE_FS_HZ))
            got = octave_features(e[max(0, b - n_win) : b])
            if got is None:
                continue
            fb, x = got
            cand = np.array(OCTAVES) * fb
            j = int(np.argmin(np.abs(cand - f.paced_bpm)))
            rows.append(
                {
                    "file": f.path.name,
                    "path": str(f.path),
                    "device": f.device,
                    "subject": f.subject,
                    "paced_bpm": f.paced_bpm,
                    "fs_hz": f.fs_hz,
                    "t_s": t,
                    "burst_rate": fb,
                    "x": x,
                    "label": j if abs(cand[j] - f.paced_bpm) <= LABEL_TOL_BPM else -1,
                }
            )
    return rows


def fit(rows: list[dict[str, Any]], l2: float = L2, balanced: bool = False) -> dict[str, Any]:
    """Multinomial logistic regression on the rows with a label (standardised features)."""
    from scipy.optimize import minimize

    use = [r for r in rows if r["label"] >= 0]
    x = transform(np.array([r["x"] for r in use]))
    y = np.array([r["label"] for r in use])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    k, d = len(OCTAVES), z.shape[1]
    onehot = np.eye(k)[y]
    counts = onehot.sum(axis=0)
    # balanced: weight each class by the inverse of its share (the burst rate is rarely half
    # the breathing rate); off by default: the shares are the prior the data show
    w = (onehot @ (len(y) / (k * np.maximum(counts, 1.0))))[:, None] if balanced else 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wts, bias = theta[: k * d].reshape(k, d), theta[k * d :]
        logits = z @ wts.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        n = len(y)
        val = -float((w * onehot * logp).sum()) / n + 0.5 * l2 * float((wts**2).sum()) / n
        g = w * (p - onehot) / n
        grad_w = g.T @ z + l2 * wts / n
        grad_b = g.sum(axis=0)
        return val, np.concatenate((grad_w.ravel(), grad_b))

    res = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B")
    theta = res.x
    return {
        "features": list(FEATURES),
        "octaves": list(OCTAVES),
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "weights": theta[: k * d].reshape(k, d).round(6).tolist(),
        "bias": theta[k * d :].round(6).tolist(),
        "l2": l2,
        "train_rows": len(use),
        "class_counts": counts.astype(int).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=COEF_PATH)
    ap.add_argument("--cv", type=Path, help="bench/results/audio_rr.json to cite in the file")
    args = ap.parse_args(argv)
    files = rrujo_files(args.data)
    if not files:
        print(f"no RRuJO recordings under {args.data}", file=sys.stderr)
        return 2
    rows = table(files)
    model = fit(rows)
    model["what"] = (
        "octave classifier of device/estimators/breath_sounds.py: probabilities that breathing "
        "is at 1/2, 1 or 2 x the burst rate of breath sounds"
    )
    model["trained_on"] = {
        "data": "RRuJO respiratory-rate audio database (MIT), all subjects in ../shared",
        "files": len(files),
        "subjects": len({f.subject for f in files}),
        "rows": len(rows),
        "date": datetime.date.today().isoformat(),
        "command": "python -m convert.breath_octave",
    }
    if args.cv and args.cv.exists():
        cv = json.loads(args.cv.read_text())
        model["cv"] = {k: cv.get(k) for k in ("folds", "overall", "per_device")}
    args.out.write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {args.out} ({model['train_rows']} rows, classes {model['class_counts']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
