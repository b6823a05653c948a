"""Training data: per-second windows of BIDMC records with their reference values.

Windows come from ``device.features`` fed through the pipeline's own resampler
(``device.pipeline.RoleStream``): the exact samples the device's model estimator sees.
References are those of ``lab.reference`` (monitor ECG HR, annotated breaths).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import UserError
from device.features import FeatureSpec, model_input, record_windows
from device.pipeline import RoleStream
from device.recording import read_csv
from lab.reference import load_bidmc_reference

#: Scores start at 32 s: the RR reference needs 32 s of breaths (as in bench/accuracy.py).
SKIP_S = 32


@dataclass
class Subject:
    """One record's windows, references and the raw feature series (for augmentation)."""

    name: str
    seconds: np.ndarray
    windows: np.ndarray
    usable: np.ndarray
    target: np.ndarray  # reference at each window's second (NaN = none)
    series: np.ndarray  # un-normalised feature series (n, channels) at the model's rate
    dsp: np.ndarray | None = None  # the signal-processing estimator's answer per window second


def record_files(data: Path, records: list[str] | None = None) -> list[Path]:
    """BIDMC ``*_Signals.csv[.gz]`` files under ``data`` (optionally only some record numbers)."""
    if not data.is_dir():
        raise UserError(
            f"{data}: no such data directory", "give --data DIR holding bidmc_NN_Signals.csv(.gz)"
        )
    files = sorted(
        p for p in data.glob("bidmc_*_Signals.csv*") if p.name.endswith((".csv", ".csv.gz"))
    )
    if records:
        want = {f"bidmc_{int(r):02d}" for r in records}
        files = [f for f in files if subject_name(f) in want]
    if not files:
        raise UserError(
            f"{data}: no BIDMC records (bidmc_NN_Signals.csv[.gz]) found",
            "point --data at bidmc_csv/",
        )
    return files


def subject_name(path: Path) -> str:
    return path.name.split("_Signals")[0]


def load_subject(path: Path, spec: FeatureSpec, quantity: str) -> Subject:
    rec = read_csv(path)
    if spec.role not in rec.roles:
        raise UserError(
            f"{path}: has no {spec.role} channel", f"train on records that have {spec.role}"
        )
    ref = load_bidmc_reference(path, rec.fs_hz, rec.duration_s)
    x = RoleStream(spec.role, rec.fs_hz, spec.input_fs_hz)(rec.role(spec.role))
    rw = record_windows(spec, x)
    ref_series = ref.hr_bpm if quantity == "hr" else ref.rr_bpm
    target = np.array([ref_series[s] if s < len(ref_series) else np.nan for s in rw.seconds])
    return Subject(
        subject_name(path),
        rw.seconds,
        rw.windows,
        rw.usable,
        target,
        rw.filtered,
        dsp_baseline(rec.role(spec.role), rec.fs_hz, spec.role, quantity, rw.seconds),
    )


def dsp_baseline(
    x: np.ndarray, fs_hz: float, role: str, quantity: str, seconds: np.ndarray
) -> np.ndarray | None:
    """What the device's signal-processing estimator for (quantity, role) answers at each
    second: the registry's entry, fallbacks included (``device.estimators.registry``), run
    through the same pipeline; the baseline a model must beat. None when there is none."""
    from device.estimators.registry import signal_estimator
    from device.pipeline import run_recording
    from device.roles import EstimateKey, Quantity, Role

    est = signal_estimator(EstimateKey(Quantity(quantity), Role(role)))
    if est is None:
        return None
    vitals = run_recording({role: x}, fs_hz, estimators=[est])
    by_s = {int(v.t_s): (v.hr_bpm if quantity == "hr" else v.rr_bpm) for v in vitals}
    return np.array(
        [np.nan if by_s.get(int(k)) is None else by_s[int(k)] for k in seconds], dtype=np.float64
    )


def time_scaled(
    subj: Subject,
    spec: FeatureSpec,
    rng: np.random.Generator,
    lo: float,
    hi: float,
    hop: int,
    jitter: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented windows: real windows played faster or slower, with the rate scaled alike.

    A segment of ``n x f`` samples resampled to ``n`` samples is the same physiology at ``f``
    times the rate: this is how the models see heart rates up to 180 bpm (children) and
    breathing rates the adult records lack. Half the copies are jittered by +-``jitter``,
    half drawn so the new rate is uniform in [lo, hi].
    """
    n = spec.n_samples
    xs: list[np.ndarray] = []
    ys: list[float] = []
    for i in range(0, len(subj.seconds), hop):
        y = subj.target[i]
        if not (np.isfinite(y) and subj.usable[i]):
            continue
        jittered = rng.random() < 0.5
        f = 1.0 + rng.uniform(-jitter, jitter) if jittered else rng.uniform(lo, hi) / y
        f = float(np.clip(f, 0.5, 2.2))
        end = int(round(subj.seconds[i] * spec.fs_hz))
        length = int(round(n * f))
        if end - length < 0 or end > len(subj.series):
            continue
        seg = subj.series[end - length : end]
        src = np.linspace(0.0, length - 1, n)
        w = np.stack(
            [np.interp(src, np.arange(length), seg[:, c]) for c in range(seg.shape[1])], axis=1
        )
        xs.append(model_input(w, spec))
        ys.append(y * f)
    if not xs:
        return np.zeros((0, *spec.shape), np.float32), np.zeros(0)
    return np.stack(xs), np.asarray(ys)
