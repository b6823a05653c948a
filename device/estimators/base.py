"""The estimator interface: samples in, one estimate with a quality out, once per second.

An estimator owns its causal filters and ring buffers. The pipeline pushes it samples of one
role at the estimator's own rate (``fs_hz``; NaN marks a gap) and asks for an estimate at
each second of signal time. When quality is too poor to trust, it returns ``value=None``
rather than a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from device.dsp.buffers import RingBuffer
from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps
from device.dsp.quality import FlatLine
from device.roles import EstimateKey, Quantity, Role


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer at one second.

    ``value`` is in the quantity's unit (bpm or breaths/min) or None; ``quality`` in [0, 1]
    is the signal-quality index behind it; ``estimator`` names who answered (``dsp`` or a
    model's name).
    """

    value: float | None
    quality: float
    estimator: str
    role: Role
    quantity: Quantity

    @property
    def key(self) -> EstimateKey:
        return EstimateKey(self.quantity, self.role)


class Estimator(Protocol):
    """What the pipeline needs of an HR or RR estimator."""

    name: str  # e.g. "dsp" or "hr_ppg_cnn_int8"
    quantity: Quantity
    role: Role  # input role
    fs_hz: float  # the rate samples must be pushed at

    def push(self, x: np.ndarray) -> None:
        """Append samples (NaN = gap) at ``fs_hz``."""

    def estimate(self, t_s: float) -> Estimate:
        """The estimate for the signal up to ``t_s`` (seconds since the stream started)."""


class Windowed:
    """Shared plumbing of the signal-processing estimators: gap-held, causally filtered
    samples, the raw samples and a gap mask, each in a ring buffer of ``history_s``."""

    def __init__(self, fs_hz: float, history_s: float, filt: CausalFilter) -> None:
        self.fs_hz = fs_hz
        n = int(round(history_s * fs_hz))
        self._hold = HoldGaps()
        self._filt = filt
        self._y = RingBuffer(n)
        self._raw = RingBuffer(n)
        self._gap = RingBuffer(n, fill=1.0)
        self.flat = FlatLine()

    def push(self, x: np.ndarray) -> None:
        held, bad = self._hold(x)
        self._raw.extend(held)
        self._y.extend(self._filt(held))
        self._gap.extend(bad.astype(np.float64))

    def window(self, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(filtered, raw, gap mask, signal time of the window's first sample)."""
        n = int(round(seconds * self.fs_hz))
        y = self._y.latest(n)
        t0 = (self._y.total - len(y)) / self.fs_hz
        return y, self._raw.latest(n), self._gap.latest(n) > 0.5, t0
