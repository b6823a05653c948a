"""Respiratory rate from the breathing modulation of the PPG, for when only a pulse oximeter
is attached (the fallback of the learned RR-from-PPG model; 2.4 breaths/min at 81 % coverage
on the 42 shared BIDMC records, ``bench/accuracy.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from device.beats.beat import Detection
from device.dsp.buffers import RingBuffer
from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps
from device.dsp.peaks import parabolic_peak_offset
from device.dsp.resample import Decimator
from device.estimators.base import Estimate
from device.estimators.beats import BeatIntervalHR
from device.roles import CARDIAC_FS_HZ, Quantity, Role

#: PPG modulation series are sampled at 5 Hz (beats come at most ~4 per second).
_MOD_FS_HZ = 5.0
#: Breathing band searched in the PPG modulations: 6-42 breaths/min (adults and children
#: at rest; the cardiac fundamental stays above 0.7 Hz, 42 bpm, in nearly everyone).
_PPG_RR_BAND_HZ = (0.1, 0.7)


class PulseModulationRR:
    """Respiratory rate from the breathing modulation of the PPG, for when only a pulse
    oximeter is attached.

    Breathing modulates the pulse wave three ways (Karlen et al. 2013; Pimentel et al. 2016):
    its baseline (venous return: respiratory-induced intensity variation), its amplitude
    (stroke volume: amplitude variation) and its beat intervals (respiratory sinus
    arrhythmia: frequency variation). Each chosen modulation is sampled at 5 Hz over the
    last ``window_s`` seconds; their power spectra in the breathing band are normalised and
    added, each weighted by how concentrated it is around its own peak (a clean modulation
    has one sharp line), and the rate is the peak of the sum. Quality is the concentration
    of the fused spectrum times the beat quality; below ``min_quality`` the value is None.

    By default only the baseline is used: on the 42 shared BIDMC records (ICU adults, many
    ventilated or elderly, with weak sinus arrhythmia) the amplitude and interval
    modulations alone were off by ~6.7 breaths/min on average and pulled the fusion from
    3.0 to 3.7 (all seconds, no quality gate); younger, spontaneously breathing patients
    may do better with all three (``modulations=("baseline", "amplitude", "interval")``).
    """

    quantity = Quantity.RR

    def __init__(
        self,
        role: str = "ppg",
        *,
        name: str = "dsp",
        window_s: float = 32.0,
        min_quality: float = 0.3,
        modulations: tuple[str, ...] = ("baseline",),
    ) -> None:
        if role != "ppg":
            raise ValueError(f"PulseModulationRR cannot use role {role!r}")
        self.role, self.name = Role(role), name
        self.fs_hz = CARDIAC_FS_HZ
        self.window_s, self.min_quality = window_s, min_quality
        unknown = set(modulations) - {"baseline", "amplitude", "interval"}
        if unknown or not modulations:
            raise ValueError(f"unknown PPG modulations {sorted(unknown)}")
        self.modulations = tuple(modulations)
        self._beats = BeatIntervalHR(role, name=name)
        #: fed the beat stream's pulses of its role as well as its samples
        self.beat_role = self.role
        # Baseline: below 0.7 Hz (42 breaths/min) the pulse itself is gone and breathing stays.
        self._base_filt = CausalFilter.butter(2, 0.7, CARDIAC_FS_HZ, "lowpass")
        self._base_hold = HoldGaps()
        self._decimate = Decimator(int(round(CARDIAC_FS_HZ / _MOD_FS_HZ)))
        self._base = RingBuffer(int((window_s + 2.0) * _MOD_FS_HZ))
        nfft = 1
        while nfft < 8 * window_s * _MOD_FS_HZ:
            nfft *= 2
        self._nfft = nfft
        f = np.fft.rfftfreq(nfft, 1.0 / _MOD_FS_HZ)
        self._band = (f >= _PPG_RR_BAND_HZ[0]) & (f <= _PPG_RR_BAND_HZ[1])
        self._f = f[self._band]

    def push_beats(self, beats: Sequence[Detection]) -> None:
        self._beats.push_beats(beats)

    def push(self, x: np.ndarray) -> None:
        held, _ = self._base_hold(x)
        self._base.extend(self._decimate(self._base_filt(held)))

    def _spectrum(self, x: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Band power spectrum normalised to unit sum, and its concentration (share of the
        power within +-2 breaths/min of its peak)."""
        if len(x) < 8 or not np.all(np.isfinite(x)):
            return None
        n = len(x)
        t = np.arange(n)
        x = x - np.polyval(np.polyfit(t, x, 1), t)  # remove drift
        p = np.abs(np.fft.rfft(x * np.hanning(n), self._nfft))[self._band] ** 2
        total = float(p.sum())
        if total <= 0.0:
            return None
        p = p / total
        k = int(np.argmax(p))
        near = np.abs(self._f - self._f[k]) <= 2.0 / 60.0
        return p, float(p[near].sum())

    def estimate(self, t_s: float) -> Estimate:
        beat = self._beats.estimate(t_s)
        none = Estimate(None, 0.0, self.name, self.role, self.quantity)
        n = int(self.window_s * _MOD_FS_HZ)
        if beat.value is None or self._base.total < n:
            return Estimate(None, 0.0, self.name, self.role, self.quantity)
        grid = t_s - self.window_s + np.arange(n) / _MOD_FS_HZ
        tb, hb = self._beats.beats_since(t_s - self.window_s - 2.0)
        if len(tb) < 8:
            return none
        series = []
        if "baseline" in self.modulations:  # intensity (venous return)
            series.append(self._base.latest(n))
        if "amplitude" in self.modulations:  # stroke volume
            series.append(np.interp(grid, tb, hb))
        if "interval" in self.modulations:  # sinus arrhythmia
            series.append(np.interp(grid, tb[1:], np.diff(tb)))
        fused = np.zeros(int(self._band.sum()))
        weight = 0.0
        for s in series:
            spec = self._spectrum(s)
            if spec is None:
                continue
            p, conc = spec
            fused += conc * p
            weight += conc
        if weight <= 0.0:
            return none
        fused /= weight
        k = int(np.argmax(fused))
        near = np.abs(self._f - self._f[k]) <= 2.0 / 60.0
        quality = float(fused[near].sum()) * beat.quality
        off = 0.0
        if 0 < k < len(fused) - 1:
            off = float(
                parabolic_peak_offset(fused[k - 1 : k], fused[k : k + 1], fused[k + 1 : k + 2])[0]
            )
        df = float(self._f[1] - self._f[0])
        rr = 60.0 * (float(self._f[k]) + off * df)
        if quality < self.min_quality:
            return Estimate(None, quality, self.name, self.role, self.quantity)
        return Estimate(rr, quality, self.name, self.role, self.quantity)
