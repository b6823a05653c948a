"""Heart rate from heart sounds (phonocardiogram): a stethoscope or a microphone on the chest.

Each beat makes two sounds, S1 (the atrioventricular valves closing, start of systole) and S2
(the semilunar valves, end of systole), short bursts of 25-200 Hz energy. The estimator:

1. takes the homomorphic envelope of the heart-sound band (log energy of 25-200 Hz every
   10 ms, ``device.dsp.audio_features.HeartEnvelope``), keeps what rises above its 0.3 s running
   mean (the short heart sounds, not the slow swell of a breath), smooths it over 50 ms and
   removes its mean;
2. every second, autocorrelates the last ``window_s`` (8 s: 6-15 beats) of it, normalised
   per lag by the overlap (so a long lag is not penalised for overlapping less);
3. takes the strongest autocorrelation peak at lags 0.27-1.6 s (37-220 beats/min) as the beat
   period T. S1 matches S1 and S2 matches S2 one period later, so T stands above the lags
   S1-to-S2 (systole, ~0.3 s) and S2-to-S1 (diastole), which match unlike sounds. Never half
   the rate: a peak at T/2 nearly as strong as T (and repeating at 3T/2) means the true period
   is T/2. Never double: a lag below 0.27 s is not searched, and a peak at T/2 standing only
   because systole is close to diastole needs the 3T/2 repeat to be taken;
4. quality is the height of that peak (a correlation in [0, 1]); below ``min_quality``, with
   too much of the window missing, or when the period disagrees between the two halves of the
   window, the answer is None. Breath sounds and noise have no such peak: their envelopes
   change slowly or not at all at cardiac lags.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.dsp.audio_features import AUDIO_FS_HZ, HEART_ENVELOPE_FS_HZ, HeartEnvelope
from device.dsp.buffers import RingBuffer
from device.dsp.peaks import parabolic_peak_offset
from device.dsp.stats import lag_products
from device.estimators.base import Estimate
from device.roles import Quantity, Role

#: Beat-period search: 0.27-1.6 s, i.e. 37-220 beats/min.
MIN_PERIOD_S, MAX_PERIOD_S = 0.27, 1.6
#: Window analysed: 8 s holds 5 beats at 37/min and 29 at 220/min.
WINDOW_S = 8.0
#: Least sound before answering (3 beats at 40/min).
MIN_WINDOW_S = 5.0
#: Background of the envelope: its running mean over 0.3 s, longer than S1 or S2 (50-150 ms),
#: shorter than an inspiration or expiration.
BACKGROUND_S = 0.3
#: Envelope smoothing: 50 ms, about the length of one heart sound.
SMOOTH_S = 0.05
#: A peak at half the period counts as the period when at least this share of its height and
#: repeated at 1.5 periods.
HALF_SHARE = 0.85
#: Lags checked for a faster-than-cardiac rhythm (0.1 s up to the shortest period) and the
#: share of the chosen peak's height from which such a rhythm vetoes the answer.
FASTEST_S, FAST_SHARE = 0.1, 0.6
#: A heart rate within this share of the breath sounds' burst rate is the breathing rhythm.
BREATH_GUARD_SHARE = 0.05
#: The halves of the window must agree on the period within this share.
HALVES_TOL = 0.08


def _acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation normalised per lag by the overlap, relative to lag 0."""
    r = lag_products(x, max_lag + 1)
    return np.asarray(r / r[0]) if r[0] > 0 else np.zeros(max_lag + 1)


def _prepare(env: np.ndarray, fs_hz: float) -> np.ndarray:
    # what rises above the envelope's own 0.3 s running mean: heart sounds (50-150 ms) stand
    # out, breath sounds (0.7-3 s per phase) and slow changes of loudness do not
    m = max(1, int(round(BACKGROUND_S * fs_hz)))
    x = np.maximum(env - np.convolve(env, np.ones(m) / m, mode="same"), 0.0)
    k = max(1, int(round(SMOOTH_S * fs_hz)))
    x = np.convolve(x, np.ones(k) / k, mode="same")
    return np.asarray(x - x.mean())


def _peak_near(r: np.ndarray, lag: float, tol: float = 0.06) -> float:
    """Highest local maximum of ``r`` within +-tol x lag of ``lag`` (0 if none)."""
    lo, hi = max(1, int(lag * (1 - tol))), min(len(r) - 2, int(np.ceil(lag * (1 + tol))))
    best = 0.0
    for i in range(lo, hi + 1):
        if r[i] >= r[i - 1] and r[i] >= r[i + 1]:
            best = max(best, float(r[i]))
    return best


def beat_period(env: np.ndarray, fs_hz: float = HEART_ENVELOPE_FS_HZ) -> tuple[float | None, float]:
    """(beat period in s or None, quality) of a heart-sound envelope window."""
    x = _prepare(env, fs_hz)
    if float(np.std(x)) < 1e-9:
        return None, 0.0
    lo, hi = int(MIN_PERIOD_S * fs_hz), int(MAX_PERIOD_S * fs_hz)
    if len(x) < 2 * hi:
        hi = len(x) // 2
    if hi <= lo + 2:
        return None, 0.0
    max_lag = min(len(x) - 1, int(1.6 * hi) + 2)
    r = _acf(x, max_lag)
    seg = r[lo : hi + 1]
    is_peak = (seg[1:-1] >= seg[:-2]) & (seg[1:-1] >= seg[2:])
    if not is_peak.any():
        return None, 0.0
    cand = np.flatnonzero(is_peak) + 1 + lo
    i = int(cand[np.argmax(r[cand])])
    peak = float(r[i])
    # a rhythm faster than any heart (an engine, a tremor, a tone's beating) repeats at every
    # multiple of its period, some of which fall in the cardiac range: not a heart
    fast = r[int(FASTEST_S * fs_hz) : lo + 1]
    fast_peaks = (fast[1:-1] >= fast[:-2]) & (fast[1:-1] >= fast[2:])
    if fast_peaks.any() and float(fast[1:-1][fast_peaks].max()) >= FAST_SHARE * peak:
        return None, 0.0
    half = i / 2
    if half >= lo and _peak_near(r, half) >= HALF_SHARE * peak:
        rep = _peak_near(r, 1.5 * i) if 1.5 * i < len(r) - 2 else peak
        if rep >= 0.7 * peak:
            lo_j, hi_j = max(lo, int(half * 0.94)), int(np.ceil(half * 1.06))
            i = lo_j + int(np.argmax(r[lo_j : hi_j + 1]))
            peak = float(r[i])
    off = float(parabolic_peak_offset(r[i - 1 : i], r[i : i + 1], r[i + 1 : i + 2])[0])
    return (i + off) / fs_hz, max(0.0, peak)


def heart_rate(env: np.ndarray, fs_hz: float = HEART_ENVELOPE_FS_HZ) -> tuple[float | None, float]:
    """(beats/min or None, quality) with the halves-agree check; see the module doc."""
    period, q = beat_period(env, fs_hz)
    if period is None:
        return None, q
    n = len(env)
    if n >= 2 * 2.5 * fs_hz:  # each half holds at least 2.5 s
        periods = [beat_period(env[: n // 2], fs_hz)[0], beat_period(env[n // 2 :], fs_hz)[0]]
        if any(p is None or abs(p - period) > HALVES_TOL * period for p in periods):
            return None, 0.5 * q
    return 60.0 / period, q


class HeartSoundsHR:
    """Heart rate from heart sounds; see the module docstring."""

    quantity = Quantity.HR

    def __init__(
        self,
        role: str = "audio",
        *,
        name: str = "heart_sounds",
        window_s: float = WINDOW_S,
        min_quality: float = 0.4,
    ) -> None:
        self.role, self.name = Role(role), name
        self.fs_hz = AUDIO_FS_HZ
        self.window_s, self.min_quality = window_s, min_quality
        self._env = HeartEnvelope()
        n = int(round(window_s * HEART_ENVELOPE_FS_HZ))
        self._buf = RingBuffer(n)
        self._gap = RingBuffer(n, fill=1.0)
        self._recent: float | None = None
        #: the breath-sound estimator on the same audio (``recent_burst_rate()``), if any
        self.breath: Any = None

    def watch(self, others: list[Any]) -> None:
        """Refuse the breath bursts' rhythm: watch the breath-sound estimator on the audio."""
        self.breath = next((o for o in others if hasattr(o, "recent_burst_rate")), self.breath)

    def push(self, x: np.ndarray) -> None:
        env, gaps = self._env.push(x)
        if len(env):
            self._buf.extend(env)
            self._gap.extend(gaps.astype(np.float64))

    def recent_hr(self) -> float | None:
        """The heart rate of the last estimate (None when there was none)."""
        return self._recent

    def estimate(self, t_s: float) -> Estimate:
        self._recent = None
        none = Estimate(None, 0.0, self.name, self.role, self.quantity)
        env = self._buf.latest()
        if len(env) < MIN_WINDOW_S * HEART_ENVELOPE_FS_HZ:
            return none
        if (self._gap.latest() > 0.5).mean() > 0.1:
            return none
        hr, q = heart_rate(env)
        if hr is None or q < self.min_quality:
            return Estimate(None, q, self.name, self.role, self.quantity)
        burst = self.breath.recent_burst_rate() if self.breath is not None else None
        if burst is not None and abs(hr - burst) < BREATH_GUARD_SHARE * hr:
            # the rhythm of inspirations and expirations, not of the heart
            return Estimate(None, 0.0, self.name, self.role, self.quantity)
        self._recent = hr
        return Estimate(hr, q, self.name, self.role, self.quantity)
