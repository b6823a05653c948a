"""Changing the sample rate of a stream: any ratio (``Resampler``) or every n-th sample
(``Decimator``), both causal and independent of how the stream is chunked."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from device.dsp.filters import CausalFilter


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
            return np.array(x)  # a copy
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

    def delay_s(self, at_hz: float = 10.0) -> float:
        """How late the output is (s): the anti-alias filter's group delay at ``at_hz`` (QRS
        and pulse upstrokes carry most of their energy near 10 Hz); 0 when not downsampling.
        Beat times subtract it, so a beat is timed the same whatever rate its channel came at."""
        if self._aa is None:
            return 0.0
        return self._aa.group_delay_s(at_hz, self.fs_in)

    def skip_zeros(self, n: int) -> None:
        """The same as ``self(np.zeros(n))`` with the output discarded, for a stream whose every
        input so far was 0 (a gap mask before the first gap): that output is all zeros, so only
        the positions advance. Only valid while the whole history is zeros (the caller knows;
        it is not checked here)."""
        if n <= 0 or self.identity:
            return
        if self._aa is not None:
            self._aa.hold_zero()
        self._n_in += n
        p, q = self.ratio.numerator, self.ratio.denominator
        k_max = ((self._n_in - 1) * q - 1) // p if self._n_in >= 2 else -1
        self._k = max(self._k, k_max + 1)
        self._prev = np.zeros(1)


class Decimator:
    """Keeps the samples of a stream whose absolute index is a multiple of ``factor``,
    counting across calls (so the kept samples do not depend on the chunking). It does not
    filter: band-limit the stream first."""

    def __init__(self, factor: int) -> None:
        if factor < 1:
            raise ValueError("decimation factor must be >= 1")
        self.factor = int(factor)
        self._phase = 0  # samples seen, modulo the factor

    def indices(self, n: int) -> np.ndarray:
        """Positions, within the next ``n`` samples, of those kept (advances the count)."""
        first = (-self._phase) % self.factor
        self._phase = (self._phase + n) % self.factor
        return np.arange(first, n, self.factor)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """The kept samples of the next chunk ``y``."""
        first = (-self._phase) % self.factor
        self._phase = (self._phase + len(y)) % self.factor
        return y[first :: self.factor]
