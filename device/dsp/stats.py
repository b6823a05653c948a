"""Order statistics of one window, bit for bit what ``np.median`` and ``np.percentile`` give.

The estimators ask for a median or a 5th/95th percentile of a short window several times a
second. ``np.median`` and ``np.percentile`` spend most of their time in generic Python
dispatch (axes, ``out=``, weights, methods): about 40-60 us a call against 5-10 us for the
arithmetic itself. These take the same order statistics (a partial sort) and apply numpy's own
formulas (the mean of the two middle values; the ``linear`` method's virtual index and its
two-sided interpolation), so the results are identical to numpy's, which
``tests/test_dsp_stats.py`` checks bit for bit, ties, signed zeros and NaN included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def median(x: np.ndarray | Sequence[float]) -> float:
    """``float(np.median(x))`` of a 1-D window (NaN if it holds a NaN)."""
    a = np.asarray(x, dtype=np.float64)
    n = a.size
    if n == 0:
        return math.nan  # numpy warns and returns nan
    if n <= 2:
        if n == 1:
            return 0.0 + float(a[0])
        return _mean2(float(a[0]), float(a[1]))
    h = n // 2
    if n % 2:
        part = np.partition(a, (h, n - 1))
        if math.isnan(part[n - 1]):
            return math.nan
        return 0.0 + float(part[h])  # numpy's mean of one value: summed from +0.0
    part = np.partition(a, (h - 1, h, n - 1))
    if math.isnan(part[n - 1]):
        return math.nan
    return _mean2(float(part[h - 1]), float(part[h]))


def median_columns(x: np.ndarray) -> np.ndarray:
    """``np.median(x, axis=0)`` of a 2-D array (one median per column)."""
    a = np.asarray(x, dtype=np.float64)
    n = a.shape[0]
    if n == 0 or a.ndim != 2:
        return np.asarray(np.median(a, axis=0), dtype=np.float64)
    h = n // 2
    kth = (h, n - 1) if n % 2 else (h - 1, h, n - 1)
    part = np.partition(a, kth, axis=0)
    if np.isnan(part[n - 1]).any():
        return np.asarray(np.median(a, axis=0), dtype=np.float64)
    if n % 2:
        return np.asarray(0.0 + part[h], dtype=np.float64)
    return np.asarray(((0.0 + part[h - 1]) + part[h]) / 2.0, dtype=np.float64)


def _mean2(a: float, b: float) -> float:
    """numpy's mean of two values: their sum (a reduction that starts from +0.0) over 2."""
    return ((0.0 + a) + b) / 2.0


def percentiles(x: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(x, qs)`` (method ``linear``) of a 1-D window, as floats."""
    a = np.asarray(x, dtype=np.float64)
    n = a.size
    if n == 0:
        raise ValueError("percentiles of an empty window")
    virtual = [(n - 1) * (q / 100.0) for q in qs]
    # numpy's indices: the floor of the virtual index and the next one, or the last sample
    # (index -1, also in the interpolation weight) at and above the top
    lo = [-1 if v >= n - 1 else math.floor(v) for v in virtual]
    # numpy's partition points exactly (the first and the last sample besides the
    # neighbours): equal values of either sign (0.0, -0.0) land where numpy's land only with
    # the same points. The largest also tells a NaN (NaNs sort last; numpy answers NaN).
    kth = {0, n - 1}
    for i in lo:
        if i >= 0:
            kth.update((i, i + 1))
    part = np.partition(a, sorted(kth))
    if math.isnan(part[n - 1]):
        return [math.nan] * len(qs)
    out = []
    for v, i in zip(virtual, lo, strict=True):
        below = float(part[i])
        above = float(part[i + 1]) if i >= 0 else below
        t = v - i
        diff = above - below
        # numpy's _lerp: from the lower value, or from the upper one when t >= 0.5
        out.append(above - diff * (1.0 - t) if t >= 0.5 else below + diff * t)
    return out


def mean(xs: Sequence[float]) -> float:
    """``float(np.mean(xs))`` of a few values: numpy sums fewer than 8 values one after the
    other from 0.0 (longer arrays pairwise, which numpy itself then does)."""
    n = len(xs)
    if n == 0 or n >= 8:
        return float(np.mean(np.asarray(xs, dtype=np.float64)))
    total = 0.0
    for v in xs:
        total += v
    return total / n


def std(xs: Sequence[float]) -> float:
    """``float(np.std(xs))`` of a few values (the same steps: mean, squared deviations, their
    mean, square root)."""
    n = len(xs)
    if n == 0 or n >= 8:
        return float(np.std(np.asarray(xs, dtype=np.float64)))
    m = mean(xs)
    total = 0.0
    for v in xs:
        d = v - m
        total += d * d
    return math.sqrt(total / n)


def lag_products(x: np.ndarray, n_lags: int) -> np.ndarray:
    """Autocorrelation of ``x`` along its first axis at lags 0..n_lags-1, each lag's sum of
    products divided by its overlap (``n - lag``: unbiased), by FFT; not normalised, so each
    caller scales it as it needs (to 1 at lag 0, ...)."""
    n = x.shape[0]
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, nfft, axis=0)
    r = np.fft.irfft(f * np.conj(f), nfft, axis=0)[:n_lags]
    r /= (n - np.arange(n_lags)).reshape((-1,) + (1,) * (r.ndim - 1))
    return r
