"""Recordings made from real ones, to test alarms on known events.

Each function returns new role signals (dict role -> samples at ``fs_hz``) built only from real
samples, plus the signal time at which the event starts:

- ``hr_step``: a real segment followed by a later segment of the same record played faster, so
  the heart rate steps (e.g. 80 -> 130 bpm) while waveform shapes stay real. Impedance is
  not time-scaled (breathing does not speed up with the heart).
- ``apnea``: breathing removed from the impedance channel for a span: what remains is the real
  cardiogenic oscillation and noise above ``keep_above_hz``, as impedance shows in an apnea.
- ``flat``: a channel held at its last value (a sensor that came off and reads a constant).
- ``dropout``: a channel's samples missing (NaN) for a span (a port that stopped delivering).

These are offline constructions (zero-phase filtering is fine here: it builds the input, it
is not part of the monitor).
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def time_scale(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (factor > 1 shortens it and raises its rates)."""
    n_out = int(round(len(x) / factor))
    pos = np.arange(n_out) * factor
    return np.asarray(np.interp(pos, np.arange(len(x)), x))


def hr_step(
    signals: dict[str, np.ndarray],
    fs_hz: float,
    *,
    before_s: float,
    after_s: float,
    factor: float,
    start_s: float = 0.0,
) -> tuple[dict[str, np.ndarray], float]:
    """``before_s`` of real signal, then ``after_s`` of the following signal ``factor`` x
    faster for the cardiac roles (ecg, ppg); other roles continue unscaled.

    Returns (signals, step time)."""
    a = int(round(start_s * fs_hz))
    n_before = int(round(before_s * fs_hz))
    n_after = int(round(after_s * fs_hz))
    out = {}
    for role, x in signals.items():
        head = x[a : a + n_before]
        if role in ("ecg", "ppg"):
            src = x[a + n_before : a + n_before + int(np.ceil(n_after * factor)) + 1]
            tail = time_scale(src, factor)[:n_after]
        else:
            tail = x[a + n_before : a + n_before + n_after]
        if len(tail) < n_after:
            raise ValueError(f"record too short for a {after_s} s step at x{factor:.2f} ({role})")
        out[role] = np.concatenate((head, tail))
    return out, before_s


def apnea(
    signals: dict[str, np.ndarray],
    fs_hz: float,
    *,
    start_s: float,
    duration_s: float,
    keep_above_hz: float = 0.9,
) -> tuple[dict[str, np.ndarray], float]:
    """Remove breathing from the ``resp`` channel between start and start + duration."""
    out = {r: x.copy() for r, x in signals.items()}
    x = out["resp"]
    a, b = int(round(start_s * fs_hz)), int(round((start_s + duration_s) * fs_hz))
    sos = signal.butter(4, keep_above_hz, "highpass", fs=fs_hz, output="sos")
    cardiac = signal.sosfiltfilt(sos, x)
    # hold the level the chest was at when breathing stopped, plus the real small oscillation
    level = float(np.median(x[max(0, a - int(fs_hz)) : a]))
    x[a:b] = level + cardiac[a:b]
    return out, start_s


def flat(
    signals: dict[str, np.ndarray], fs_hz: float, *, role: str, start_s: float
) -> tuple[dict[str, np.ndarray], float]:
    """Hold ``role`` at its value at ``start_s`` from then on (a sensor that came off)."""
    out = {r: x.copy() for r, x in signals.items()}
    a = int(round(start_s * fs_hz))
    out[role][a:] = out[role][a - 1]
    return out, start_s


def dropout(
    signals: dict[str, np.ndarray], fs_hz: float, *, role: str, start_s: float, duration_s: float
) -> tuple[dict[str, np.ndarray], float]:
    """Make ``role`` missing (NaN) for a span (no samples delivered)."""
    out = {r: x.copy() for r, x in signals.items()}
    a, b = int(round(start_s * fs_hz)), int(round((start_s + duration_s) * fs_hz))
    out[role][a:b] = np.nan
    return out, start_s
