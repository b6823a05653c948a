"""The learned alternative for RR from breath sounds: a small 1-D CNN on the device's own
breath-band features, cross-validated by subject exactly like ``bench/audio_rr.py``.

Input: the last 30 s of ``BreathBands`` features (300 frames x 8 log band energies at 10 Hz,
each band standardised over the window), the same causal features the DSP estimator reads.
Output: logits over 5-45 breaths/min in steps of 1; the answer is the probability-weighted
mean of the bins within 3 of the most likely (as ``device.estimators.model.decode_rates``),
the quality the top probability. Training windows every 2 s from 32 s on, each with two
time-scaled copies (a stretch of n x f frames resampled to n: the same breathing at f times
the rate, f uniform in 0.6-1.6) so that five paced rates do not become five classes.
Subjects are shuffled with ``--seed`` and dealt into ``--folds`` folds (seed 1: the folds of
``bench/audio_rr.py``); each fold's model is scored on its held-out subjects' windows every
2 s from 32 s on. Coverage-matched comparison with the DSP estimator: the CNN's MAE at the
DSP estimator's coverage (quality threshold chosen on the pooled held-out predictions).

Needs TensorFlow (the ``convert`` extra). Not shipped: see docs/models.md for the figures.

    BEDSIDE_SHARED_DATA=../shared/data python bench/audio_rr_cnn.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.breath_octave import band_features, rrujo_files  # noqa: E402

GRID = np.arange(5.0, 46.0, 1.0)
WIN = 300


def _norm(w: np.ndarray) -> np.ndarray:
    return np.asarray((w - w.mean(axis=0)) / (w.std(axis=0) + 1e-6))


def windows(
    e: np.ndarray, paced: float, rng: np.random.Generator | None
) -> tuple[list[np.ndarray], list[float]]:
    xs, ys = [], []
    for t in range(32, int(len(e) / 10) + 1, 2):
        b = t * 10
        xs.append(_norm(e[b - WIN : b]))
        ys.append(paced)
        if rng is None:
            continue
        for _ in range(2):
            f = rng.uniform(0.6, 1.6)
            n = int(WIN * f)
            if n > b or not 5 <= paced * f <= 45:
                continue
            src = np.linspace(0, n - 1, WIN)
            seg = e[b - n : b]
            xs.append(_norm(np.stack([np.interp(src, np.arange(n), c) for c in seg.T], 1)))
            ys.append(paced * f)
    return xs, ys


def decode(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top = p.argmax(axis=1)
    near = np.abs(np.arange(len(GRID))[None, :] - top[:, None]) <= 3
    w = p * near
    return (w * GRID).sum(axis=1) / w.sum(axis=1), p.max(axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "audio_rr_cnn.json"))
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    files = rrujo_files()
    if not files:
        print("no RRuJO data", file=sys.stderr)
        return 2
    feats = {f.path: band_features(f.path) for f in files}
    subjects = sorted({f.subject for f in files})
    perm = [subjects[i] for i in np.random.default_rng(args.seed).permutation(len(subjects))]
    folds = [set(perm[i :: args.folds]) for i in range(args.folds)]
    rng = np.random.default_rng(args.seed)
    res = []  # device, fs, paced, estimate, quality
    for k, test in enumerate(folds):
        xs: list[np.ndarray] = []
        ys: list[float] = []
        for f in files:
            if f.subject not in test:
                a, b = windows(feats[f.path], f.paced_bpm, rng)
                xs += a
                ys += b
        tf.keras.utils.set_random_seed(args.seed * 100 + k)
        inp = tf.keras.Input((WIN, 8))
        x = inp
        for ch, ks in ((16, 7), (32, 7), (32, 5), (32, 5)):
            x = tf.keras.layers.Conv1D(ch, ks, padding="same", activation="relu")(x)
            x = tf.keras.layers.MaxPool1D(2)(x)
        x = tf.keras.layers.GlobalAveragePooling1D()(x)
        x = tf.keras.layers.Dense(64, activation="relu")(x)
        model = tf.keras.Model(inp, tf.keras.layers.Dense(len(GRID))(x))
        model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        labels = np.abs(GRID[None, :] - np.array(ys)[:, None]).argmin(axis=1)
        model.fit(np.array(xs, np.float32), labels, epochs=args.epochs, batch_size=64, verbose=0)
        for f in files:
            if f.subject in test:
                a, _ = windows(feats[f.path], f.paced_bpm, None)
                est, q = decode(model.predict(np.array(a, np.float32), verbose=0))
                res += [
                    (f.device, f.fs_hz, f.paced_bpm, float(e), float(p))
                    for e, p in zip(est, q, strict=True)
                ]
        print(f"fold {k + 1}/{args.folds}: {len(xs)} training windows", file=sys.stderr)
    err = np.array([abs(r[3] - r[2]) for r in res])
    qual = np.array([r[4] for r in res])

    def at(cov: float, sel: np.ndarray | None = None) -> dict[str, float]:
        t = float(np.quantile(qual, 1 - cov))
        ok = (qual >= t) & (sel if sel is not None else True)
        return {"threshold": round(t, 3), "mae_bpm": round(float(err[ok].mean()), 2)}

    dsp = Path(__file__).parent / "results" / "audio_rr.json"
    dsp_cov = json.loads(dsp.read_text())["overall"]["coverage"] if dsp.exists() else 0.9
    out = {
        "what": "1-D CNN on BreathBands features, subject-level CV (not shipped)",
        "folds": args.folds,
        "seed": args.seed,
        "epochs": args.epochs,
        "windows_scored": len(res),
        "all_windows": {"coverage": 1.0, "mae_bpm": round(float(err.mean()), 2)},
        "at_dsp_coverage": {"coverage": dsp_cov, **at(dsp_cov)},
        "per_device_all_windows": {
            d: round(float(err[np.array([r[0] == d for r in res])].mean()), 2)
            for d in sorted({r[0] for r in res})
        },
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
