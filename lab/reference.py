"""Reference vitals for BIDMC records: what estimates are scored against.

- HR: the bedside monitor's ECG-derived heart rate, ``HR`` in ``_Numerics.csv`` (1 Hz).
- RR: from the two annotators' breath marks in ``_Breaths.csv``: at each second, each
  annotator's rate over the 32 s ending then is (breaths - 1) x 60 / (last - first breath
  time); the reference is the mean of the two (or the one annotator who has >= 3 breaths
  there).

Breath marks are sample numbers. Whether they count from 0 or 1 is not stated by the dataset,
and the RESP waveform cannot tell: checked on the 42 shared records (11,450 marks), the marks
are hand-placed near the end-inspiration peak, not snapped to a sample: their offset from the
peak of the 1 Hz low-passed RESP signal has quartiles -4, +3, +10 samples (mean +2.7) when
read 0-based, and a mark falls exactly on a local maximum of the raw signal no more often at
offset 0 than at -1 or +1 (about 1 % each). So they are read as they are, 0-based (sample n
is at n / fs s, like ``Time [s]`` of the signals). One sample (8 ms) either way cannot change
a rate: a constant offset cancels in (n - 1) x 60 / (last - first).

Record 13 (the data README says it has many missing breath annotations): both annotators
mark a steady ~20 breaths/min (160 and 165 marks, median interval 3.0 and 2.8 s, no gap over
8 s), while the impedance shows smaller peaks between many marks that an estimator may count
as breaths. Whether those are shallow breaths the annotators skipped or cardiac oscillation
cannot be settled from the waveform; its reference is used as given, and its RR error should
be read with that in mind, not tuned away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.recording import open_text

RR_REFERENCE_WINDOW_S = 32.0


@dataclass(frozen=True)
class Reference:
    """Per-second reference values: ``hr_bpm[k]`` and ``rr_bpm[k]`` belong to t = k s
    (NaN = none)."""

    record: str
    hr_bpm: np.ndarray
    rr_bpm: np.ndarray
    breaths_s: tuple[np.ndarray, ...]


def bidmc_paths(signals_path: str | Path) -> tuple[Path, Path]:
    """``X_Signals.csv[.gz]`` (or an excerpt ``X.csv[.gz]``) -> its ``_Numerics``, ``_Breaths``."""
    p = Path(signals_path)
    stem = re.sub(r"(_Signals)?\.csv(\.gz)?$", "", p.name)
    suffix = ".csv.gz" if p.name.endswith(".gz") else ".csv"
    return p.with_name(f"{stem}_Numerics{suffix}"), p.with_name(f"{stem}_Breaths{suffix}")


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """A PhysioNet CSV table (``_Numerics``, ``_Breaths``): column names, and the values as
    floats (empty cells NaN)."""
    lines = [ln for ln in open_text(path).splitlines() if ln.strip()]
    names = [n.strip() for n in lines[0].split(",")]
    rows = [[s.strip() or "nan" for s in ln.split(",")] for ln in lines[1:]]
    rows = [r + ["nan"] * (len(names) - len(r)) for r in rows]
    return names, np.array(rows, dtype=np.float64)


def rate_over_window(events_s: np.ndarray, t_s: float, window_s: float) -> float:
    """(n - 1) x 60 / span of the events in (t - window, t]; NaN with fewer than 3 events."""
    e = events_s[(events_s > t_s - window_s) & (events_s <= t_s)]
    if len(e) < 3 or e[-1] <= e[0]:
        return float("nan")
    return 60.0 * (len(e) - 1) / float(e[-1] - e[0])


def per_second(values: np.ndarray, times_s: np.ndarray, n: int) -> np.ndarray:
    """``n`` per-second values (NaN where none) from values stamped at ``times_s``."""
    out = np.full(n, np.nan)
    idx = times_s.astype(int)
    keep = (idx >= 0) & (idx < n)
    out[idx[keep]] = values[keep]
    return out


def rate_series(events_s: np.ndarray, n: int) -> np.ndarray:
    """One annotator's rate at t = 0 .. n-1 s (``rate_over_window`` over the reference
    window)."""
    return np.array([rate_over_window(events_s, float(k), RR_REFERENCE_WINDOW_S) for k in range(n)])


def load_bidmc_reference(
    signals_path: str | Path, fs_hz: float = 125.0, duration_s: float | None = None
) -> Reference:
    numerics, breaths = bidmc_paths(signals_path)
    names, num = read_table(numerics)
    t = num[:, names.index("Time [s]")]
    n = int(duration_s) + 1 if duration_s is not None else int(np.nanmax(t)) + 1
    hr = per_second(num[:, names.index("HR")], t, n)

    bnames, b = read_table(breaths)
    anns = []
    for j in range(len(bnames)):
        col = b[:, j]
        col = col[np.isfinite(col)]
        anns.append(np.sort(col / fs_hz))  # sample numbers (0-based, see above) -> seconds
    # the mean of the annotators that have a rate at each second
    rates = np.array([rate_series(a, n) for a in anns]).reshape(len(anns), n)
    has = np.isfinite(rates)
    count = has.sum(axis=0)
    total = np.where(has, rates, 0.0).sum(axis=0)
    rr = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return Reference(Path(signals_path).name.split("_Signals")[0], hr, rr, tuple(anns))


def score(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Error of per-second estimates against a per-second reference (NaN = none).

    MAE, RMSE and bias over the seconds that have both; coverage is the share of seconds with
    a reference that also have an estimate. The one scoring rule of bench/accuracy.py,
    ``bedside train`` (cross-validation) and ``bedside eval``.
    """
    n = min(len(est), len(ref))
    est, ref = np.asarray(est[:n], dtype=float), np.asarray(ref[:n], dtype=float)
    has_ref = np.isfinite(ref)
    both = has_ref & np.isfinite(est)
    err = est[both] - ref[both]
    return {
        "mae": float(np.abs(err).mean()) if both.any() else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if both.any() else float("nan"),
        "bias": float(err.mean()) if both.any() else float("nan"),
        "coverage": float(both.sum() / max(1, has_ref.sum())),
        "n": int(both.sum()),
    }


def summarise(per_subject: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean, median and worst of per-subject ``score`` results, and their coverage: how
    ``bedside train``, ``bedside eval`` and bench/blend.py report a set of subjects."""
    rows = list(per_subject)
    maes = np.array([r["mae"] for r in rows])
    covs = np.array([r["coverage"] for r in rows])
    return {
        "mean_mae": float(np.nanmean(maes)),
        "median_mae": float(np.nanmedian(maes)),
        "worst_mae": float(np.nanmax(maes)),
        "mean_coverage": float(covs.mean()),
        "min_coverage": float(covs.min()),
        "subjects": len(rows),
    }
