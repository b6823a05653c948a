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

from device.dsp.kernels import kernel


def local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of strict local maxima; a flat top counts once, at its middle (rounded down)."""
    x = np.asarray(x, dtype=np.float64)
    compiled = kernel("local_maxima") if len(x) >= 3 else None
    if compiled is not None:
        return np.asarray(compiled(np.ascontiguousarray(x))[0], dtype=np.intp)
    return local_maxima_reference(x)


def local_maxima_reference(x: np.ndarray) -> np.ndarray:
    """``local_maxima`` with numpy (the definition the compiled kernel must match)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 3:
        return np.zeros(0, dtype=np.intp)
    d = x[1:] - x[:-1]
    # compress runs of equal values: a peak is a rise followed (after any plateau) by a fall
    nz = np.flatnonzero(d != 0)
    if len(nz) < 2:
        return np.zeros(0, dtype=np.intp)
    rising = d[nz] > 0
    starts = nz[:-1][rising[:-1] & ~rising[1:]] + 1  # first sample of the top
    ends = nz[1:][rising[:-1] & ~rising[1:]]  # last sample of the top
    out: np.ndarray = ((starts + ends) // 2).astype(np.intp)
    return out


def _thin_by_distance(peaks: np.ndarray, values: np.ndarray, distance: float) -> np.ndarray:
    # plain Python lists: a few dozen peaks, where numpy's per-element indexing costs more
    keep = [True] * len(peaks)
    pos = peaks.tolist()
    order = np.argsort(-values, kind="stable").tolist()  # highest first; ties: earlier first
    for j in order:
        if not keep[j]:
            continue
        p = pos[j]
        k = j - 1
        while k >= 0 and p - pos[k] < distance:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < len(pos) and pos[k] - p < distance:
            keep[k] = False
            k += 1
    return np.asarray(keep, dtype=bool)


def prominences(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Prominence of each peak (see module docstring)."""
    return prominences_reference(x, peaks)


def prominences_reference(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Prominence of each peak, all peaks at once with numpy: for each, the nearest higher
    sample on either side bounds the stretch whose minimum is taken. (``find_peaks`` uses
    the compiled kernel instead where it agrees with this bit for bit: ``dsp.kernels``.)"""
    x = np.asarray(x, dtype=np.float64)
    peaks = np.asarray(peaks, dtype=np.intp)
    if len(peaks) == 0:
        return np.empty(0)
    n = len(x)
    v = x[peaks]
    idx = np.arange(n)
    higher = x[None, :] > v[:, None]  # (peaks, samples)
    before = idx[None, :] < peaks[:, None]
    # the nearest higher sample before the peak (-1: none) and after it (n: none)
    hb = higher & before
    left = np.where(hb.any(axis=1), n - 1 - np.argmax(hb[:, ::-1], axis=1), -1)
    ha = higher & ~before
    right = np.where(ha.any(axis=1), np.argmax(ha, axis=1), n)
    inside = (idx[None, :] > left[:, None]) & (idx[None, :] < right[:, None])
    lows = np.where(inside & before, x[None, :], np.inf).min(axis=1)
    lows_r = np.where(inside & (idx[None, :] > peaks[:, None]), x[None, :], np.inf).min(axis=1)
    left_min = np.minimum(lows, v)
    right_min = np.minimum(lows_r, v)
    return np.asarray(v - np.maximum(left_min, right_min), dtype=np.float64)


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
        compiled = kernel("prominences") if len(peaks) else None
        if compiled is not None:
            # local maxima only, so no prominence is 0 (the kernel warns about those)
            prom = compiled(np.ascontiguousarray(x), peaks.astype(np.intp), np.intp(-1))[0]
        else:
            prom = prominences_reference(x, peaks)
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


def parabolic_offset(y_prev: float, y0: float, y_next: float) -> float:
    """``parabolic_peak_offset`` of one peak, in plain floats (the same arithmetic)."""
    den = y_prev - 2.0 * y0 + y_next
    off = 0.5 * (y_prev - y_next) / den if abs(den) > 1e-12 else 0.0
    return min(max(off, -0.5), 0.5)
