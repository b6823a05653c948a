"""Respiratory rate from breath sounds (a microphone or an electronic stethoscope).

Airflow makes broadband noise whose loudness and colour change with every breath. The
difficulty is not finding a rhythm but knowing which rhythm is the breathing one:

- Inspiration and expiration are both audible, so the loudness often has two bumps per
  breath and its strongest line is at twice the breathing rate. Paced or relaxed breathing
  makes the two bumps nearly equally spaced, so timing alone cannot tell them apart; their
  loudness and spectral shape (inspiration is usually louder and brighter at the chest)
  usually can.
- A stethoscope on the chest hears S1/S2 at 50-120/min: short transients, which the
  features' running median removes (``device.dsp.audio_features``), and a rhythm outside the
  breathing range; a rate whose first or second harmonic sits on the heart rate found by the
  heart-sound estimator is refused.

Method, every second on the last 30 s of ``BreathBands`` features (log energies of 8 bands,
60-900 Hz, at 10 Hz):

1. Each band's log energy is detrended; the band spectra, each scaled to unit power, are
   averaged: their strongest line at 5-45/min is the *burst rate* ``f_b`` (the breathing rate,
   or twice it, or rarely half of it).
2. Twelve numbers describe which of f_b / 2, f_b, 2 f_b is the breathing rate: the spectrum at
   the sub- and higher harmonics relative to f_b, for the loudness (mean over bands), the
   spectral shape (bands minus their mean) and all bands; and how much better the sound
   repeats after two burst periods than after one (a normalised mean squared difference
   between the features and themselves shifted by one and two periods).
3. A multinomial logistic regression (``breath_octave.json``: 39 coefficients fitted by
   ``convert/breath_octave.py`` on the RRuJO recordings; its subject-level cross-validation is
   in ``bench/audio_rr.py``) turns them into probabilities of the three; the rate is the most
   probable one, and its probability times how far the line stands out of the spectrum is
   the quality. Below ``min_quality`` (0.6) the answer is None.

Causal and streaming: state carries across ``push`` calls and the output does not depend on
how the samples were chunked.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from device.dsp.audio_features import AUDIO_FS_HZ, BREATH_BANDS, BREATH_FEATURE_FS_HZ, BreathBands
from device.dsp.buffers import RingBuffer
from device.estimators.base import Estimate
from device.roles import Quantity, Role

#: Rates reported: 5 to 45 breaths/min (adults at rest 12-20, tachypnoea above 25; paced
#: recordings 8-20). The burst rate is searched over the same range.
RR_MIN_BPM, RR_MAX_BPM = 5.0, 45.0
#: Window analysed: 30 s holds 2.5 breaths at 5/min.
WINDOW_S = 30.0
#: Least sound before answering (about 4 breaths at 8/min).
MIN_WINDOW_S = 30.0
#: Zero-padded FFT at 10 Hz: 10/4096 Hz = 0.15 breaths/min per bin.
NFFT = 4096
#: Half-width of the search around a harmonic (the breathing rate drifts within a window).
HARMONIC_TOL_BPM = 0.6
#: Lag tolerance of the repetition test (+-10 % of a period).
LAG_TOL = 0.1
#: Candidate multipliers of the burst rate, in the order of the classifier's outputs.
OCTAVES = (0.5, 1.0, 2.0)
#: Feature names, in the order the classifier takes them.
FEATURES = (
    "sub_all",  # spectrum at f_b/2 over spectrum at f_b, mean of the band spectra
    "threehalf_all",  # at 1.5 f_b
    "double_all",  # at 2 f_b
    "prominence",  # spectrum at f_b over its median over 5-45/min
    "sub_shape",  # f_b/2 over f_b, spectral-shape trajectories
    "sub_loud",  # f_b/2 over f_b, loudness
    "rep2_all",  # mean squared difference at two periods over at one, all bands
    "rephalf_all",  # at half a period over at one
    "rep2_shape",
    "rephalf_shape",
    "rep2_loud",
    "rephalf_loud",
)
#: Prominence of the burst-rate line (over the spectrum's median) below which there is no
#: rhythm (quality 0), and from which it is fully trusted.
PROMINENCE_NONE, PROMINENCE_FULL = 2.0, 3.0
#: An answer at about half or twice the last one published (within this share) is held back
#: (None) until it has persisted this many seconds: breathing does not halve or double from
#: one second to the next, while a window spanning a glitch (a dropped stretch, a recording
#: looped by a file device, a cough) can tip the octave decision for a few seconds.
OCTAVE_JUMP_TOL, OCTAVE_HOLD_S = 0.15, 8
#: The last published rate is forgotten after this long without an answer.
OCTAVE_MEMORY_S = 20.0
#: Heart-rhythm guard: a breathing rate within this of HR or HR/2 is the heart, not breath.
HEART_GUARD_BPM = 1.5

COEF_PATH = Path(__file__).with_name("breath_octave.json")


@lru_cache(maxsize=4)
def load_octave_model(path: str = str(COEF_PATH)) -> dict[str, Any]:
    """The shipped octave classifier: feature means/scales, weights (3 x 12), biases (3)."""
    with open(path, encoding="utf-8") as f:
        model: dict[str, Any] = json.load(f)
    if tuple(model["features"]) != FEATURES or list(model["octaves"]) != list(OCTAVES):
        raise ValueError(f"{path}: features or classes differ from this estimator's")
    return model


def _band_spectra(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and unit-power spectra of each column of ``e`` after a quadratic detrend."""
    n = len(e)
    t = np.linspace(-1.0, 1.0, n)
    basis = np.stack((np.ones(n), t, t * t), axis=1)
    coef, *_ = np.linalg.lstsq(basis, e, rcond=None)
    y = (e - basis @ coef) * np.hanning(n)[:, None]
    spec = np.abs(np.fft.rfft(y, NFFT, axis=0)) ** 2
    spec /= spec.sum(axis=0, keepdims=True) + 1e-12
    return np.fft.rfftfreq(NFFT, 1.0 / BREATH_FEATURE_FS_HZ), spec.T


def _at(freqs: np.ndarray, spec: np.ndarray, f_hz: float) -> float:
    tol = HARMONIC_TOL_BPM / 60.0
    m = (freqs >= f_hz - tol) & (freqs <= f_hz + tol)
    return float(spec[m].max()) if m.any() else 0.0


def _repeat(x: np.ndarray, lag: float) -> float:
    """Least mean squared difference of ``x`` and itself shifted by ``lag`` (+-10 %)."""
    lo = max(1, int(lag * (1 - LAG_TOL)))
    hi = int(np.ceil(lag * (1 + LAG_TOL)))
    best = np.inf
    for k in range(lo, hi + 1):
        if k >= len(x) - 30:  # at least 3 s of overlap
            break
        best = min(best, float(np.mean((x[:-k] - x[k:]) ** 2)))
    return best


def _zscore(x: np.ndarray) -> np.ndarray:
    return np.asarray((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9))


def octave_features(e: np.ndarray) -> tuple[float, np.ndarray] | None:
    """(burst rate in breaths/min, ``FEATURES``) of a window of ``BreathBands`` features."""
    if len(e) < 100 or not np.all(np.isfinite(e)) or float(np.std(e)) < 1e-9:
        return None
    shape = e - e.mean(axis=1, keepdims=True)
    loud = e.mean(axis=1, keepdims=True)
    freqs, bands = _band_spectra(e)
    spec = bands.mean(axis=0)
    rng = (freqs >= RR_MIN_BPM / 60.0) & (freqs <= RR_MAX_BPM / 60.0)
    fb = float(freqs[int(np.argmax(np.where(rng, spec, -1.0)))])
    peak = _at(freqs, spec, fb)
    if peak <= 0:
        return None
    _, sshape = _band_spectra(shape)
    sshape_mean = sshape.mean(axis=0)
    _, sloud = _band_spectra(loud)
    period = BREATH_FEATURE_FS_HZ / fb  # burst period in feature samples
    reps = []
    for x in (_zscore(e), _zscore(shape), _zscore(loud)):
        one = _repeat(x, period) + 1e-9
        two = _repeat(x, 2 * period) if 2 * period < len(x) - 60 else one
        half = _repeat(x, period / 2) if period >= 4 else 2 * one
        reps += [two / one, half / one]
    feats = [
        _at(freqs, spec, fb / 2) / peak,
        _at(freqs, spec, 1.5 * fb) / peak,
        _at(freqs, spec, 2 * fb) / peak,
        peak / (float(np.median(spec[rng])) + 1e-12),
        _at(freqs, sshape_mean, fb / 2) / (_at(freqs, sshape_mean, fb) + 1e-12),
        _at(freqs, sloud[0], fb / 2) / (_at(freqs, sloud[0], fb) + 1e-12),
        *reps,
    ]
    return 60.0 * fb, np.array(feats)


def transform(feats: np.ndarray) -> np.ndarray:
    """What the classifier sees: logs of the spectral ratios (they span decades), the
    repetition ratios as they are. Works on one vector or a (n, 12) matrix."""
    f = np.asarray(feats, dtype=np.float64)
    out = np.array(f)  # a copy
    out[..., :6] = np.log(f[..., :6] + 1e-3)
    return out


def octave_probabilities(feats: np.ndarray, model: dict[str, Any]) -> np.ndarray:
    """Probabilities of ``OCTAVES`` for one feature vector (multinomial logistic)."""
    z = (transform(feats) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    logits = np.asarray(model["weights"]) @ z + np.asarray(model["bias"])
    p = np.exp(logits - logits.max())
    return np.asarray(p / p.sum())


def breath_rate(
    e: np.ndarray, model: dict[str, Any] | None = None
) -> tuple[float | None, float, dict[str, float]]:
    """(breaths/min or None, quality in [0, 1], details) from a window of band features."""
    got = octave_features(e)
    if got is None:
        return None, 0.0, {}
    fb, feats = got
    probs = octave_probabilities(feats, model or load_octave_model())
    rates = np.array(OCTAVES) * fb
    valid = (rates >= RR_MIN_BPM) & (rates <= RR_MAX_BPM)
    probs = np.where(valid, probs, 0.0)
    if probs.sum() <= 0:
        return None, 0.0, {}
    probs = probs / probs.sum()
    i = int(np.argmax(probs))
    # a line that barely stands out of the spectrum is not a rhythm: white noise gives a
    # prominence of 1.5-1.7, breath sounds 3-30 (1st percentile 2.9 on RRuJO)
    salience = float(
        np.clip(
            np.log(feats[3] / PROMINENCE_NONE) / np.log(PROMINENCE_FULL / PROMINENCE_NONE), 0, 1
        )
    )
    quality = float(probs[i]) * salience
    detail = {"burst_rate": round(fb, 2), "p_octave": round(float(probs[i]), 3)}
    return float(rates[i]), quality, detail


class BreathSoundsRR:
    """Respiratory rate from breath sounds; see the module docstring.

    ``heart`` (optional): an object with ``recent_hr()`` -> bpm or None (the heart-sound
    estimator on the same audio); a rate on its rhythm is refused.
    """

    quantity = Quantity.RR

    def __init__(
        self,
        role: str = "audio",
        *,
        name: str = "breath_sounds",
        window_s: float = WINDOW_S,
        min_quality: float = 0.6,
        heart: Any = None,
        model: dict[str, Any] | None = None,
    ) -> None:
        self.role, self.name = Role(role), name
        self.fs_hz = AUDIO_FS_HZ
        self.window_s, self.min_quality = window_s, min_quality
        self.heart = heart
        self.model = model or load_octave_model()
        self._bands = BreathBands()
        n = int(round(window_s * BREATH_FEATURE_FS_HZ))
        self._feat = RingBuffer(n * len(BREATH_BANDS))
        self._gap = RingBuffer(n, fill=1.0)
        self.last_quality = 0.0
        self._burst: float | None = None
        self._published: tuple[float, float] | None = None  # (t_s, rate) of the last answer
        self._jump_since: float | None = None  # when an octave jump started being seen

    def watch(self, others: list[Any]) -> None:
        """Refuse the heart's rhythm: watch the heart-sound estimator on the same audio."""
        self.heart = next((o for o in others if hasattr(o, "recent_hr")), self.heart)

    def push(self, x: np.ndarray) -> None:
        feats, gaps = self._bands.push(x)
        if len(feats):
            self._feat.extend(feats.reshape(-1))
            self._gap.extend(gaps.astype(np.float64))

    def recent_burst_rate(self) -> float | None:
        """The burst rate of breath sounds (per minute) at the last estimate, if any."""
        return self._burst

    def features(self) -> np.ndarray:
        """The window of band features, oldest first, (frames, bands)."""
        return self._feat.latest().reshape(-1, len(BREATH_BANDS))

    def estimate(self, t_s: float) -> Estimate:
        none = Estimate(None, 0.0, self.name, self.role, self.quantity)
        e = self.features()
        if len(e) < MIN_WINDOW_S * BREATH_FEATURE_FS_HZ:
            return none
        if (self._gap.latest() > 0.5).mean() > 0.1:
            return none
        rr, quality, detail = breath_rate(e, self.model)
        self.last_quality = quality
        self._burst = detail.get("burst_rate") if rr is not None else None
        if rr is None or quality < self.min_quality:
            return Estimate(None, quality, self.name, self.role, self.quantity)
        hr = self.heart.recent_hr() if self.heart is not None else None
        if hr is not None and min(abs(rr - hr), abs(2 * rr - hr)) < HEART_GUARD_BPM:
            return Estimate(None, 0.0, self.name, self.role, self.quantity)
        if self._octave_jump(t_s, rr):
            return Estimate(None, quality, self.name, self.role, self.quantity)
        self._published = (t_s, rr)
        return Estimate(rr, quality, self.name, self.role, self.quantity)

    def _octave_jump(self, t_s: float, rr: float) -> bool:
        """True while ``rr`` is a recent jump to about half or twice the last answer."""
        if self._published is None or t_s - self._published[0] > OCTAVE_MEMORY_S:
            self._jump_since = None
            return False
        ratio = rr / self._published[1]
        if not any(abs(ratio - k) < OCTAVE_JUMP_TOL * k for k in (0.5, 2.0)):
            self._jump_since = None
            return False
        if self._jump_since is None:
            self._jump_since = t_s
        return t_s - self._jump_since < OCTAVE_HOLD_S
