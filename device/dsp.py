"""Causal, stateful signal processing shared by the device and by training (``convert``).

Everything here is streaming: state carries across calls, so feeding a signal in chunks of
1, 7 or 1000 samples gives bit-identical output. Nothing looks into the future
(no ``filtfilt``): what training sees is exactly what the ward's daemon computes.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from device.iir import butter_sos, sos_filter, sos_steady_state

#: Internal rates the estimators and models work at. Vital-sign channels arriving at any rate
#: from 50 to 1000 Hz are resampled to these.
#: 125 Hz keeps the QRS complex (energy up to ~40 Hz) and systolic upstrokes sharp enough for
#: beat timing to a few ms with peak interpolation.
CARDIAC_FS_HZ = 125.0
#: Breathing lives below 1 Hz (60 breaths/min); 25 Hz is plenty and keeps 32 s windows small.
RESP_FS_HZ = 25.0

INTERNAL_FS_HZ: dict[str, float] = {"ecg": CARDIAC_FS_HZ, "ppg": CARDIAC_FS_HZ, "resp": RESP_FS_HZ}


class CausalFilter:
    """An IIR filter in second-order sections with carried state (``sosfilt`` with ``zi``).

    The state starts at the steady state for the first finite sample, so a DC offset does not
    ring through the filter at start-up.
    """

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        self._zi_unit = sos_steady_state(self.sos)
        self._zi: np.ndarray | None = None

    @classmethod
    def butter(
        cls, order: int, cutoff_hz: float | tuple[float, float], fs_hz: float, btype: str
    ) -> CausalFilter:
        return cls(butter_sos(order, cutoff_hz, fs_hz, btype))

    def reset(self) -> None:
        self._zi = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return x.copy()
        if self._zi is None:
            self._zi = self._zi_unit * x[0]
        y, self._zi = sos_filter(self.sos, x, self._zi)
        return y


class HoldGaps:
    """Replaces NaN samples by the last finite value (so filters are not poisoned) and
    reports which samples were gaps. Before the first finite sample, gaps read as 0."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        bad = ~np.isfinite(x)
        if not bad.any():
            if x.size:
                self.last = float(x[-1])
            return x, bad
        y = x.copy()
        # forward-fill: index of the last finite sample at or before each position
        idx = np.where(~bad, np.arange(len(x)), -1)
        np.maximum.accumulate(idx, out=idx)
        y[idx >= 0] = x[idx[idx >= 0]]
        y[idx < 0] = self.last
        self.last = float(y[-1])
        return y, bad


class Resampler:
    """Streaming resampler from ``fs_in`` to ``fs_out`` (any ratio), causal.

    A causal Butterworth low-pass at 0.4 x the lower rate removes what the output rate cannot
    carry (when downsampling), then output sample k is linearly interpolated at input position
    k * fs_in / fs_out. Positions are exact rationals, so the output does not depend on how
    the input is chunked. Linear interpolation of a signal band-limited well below Nyquist
    costs < 1 % amplitude at 40 Hz for a 125 Hz output: beat and breath timing are unaffected.
    """

    def __init__(self, fs_in: float, fs_out: float) -> None:
        self.fs_in, self.fs_out = float(fs_in), float(fs_out)
        self.ratio = Fraction(self.fs_in).limit_denominator(10000) / Fraction(
            self.fs_out
        ).limit_denominator(10000)
        self.identity = self.ratio == 1
        self._aa = (
            CausalFilter.butter(6, 0.4 * self.fs_out, self.fs_in, "lowpass")
            if self.fs_out < self.fs_in
            else None
        )
        self._n_in = 0  # input samples consumed so far
        self._k = 0  # next output index
        self._prev = np.zeros(0)  # the last input sample, needed to interpolate across chunks

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            return x.copy()
        if self._aa is not None:
            x = self._aa(x)
        buf = np.concatenate((self._prev, x))
        base = self._n_in - len(self._prev)  # absolute input index of buf[0]
        self._n_in += len(x)
        p, q = self.ratio.numerator, self.ratio.denominator
        # outputs k need input floor(k*p/q) and the next one: floor(k*p/q) + 1 <= n_in - 1
        k_max = (
            ((self._n_in - 1) * q - 1) // p if self._n_in >= 2 else -1
        )  # largest k with k*p/q < n_in-1
        if k_max < self._k:
            self._prev = buf[-1:] if len(buf) else self._prev
            return np.zeros(0)
        k = np.arange(self._k, k_max + 1, dtype=np.int64)
        num = k * p
        i = num // q
        frac = (num - i * q).astype(np.float64) / q
        j = i - base
        y = buf[j] * (1.0 - frac) + buf[j + 1] * frac
        self._k = k_max + 1
        self._prev = buf[-1:]
        return y


class RingBuffer:
    """Fixed-capacity float buffer of the most recent samples, with a running total count."""

    def __init__(self, capacity: int, fill: float = 0.0) -> None:
        self.capacity = int(capacity)
        self._data = np.full(self.capacity, fill, dtype=np.float64)
        self._pos = 0  # next write index
        self.total = 0  # samples ever written

    def extend(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        if n == 0:
            return
        if n >= self.capacity:
            self._data[:] = x[-self.capacity :]
            self._pos = 0
        else:
            end = self._pos + n
            if end <= self.capacity:
                self._data[self._pos : end] = x
            else:
                k = self.capacity - self._pos
                self._data[self._pos :] = x[:k]
                self._data[: n - k] = x[k:]
            self._pos = end % self.capacity
        self.total += n

    def latest(self, n: int | None = None) -> np.ndarray:
        """The last ``n`` samples (fewer if fewer were written), oldest first, as a copy."""
        avail = min(self.total, self.capacity)
        n = avail if n is None else min(n, avail)
        if n <= 0:
            return np.zeros(0)
        start = (self._pos - n) % self.capacity
        if start + n <= self.capacity:
            return self._data[start : start + n].copy()
        return np.concatenate((self._data[start:], self._data[: (start + n) - self.capacity]))


def robust_range(x: np.ndarray) -> float:
    """Spread of a window that ignores a few outliers (5th to 95th percentile)."""
    if len(x) == 0:
        return 0.0
    lo, hi = np.percentile(x, [5, 95])
    return float(hi - lo)


def parabolic_peak_offset(y_prev: np.ndarray, y0: np.ndarray, y_next: np.ndarray) -> np.ndarray:
    """Sub-sample offset (in samples, within +-0.5) of a peak from its three neighbours."""
    den = y_prev - 2.0 * y0 + y_next
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(np.abs(den) > 1e-12, 0.5 * (y_prev - y_next) / den, 0.0)
    return np.clip(off, -0.5, 0.5)
