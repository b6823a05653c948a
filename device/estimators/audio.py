"""Respiratory rate from breathing sounds (a microphone or an electronic stethoscope).

Airflow in the airways makes broadband noise whose loudness rises and falls with every
breath; heart sounds sit lower (S1/S2 mostly below 150 Hz). The estimator:

1. band-passes the sound to 150-800 Hz (breath sounds, above the heart sounds; 800 Hz is the
   top the 2 kHz internal rate keeps after the pipeline's anti-alias filter),
2. takes its loudness envelope: power smoothed below 2 Hz, square-rooted, kept at 10 Hz,
3. every second, looks at the last 30 s of envelope for the breathing period. Inspiration and
   expiration are both audible, so the envelope often has two bumps per breath and its
   strongest spectral line is at twice the breathing rate. The rate is therefore the
   fundamental f that maximises the *harmonic sum* P(f) + P(2f) + P(3f) of the envelope's
   spectrum, over 4-45 breaths/min.

Quality is how much the winning harmonic sum stands out from the typical one; below
``min_quality``, or with more than 20 % of the window missing, the answer is None.

Causal and streaming like the other signal-processing estimators: state carries across
``push`` calls and the output does not depend on how the samples were chunked.
"""

from __future__ import annotations

import numpy as np

from device.dsp.buffers import RingBuffer
from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps
from device.dsp.resample import Decimator
from device.estimators.base import Estimate
from device.roles import Quantity, Role

#: Internal rate: breath sounds are strongest at 100-1000 Hz; 2 kHz keeps up to 800 Hz.
AUDIO_FS_HZ = 2000.0
#: Breath-sound band: above the heart sounds (< ~150 Hz), below the 2 kHz rate's alias guard.
BAND_HZ = (150.0, 800.0)
#: Envelope smoothing: breathing modulates loudness below ~1 Hz (60 breaths/min); 2 Hz keeps
#: the shape of each breath and drops the sound's fine structure.
ENVELOPE_LP_HZ = 2.0
#: Envelope rate: 10 Hz carries the third harmonic of 45 breaths/min (2.25 Hz) comfortably.
ENVELOPE_FS_HZ = 10.0
#: Rates considered: 4 to 45 breaths/min (adults at rest 12-20; paced tests 8-20).
RR_MIN_BPM, RR_MAX_BPM = 4.0, 45.0
HARMONICS = 3
#: Window whose envelope is analysed; shorter windows hold too few breaths at 8/min.
WINDOW_S = 30.0
#: Least envelope needed before answering.
MIN_WINDOW_S = 20.0
#: Spectral resolution of the zero-padded FFT at 10 Hz: 10/4096 Hz = 0.15 breaths/min.
NFFT = 4096


class BreathSoundRR:
    """Respiratory rate from breath sounds; see the module docstring."""

    quantity = Quantity.RR

    def __init__(
        self,
        role: str = "audio",
        *,
        name: str = "breath_sound",
        window_s: float = WINDOW_S,
        min_quality: float = 0.7,
    ) -> None:
        self.role, self.name = Role(role), name
        self.fs_hz = AUDIO_FS_HZ
        self.window_s, self.min_quality = window_s, min_quality
        self._hold = HoldGaps()
        self._band = CausalFilter.butter(4, BAND_HZ, AUDIO_FS_HZ, "bandpass")
        self._smooth = CausalFilter.butter(2, ENVELOPE_LP_HZ, AUDIO_FS_HZ, "lowpass")
        self._decimate = Decimator(int(round(AUDIO_FS_HZ / ENVELOPE_FS_HZ)))
        n = int(round(window_s * ENVELOPE_FS_HZ))
        self._env = RingBuffer(n)
        self._gap = RingBuffer(n, fill=1.0)
        self._bad_since = False  # a gap sample since the last envelope sample

    def push(self, x: np.ndarray) -> None:
        held, bad = self._hold(np.asarray(x, dtype=np.float64))
        if held.size == 0:
            return
        power = self._smooth(self._band(held) ** 2)
        # keep every n-th sample of the absolute stream, whatever the chunking
        idx = self._decimate.indices(held.size)
        if idx.size:
            env = np.sqrt(np.maximum(power[idx], 0.0))
            # an envelope sample is a gap if any input since the previous one was a gap
            cum = np.concatenate(([0], np.cumsum(bad)))
            starts = np.concatenate(([0], idx[:-1] + 1))
            gaps = (cum[idx + 1] - cum[starts]) > 0
            gaps[0] |= self._bad_since
            self._env.extend(env)
            self._gap.extend(gaps.astype(np.float64))
            self._bad_since = bool(bad[idx[-1] + 1 :].any())
        else:
            self._bad_since |= bool(bad.any())

    def estimate(self, t_s: float) -> Estimate:
        none = Estimate(None, 0.0, self.name, self.role, self.quantity)
        env = self._env.latest()
        if len(env) < MIN_WINDOW_S * ENVELOPE_FS_HZ:
            return none
        gap = self._gap.latest() > 0.5
        if gap.mean() > 0.2:
            return none
        rr, quality = breath_rate(env)
        if rr is None or quality < self.min_quality:
            return Estimate(None, quality, self.name, self.role, self.quantity)
        return Estimate(rr, quality, self.name, self.role, self.quantity)


def breath_rate(env: np.ndarray, fs_hz: float = ENVELOPE_FS_HZ) -> tuple[float | None, float]:
    """(breaths/min, quality in [0, 1]) from a loudness envelope, by harmonic sum."""
    n = len(env)
    if n < 8 or not np.all(np.isfinite(env)):
        return None, 0.0
    t = np.arange(n)
    y = env - np.polyval(np.polyfit(t, env, 1), t)  # remove level and slow drift
    if float(np.std(y)) <= 1e-12:
        return None, 0.0
    spec = np.abs(np.fft.rfft(y * np.hanning(n), NFFT)) ** 2
    freqs = np.fft.rfftfreq(NFFT, 1.0 / fs_hz)
    cand = np.arange(RR_MIN_BPM, RR_MAX_BPM + 1e-9, 0.1) / 60.0
    score = sum(np.interp(k * cand, freqs, spec) for k in range(1, HARMONICS + 1))
    i = int(np.argmax(score))
    typical = float(np.median(score))
    quality = float(1.0 - typical / score[i]) if score[i] > 0 else 0.0
    return 60.0 * float(cand[i]), quality
