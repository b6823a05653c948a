"""Pulse detection on one pulsatile channel (pulse oximeter pleth, arterial pressure),
streaming.

Each pulse is timed at the steepest point of its upstroke, a peak of the slope of the 0.5-8 Hz
band-passed wave: every ejection, a weak premature beat's too, starts with a steep rise, while
the dicrotic wave and slow baseline swings rise gently, and a peak of the pulse itself is
easily outgrown by the large pulses around it when pulse heights vary (atrial fibrillation,
ectopy). A slope peak is a pulse when its prominence is at least half the typical upstroke
steepness of the last 6 s (the 5th-95th percentile range of the slope).
"""

from __future__ import annotations

import numpy as np

from device.beats.channel import LEVEL_S, ChannelDetector
from device.dsp.filters import CausalFilter
from device.dsp.quality import robust_range

#: A pulse's upstroke must be this fraction of the window's typical upstroke steepness
#: steeper than its surroundings. Chosen on the BIDMC records (HR from PPG, mean MAE: 0.93 at
#: 0.45, 0.87 at 0.5, 0.93 at 0.6); at lower fractions dicrotic waves start to count.
PROMINENCE = 0.5
#: How far after the upstroke its prominence is judged: the downstroke that follows it.
LOOKAHEAD_S = 0.4
#: Pulses are timed near 3 Hz, where an upstroke's energy lies; the band-pass delays it.
TIMING_HZ = 3.0


class PulseDetector(ChannelDetector):
    """Streaming pulse detection on a PPG or ABP channel (see the module docstring)."""

    segment_s = 0.3
    lookahead_s = LOOKAHEAD_S

    def __init__(self, fs_hz: float, delay_s: float = 0.0, lead: str = "") -> None:
        # Pulse waves: fundamental 0.5-3.7 Hz (30-220 bpm) plus harmonics; 0.5-8 Hz keeps the
        # systolic upstroke and removes respiratory baseline and motion drift.
        filt = CausalFilter.butter(2, (0.5, 8.0), fs_hz, "bandpass")
        super().__init__(fs_hz, filt, delay_s + filt.group_delay_s(TIMING_HZ, fs_hz))
        self.lead = lead
        self._last_y = 0.0
        self._started = False
        self._spread = 0.0  # the slope's 5-95 % range over the level window, per block

    def _feature(self, y: np.ndarray) -> np.ndarray:
        d = np.empty_like(y)
        d[0] = (y[0] - self._last_y) if self._started else 0.0
        np.subtract(y[1:], y[:-1], out=d[1:])
        self._started = True
        self._last_y = float(y[-1])
        d *= self.fs_hz
        return d

    def _block_stats(self, f: np.ndarray) -> None:
        self._spread = robust_range(f[max(0, len(f) - int(LEVEL_S * self.fs_hz)) :])

    def _decide(
        self, p: int, size: float, f: np.ndarray, a0: int, level: float
    ) -> list[tuple[int, float]]:
        i = p - a0
        spread = self._spread
        if spread <= 0.0:
            return []
        # prominence: above the higher of the lowest points on either side before a higher
        # sample (the past back to the level window's start; the look-ahead after it)
        left = f[max(0, i - int(LEVEL_S * self.fs_hz)) : i]
        higher = np.flatnonzero(left > f[i])
        left = left[higher[-1] + 1 :] if len(higher) else left
        right = f[i + 1 : i + 1 + self._ahead]
        higher = np.flatnonzero(right > f[i])
        right = right[: higher[0]] if len(higher) else right
        base = max(
            float(left.min()) if len(left) else float(f[i]),
            float(right.min()) if len(right) else float(f[i]),
        )
        prominence = float(f[i]) - base
        if prominence < PROMINENCE * spread:
            return []
        last = self.last_beat
        if last is not None and p <= last + self.refractory - 1:
            return []
        return [(p, prominence)]
