"""Streaming polyphase FIR resampling for audio: any capture rate down to the audio core's rate.

Audio arrives at 2-48 kHz; the audio estimators work at 2 kHz (``AUDIO_FS_HZ``). A recursive
anti-alias filter run sample by sample in Python costs several per cent of a core at 48 kHz.
Here every step is a whole-array numpy operation:

- **Design.** Linear-phase low-pass FIR filters, windowed sinc with a Kaiser window (numpy
  only, like ``device.iir``). Each stage keeps the band the estimators use, 0 to
  ``PASS_FRACTION`` x the final rate (900 Hz at 2 kHz), flat within 0.01 dB, and attenuates
  by at least ``STOP_DB`` everything that would fold into it.
- **Stages.** An integer factor is split so that only the last stage (2-4x) needs a sharp
  transition; the earlier ones have a wide transition band and few taps (48 kHz -> 8 kHz ->
  2 kHz: 31 + 145 taps instead of 873 in one go). A rational ratio (4.5 kHz -> 2 kHz is 4/9)
  runs as one polyphase stage after the largest integer decimation that divides it.
- **Polyphase.** Only the outputs are computed: output k of an up-L/down-M stage sits at
  position kM of the L-times upsampled input; its phase (kM mod L) picks one of L sub-filters
  and the input samples it needs are x[kM // L - m]. The sum over taps m is a loop over taps,
  each step a vector operation over all outputs of the chunk.
- **Streaming.** State is the input history and absolute sample counters, so the output is
  bit-identical however the input is chunked (each output is the same sequence of floating
  point operations in the same order), and causal: an output needs no input past its own
  position. History starts filled with the first sample, so a DC offset does not ring.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

#: Share of the final rate kept flat: 0.45 x 2000 Hz = 900 Hz, the top of the breath-sound
#: bands; 900-1000 Hz is the transition band (aliases may land there, nothing reads it).
PASS_FRACTION = 0.45
#: Stop-band attenuation: 16-bit audio has ~96 dB of range, breath sounds are 30-60 dB above
#: the noise floor; 70 dB keeps folded-back noise below anything the estimators measure.
STOP_DB = 70.0


def kaiser_lowpass(cutoff_hz: float, transition_hz: float, fs_hz: float) -> np.ndarray:
    """Linear-phase low-pass FIR (odd length, unit DC gain) by the Kaiser window method."""
    if not (0 < cutoff_hz < fs_hz / 2) or transition_hz <= 0:
        raise ValueError(f"bad low-pass: cutoff {cutoff_hz} Hz, transition {transition_hz} Hz")
    a = STOP_DB
    beta = 0.1102 * (a - 8.7) if a > 50 else 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    n = int(math.ceil((a - 7.95) / (2.285 * 2 * math.pi * transition_hz / fs_hz))) + 1
    n += 1 - n % 2  # odd: a whole-sample delay
    t = np.arange(n) - (n - 1) / 2
    h = 2 * cutoff_hz / fs_hz * np.sinc(2 * cutoff_hz / fs_hz * t) * np.kaiser(n, beta)
    return np.asarray(h / h.sum(), dtype=np.float64)


class PolyphaseStage:
    """One streaming up-``up`` / down-``down`` FIR stage (``up`` = 1: plain decimation)."""

    def __init__(self, fs_in: float, up: int, down: int, pass_hz: float) -> None:
        self.fs_in, self.up, self.down = float(fs_in), int(up), int(down)
        self.fs_out = self.fs_in * up / down
        fs_hi = self.fs_in * up  # the rate the filter runs at (conceptually)
        # anything within pass_hz of a multiple of the output rate folds into the pass band;
        # when upsampling, the images sit around multiples of the input rate
        stop_hz = min(self.fs_out, self.fs_in) - pass_hz
        if up > down:  # interpolation: remove the images above the input's band
            stop_hz = self.fs_in - pass_hz
        if stop_hz <= pass_hz:
            raise ValueError(f"stage {fs_in:g} Hz x {up}/{down} cannot keep {pass_hz:g} Hz")
        h = kaiser_lowpass((pass_hz + stop_hz) / 2, stop_hz - pass_hz, fs_hi) * up
        taps = -(-len(h) // up)  # taps per phase
        h = np.concatenate((h, np.zeros(taps * up - len(h))))
        #: phase p, tap m -> h[p + m * up]: sub-filter p multiplies x[n0 - m]
        self.phases = np.ascontiguousarray(h.reshape(taps, up).T)
        self.taps = taps
        self.delay_s = (len(h) - 1) / 2 / fs_hi  # group delay (linear phase)
        self._hist = np.zeros(0)  # the last taps - 1 inputs
        self._n_in = 0  # inputs consumed
        self._k = 0  # next output index

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return np.zeros(0)
        if self._n_in == 0:
            self._hist = np.full(self.taps - 1, x[0])
        buf = np.concatenate((self._hist, x))
        base = self._n_in - len(self._hist)  # absolute input index of buf[0]
        self._n_in += x.size
        # outputs k whose newest input kM // L has arrived: kM // L <= n_in - 1
        k_end = (self._n_in * self.up - 1) // self.down + 1
        k0, self._k = self._k, max(self._k, k_end)
        self._hist = buf[len(buf) - (self.taps - 1) :] if self.taps > 1 else np.zeros(0)
        if k_end <= k0:
            return np.zeros(0)
        if self.up == 1:
            # plain decimation: a strided view of the buffer per tap
            start = k0 * self.down - base
            count = k_end - k0
            h = self.phases[0]
            y = h[0] * buf[start : start + (count - 1) * self.down + 1 : self.down]
            for m in range(1, self.taps):
                s = start - m
                y += h[m] * buf[s : s + (count - 1) * self.down + 1 : self.down]
            return np.asarray(y)
        k = np.arange(k0, k_end, dtype=np.int64)
        pos = k * self.down
        n0 = pos // self.up - base
        coef = self.phases[pos % self.up]  # (outputs, taps)
        y = coef[:, 0] * buf[n0]
        for m in range(1, self.taps):
            y += coef[:, m] * buf[n0 - m]
        return np.asarray(y)


def plan_stages(fs_in: float, fs_out: float) -> list[tuple[float, int, int]]:
    """(stage input rate, up, down) for each stage from ``fs_in`` to ``fs_out``."""
    ratio = Fraction(fs_out).limit_denominator(1000) / Fraction(fs_in).limit_denominator(1000)
    if ratio == 1:
        return []
    up, down = ratio.numerator, ratio.denominator
    if up > down:  # upsampling (a 1 kHz phonocardiogram): one interpolating stage
        return [(float(fs_in), up, down)]
    # the largest integer decimation d dividing `down` that keeps the rate >= fs_out
    d = max(d for d in range(1, down + 1) if down % d == 0 and down // d >= up)
    factors: list[int] = []
    if d > 1:
        # split d so that the sharp filter runs last at a low factor (2-4)
        last = next((f for f in (4, 3, 2) if d % f == 0 and d > f), d)
        factors = [d // last, last] if last < d else [d]
    stages: list[tuple[float, int, int]] = []
    fs = float(fs_in)
    for f in factors:
        stages.append((fs, 1, f))
        fs /= f
    if up != down // d:
        stages.append((fs, up, down // d))
    return stages


class PolyphaseResampler:
    """Streaming, causal resampler from ``fs_in`` to ``fs_out`` in polyphase FIR stages,
    keeping 0 to ``PASS_FRACTION`` x the lower of the two rates. Made for downsampling; a
    lower input rate (a 1 kHz phonocardiogram into the 2 kHz core) is interpolated."""

    def __init__(self, fs_in: float, fs_out: float) -> None:
        self.fs_in, self.fs_out = float(fs_in), float(fs_out)
        pass_hz = PASS_FRACTION * min(self.fs_out, self.fs_in)
        self.stages = [PolyphaseStage(fs, u, d, pass_hz) for fs, u, d in plan_stages(fs_in, fs_out)]
        self.identity = not self.stages
        self.delay_s = sum(s.delay_s for s in self.stages)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64)
        if self.identity:
            return np.array(y)  # a copy
        for stage in self.stages:
            y = stage(y)
        return y


class _GapStage:
    """Gap flags through one stage: output k is a gap if any input since output k - 1 was."""

    def __init__(self, up: int, down: int) -> None:
        self.up, self.down = up, down
        self._n_in = 0
        self._k = 0
        self._pending = False  # a gap since the last output

    def __call__(self, bad: np.ndarray) -> np.ndarray:
        if bad.size == 0:
            return np.zeros(0, dtype=bool)
        n0 = self._n_in
        self._n_in += bad.size
        k_end = (self._n_in * self.up - 1) // self.down + 1
        k = np.arange(self._k, k_end, dtype=np.int64)
        self._k = max(self._k, k_end)
        if k.size == 0:
            self._pending |= bool(bad.any())
            return np.zeros(0, dtype=bool)
        last = (k * self.down) // self.up - n0  # newest input of each output, in this chunk
        cum = np.concatenate(([0], np.cumsum(bad)))
        prev = np.concatenate(([-1], last[:-1]))
        out = (cum[last + 1] - cum[np.maximum(prev + 1, 0)]) > 0
        out[0] |= self._pending
        self._pending = bool(bad[last[-1] + 1 :].any())
        return np.asarray(out)


class GapDecimator:
    """Where the resampled stream's gaps are: the gap flags go through the same stages as
    ``PolyphaseResampler`` (so the two stay aligned sample for sample); an output is a gap if any
    input since the previous output of its stage was one."""

    def __init__(self, fs_in: float, fs_out: float) -> None:
        self.stages = [_GapStage(u, d) for _, u, d in plan_stages(fs_in, fs_out)]

    def __call__(self, bad: np.ndarray) -> np.ndarray:
        b = np.asarray(bad, dtype=bool)
        for stage in self.stages:
            b = stage(b)
        return b


class AudioStream:
    """The pipeline's route for role ``audio``: gaps held (so the filters see no NaN),
    polyphase resampling to the estimators' rate, gaps marked NaN again on the output.
    Same call as ``device.pipeline.RoleStream``."""

    def __init__(self, role: str, fs_in: float, fs_out: float) -> None:
        from device.dsp.gaps import HoldGaps

        self.role, self.fs_in, self.fs_out = role, float(fs_in), float(fs_out)
        self._hold = HoldGaps()
        self._resample = PolyphaseResampler(fs_in, fs_out)
        self._gaps = GapDecimator(fs_in, fs_out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        held, bad = self._hold(np.asarray(x, dtype=np.float64))
        y = self._resample(held)
        gap = self._gaps(bad)
        if gap.any():
            y = np.where(gap, np.nan, y)
        return y
