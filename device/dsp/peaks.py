"""Peak finding with numpy alone: local maxima filtered by height, distance and prominence.

The same rules as ``scipy.signal.find_peaks`` for those three criteria (the device does not
import ``scipy.signal``: see ``device/dsp/filters.py`` for why); ``tests/test_signal.py``
checks that both return the same peaks on real signals.

- a peak is a sample, or the middle of a flat top, higher than its neighbours on both sides;
- ``height``: the peak's value is at least this;
- ``distance``: peaks closer than this many samples are thinned, keeping the highest first;
- ``prominence``: how far the peak rises above the higher of the two lowest points reached
  on either side before meeting a higher sample (or the window's edge).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of strict local maxima; a flat top counts once, at its middle (rounded down)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 3:
        return np.zeros(0, dtype=np.intp)
    d = np.diff(x)
    # compress runs of equal values: a peak is a rise followed (after any plateau) by a fall
    nz = np.flatnonzero(d != 0)
    if len(nz) < 2:
        return np.zeros(0, dtype=np.intp)
    rising = d[nz] > 0
    starts = nz[:-1][rising[:-1] & ~rising[1:]] + 1  # first sample of the top
    ends = nz[1:][rising[:-1] & ~rising[1:]]  # last sample of the top
    return ((starts + ends) // 2).astype(np.intp)


def _thin_by_distance(peaks: np.ndarray, values: np.ndarray, distance: float) -> np.ndarray:
    keep = np.ones(len(peaks), dtype=bool)
    order = np.argsort(-values, kind="stable")  # highest first; ties: earlier peak first
    for j in order:
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and peaks[j] - peaks[k] < distance:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < len(peaks) and peaks[k] - peaks[j] < distance:
            keep[k] = False
            k += 1
    return keep


def prominences(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Prominence of each peak (see module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(len(peaks))
    for i, pk in enumerate(peaks):
        v = x[pk]
        left = x[:pk][::-1]
        higher = np.flatnonzero(left > v)
        left_min = float(np.min(left[: higher[0]] if len(higher) else left, initial=v))
        right = x[pk + 1 :]
        higher = np.flatnonzero(right > v)
        right_min = float(np.min(right[: higher[0]] if len(higher) else right, initial=v))
        out[i] = v - max(left_min, right_min)
    return out


def find_peaks(
    x: np.ndarray,
    height: float | None = None,
    distance: float | None = None,
    prominence: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Peaks of ``x`` (indices) and their properties (``peak_heights``, ``prominences``)."""
    x = np.asarray(x, dtype=np.float64)
    peaks = local_maxima(x)
    props: dict[str, Any] = {}
    if height is not None:
        keep = x[peaks] >= height
        peaks = peaks[keep]
        props["peak_heights"] = x[peaks]
    if distance is not None and len(peaks) > 1:
        if distance < 1:
            raise ValueError("distance must be >= 1 sample")
        keep = _thin_by_distance(peaks, x[peaks], distance)
        peaks = peaks[keep]
        props = {k: v[keep] for k, v in props.items()}
    if prominence is not None:
        prom = prominences(x, peaks)
        keep = prom >= prominence
        peaks = peaks[keep]
        props = {k: v[keep] for k, v in props.items()}
        props["prominences"] = prom[keep]
    return peaks, props


def parabolic_peak_offset(y_prev: np.ndarray, y0: np.ndarray, y_next: np.ndarray) -> np.ndarray:
    """Sub-sample offset (in samples, within +-0.5) of a peak from its three neighbours."""
    den = y_prev - 2.0 * y0 + y_next
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(np.abs(den) > 1e-12, 0.5 * (y_prev - y_next) / den, 0.0)
    return np.clip(off, -0.5, 0.5)
