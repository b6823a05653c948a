"""The recent conditioned samples of one ECG lead, addressed by absolute sample index.

The beat classifier needs each beat's surroundings (a fraction of a second before and after
its R peak) some time after the samples arrived: beats are reported after the detector's
confirmation delay, and a class may wait for the next beat. ``LeadTrace`` keeps what may
still be asked for and forgets the rest; it grows when one push brings more than it holds
(a recording fed in large chunks), so no chunking loses samples a later beat needs.
"""

from __future__ import annotations

import numpy as np

from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps

#: ECG for morphology: 0.5 Hz high-pass removes baseline wander (breathing, motion) and keeps
#: the ST-T shape; 40 Hz low-pass keeps the QRS (its energy lies below ~40 Hz) and drops
#: muscle and mains noise. Second order each, causal.
BAND_HZ = (0.5, 40.0)


class LeadTrace:
    """Gap-held, band-passed samples of one lead and their gap mask, by absolute index."""

    def __init__(self, fs_hz: float, keep_s: float) -> None:
        self.fs_hz = float(fs_hz)
        self.keep = int(round(keep_s * fs_hz))
        self._hold = HoldGaps()
        self._filt = CausalFilter.butter(2, BAND_HZ, fs_hz, "bandpass")
        cap = max(64, 2 * self.keep)
        self._x = np.zeros(cap)
        self._gap = np.zeros(cap, dtype=bool)
        self._start = 0  # absolute index of self._x[0]
        self._n = 0  # valid samples in self._x
        self._started = False  # a finite sample has arrived (before it, everything is a gap)

    @property
    def total(self) -> int:
        """Samples received so far (the absolute index of the next one)."""
        return self._start + self._n

    @property
    def first(self) -> int:
        """Absolute index of the oldest sample still held."""
        return self._start

    def push(self, raw: np.ndarray, keep_from: int) -> None:
        """Append raw samples (NaN = gap); samples before ``keep_from`` may be forgotten."""
        raw = np.asarray(raw, dtype=np.float64)
        m = len(raw)
        if m == 0:
            return
        y = np.zeros(m)
        bad = np.ones(m, dtype=bool)
        k = 0
        if not self._started:
            # nothing is fed to the filter before the first finite sample, so it starts at
            # rest on that sample's value whatever the chunking
            finite = np.flatnonzero(np.isfinite(raw))
            k = int(finite[0]) if len(finite) else m
            self._started = k < m
        if k < m:
            held, bad[k:] = self._hold(raw[k:])
            y[k:] = self._filt(held)
        # forget what nobody can still ask for
        drop = min(max(0, keep_from - self._start), self._n)
        if drop and self._n + m > len(self._x):
            self._x[: self._n - drop] = self._x[drop : self._n]
            self._gap[: self._n - drop] = self._gap[drop : self._n]
            self._start += drop
            self._n -= drop
        if self._n + m > len(self._x):
            cap = max(2 * len(self._x), self._n + m)
            x, g = np.zeros(cap), np.zeros(cap, dtype=bool)
            x[: self._n], g[: self._n] = self._x[: self._n], self._gap[: self._n]
            self._x, self._gap = x, g
        self._x[self._n : self._n + m] = y
        self._gap[self._n : self._n + m] = bad
        self._n += m

    def segment(self, a: int, b: int) -> tuple[np.ndarray, bool] | None:
        """Samples ``[a, b)`` (absolute) and whether any of them was a gap; None when they are
        not (or no longer) all held."""
        if a < self._start or b > self.total or a >= b:
            return None
        i, j = a - self._start, b - self._start
        return self._x[i:j], bool(self._gap[i:j].any())
