"""Signal-processing estimators: beat intervals for HR, breath intervals for RR.

These are the fallback when no learned model fits the available roles, and the baseline the
models must beat. Each keeps causally filtered samples in a ring buffer and, once per second,
detects events (beats, breaths) in the most recent window.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from device.dsp import CARDIAC_FS_HZ, RESP_FS_HZ, CausalFilter, HoldGaps, RingBuffer, parabolic_peak_offset, robust_range
from device.estimators.base import Estimate

#: Fastest heart rate we report: 220 bpm (infants reach ~200). Refractory period 60/220 s.
HR_MAX_BPM = 220.0
#: Slowest heart rate we report: 25 bpm; a longer pause is a gap, not a rate.
HR_MIN_BPM = 25.0
#: Fastest breathing we report: 70 breaths/min (neonates ~60); slowest 3 (apnea is alarmed
#: separately, from the time since the last breath).
RR_MAX_BPM = 70.0
RR_MIN_BPM = 3.0

#: Raw-signal spread below which a channel is called flat (sensor off, lead off). Units are
#: those of the channel; BIDMC channels are normalised to roughly 0..1, boards give counts,
#: so the test is relative: a window whose spread is below this fraction of the spread seen
#: in the channel's recent history is flat.
FLAT_RELATIVE = 0.02


class _Windowed:
    """Shared plumbing: gap-held, filtered samples and a gap mask in ring buffers."""

    def __init__(self, fs_hz: float, history_s: float, filt: CausalFilter) -> None:
        self.fs_hz = fs_hz
        n = int(round(history_s * fs_hz))
        self._hold = HoldGaps()
        self._filt = filt
        self._y = RingBuffer(n)
        self._raw = RingBuffer(n)
        self._gap = RingBuffer(n, fill=1.0)
        self._scale = 0.0  # slow-decaying spread of the signal, for flat-line detection

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

    def flat(self, raw: np.ndarray) -> bool:
        spread = robust_range(raw)
        if spread <= 1e-9:
            return True
        self._scale = max(spread, 0.98 * self._scale)
        return spread < FLAT_RELATIVE * self._scale


class BeatIntervalHR(_Windowed):
    """Heart rate from the intervals between detected beats (ECG R waves or PPG pulses).

    HR is 60 / mean of the accepted beat-to-beat intervals in the last ``avg_s`` seconds; an
    interval is accepted when it is within ``tolerance`` of the window's median interval
    (rejecting missed and extra beats). Quality is the share of accepted intervals, so a
    noisy or arrhythmic window reports low quality and, below ``min_quality``, no value.
    """

    quantity = "hr"

    def __init__(
        self,
        role: str,
        *,
        name: str = "dsp",
        window_s: float = 10.0,
        avg_s: float = 8.0,
        tolerance: float = 0.25,
        min_quality: float = 0.6,
    ) -> None:
        if role == "ecg":
            # QRS energy sits at 8-25 Hz; a 5-30 Hz band passes R waves and rejects baseline
            # wander (< 1 Hz) and T waves (mostly < 7 Hz).
            filt = CausalFilter.butter(2, (5.0, 30.0), CARDIAC_FS_HZ, "bandpass")
        elif role == "ppg":
            # Pulse waves: fundamental 0.5-3.7 Hz (30-220 bpm) plus harmonics; 0.5-8 Hz keeps
            # the systolic upstroke and removes respiratory baseline and motion drift.
            filt = CausalFilter.butter(2, (0.5, 8.0), CARDIAC_FS_HZ, "bandpass")
        else:
            raise ValueError(f"BeatIntervalHR cannot use role {role!r}")
        super().__init__(CARDIAC_FS_HZ, max(window_s, avg_s) + 2.0, filt)
        self.role, self.name = role, name
        self.window_s, self.avg_s = window_s, avg_s
        self.tolerance, self.min_quality = tolerance, min_quality

    def beats(self, t_s: float) -> tuple[np.ndarray, float]:
        """Beat times (signal seconds) in the last window, and the share of the window that was gap."""
        y, raw, gap, t0 = self.window(self.window_s)
        if len(y) < self.fs_hz * 3 or self.flat(raw):
            return np.zeros(0), float(gap.mean()) if len(gap) else 1.0
        feature = np.abs(y) if self.role == "ecg" else y
        spread = robust_range(feature) if self.role == "ppg" else float(np.percentile(feature, 99))
        peaks, _ = find_peaks(
            feature,
            distance=max(1, int(self.fs_hz * 60.0 / HR_MAX_BPM)),
            prominence=0.35 * spread if self.role == "ppg" else None,
            height=0.35 * spread if self.role == "ecg" else None,
        )
        peaks = peaks[(peaks > 0) & (peaks < len(feature) - 1)]
        peaks = peaks[~gap[peaks]]
        off = parabolic_peak_offset(feature[peaks - 1], feature[peaks], feature[peaks + 1])
        return t0 + (peaks + off) / self.fs_hz, float(gap.mean())

    def estimate(self, t_s: float) -> Estimate:
        times, gap_share = self.beats(t_s)
        none = Estimate(None, 0.0, self.name, self.role, self.quantity)
        if gap_share > 0.2 or len(times) < 4:
            return none
        ibi = np.diff(times)
        ok = (ibi > 60.0 / HR_MAX_BPM) & (ibi < 60.0 / HR_MIN_BPM)
        if ok.sum() < 3:
            return none
        med = float(np.median(ibi[ok]))
        ok &= np.abs(ibi - med) <= self.tolerance * med
        recent = times[1:] >= t_s - self.avg_s
        use = ok & recent
        quality = float(ok.sum()) / len(ibi)
        if use.sum() < 2 or quality < self.min_quality:
            return Estimate(None, quality, self.name, self.role, self.quantity, float(times[-1]))
        hr = 60.0 / float(np.mean(ibi[use]))
        return Estimate(hr, quality, self.name, self.role, self.quantity, float(times[-1]))


class BreathIntervalRR(_Windowed):
    """Respiratory rate from breaths detected as peaks of the band-passed impedance signal.

    The rate over the last ``window_s`` seconds is (breaths - 1) x 60 / (time from first to
    last breath): the same definition the annotated references use.
    """

    quantity = "rr"

    def __init__(
        self,
        role: str = "resp",
        *,
        name: str = "dsp",
        window_s: float = 32.0,
        min_quality: float = 0.5,
    ) -> None:
        # Breathing at 3-70 breaths/min is 0.05-1.2 Hz; 0.08-1.0 Hz drops drift and cardiac
        # oscillation (> 1 Hz in adults) that rides on thoracic impedance.
        filt = CausalFilter.butter(2, (0.08, 1.0), RESP_FS_HZ, "bandpass")
        super().__init__(RESP_FS_HZ, window_s + 2.0, filt)
        self.role, self.name = role, name
        self.window_s, self.min_quality = window_s, min_quality
        self.last_breath_s: float | None = None

    def breaths(self) -> tuple[np.ndarray, float]:
        y, raw, gap, t0 = self.window(self.window_s)
        if len(y) < self.fs_hz * 8 or self.flat(raw):
            return np.zeros(0), float(gap.mean()) if len(gap) else 1.0
        peaks, _ = find_peaks(
            y, distance=max(1, int(self.fs_hz * 60.0 / RR_MAX_BPM)), prominence=0.3 * robust_range(y)
        )
        peaks = peaks[(peaks > 0) & (peaks < len(y) - 1)]
        peaks = peaks[~gap[peaks]]
        off = parabolic_peak_offset(y[peaks - 1], y[peaks], y[peaks + 1])
        return t0 + (peaks + off) / self.fs_hz, float(gap.mean())

    def estimate(self, t_s: float) -> Estimate:
        times, gap_share = self.breaths()
        if len(times):
            self.last_breath_s = float(times[-1])
        last = self.last_breath_s
        if gap_share > 0.2 or len(times) < 3:
            return Estimate(None, 0.0, self.name, self.role, self.quantity, last)
        ibi = np.diff(times)
        med = float(np.median(ibi))
        quality = float(np.mean(np.abs(ibi - med) <= 0.5 * med))
        span = float(times[-1] - times[0])
        rr = 60.0 * (len(times) - 1) / span
        if quality < self.min_quality or not (RR_MIN_BPM <= rr <= RR_MAX_BPM):
            return Estimate(None, quality, self.name, self.role, self.quantity, last)
        return Estimate(rr, quality, self.name, self.role, self.quantity, last)
