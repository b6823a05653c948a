"""Ventricular fibrillation/flutter (VF) and ventricular tachycardia (VT) as rhythms, per ECG lead.

One ``VentricularRhythm`` per lead is fed that lead's samples at ``CARDIAC_FS_HZ`` (125 Hz;
NaN marks a gap) with ``push`` and asked once per second of signal for a ``RhythmJudgement``
with ``judge(t_s)``: how much the last 4 s look like VF or flutter (``vf_score``), like a
ventricular tachycardia (``vt_score``), and how analysable the lead is (``quality``).

Why a rhythm detector beside the beat stream: in VF there are no beats to detect. The
waveform is a quasi-sinusoidal oscillation at 3-10 Hz (flutter: a regular sine-like wave at
about 4-5 Hz, 240-300/min) with no isoelectric line, so a QRS detector either finds nothing
or finds a "tachycardia" of noise. Published VF detectors therefore describe the waveform
itself; this module computes a set of them on a causally band-passed (1-30 Hz) window, each
written here from its published definition:

- ``tcsc``: threshold crossing sample count (Arafat, Chowdhury, Hasan 2009): share of the
  cosine-tapered, max-normalised window above 0.2. High in VF (no flat baseline).
- ``mav``: mean absolute value of the max-normalised window (after Anas, Lee, Hasan 2010).
- ``leakage``: the VF filter (Kuo and Dillman 1978): a notch tuned to the window's mean
  half-period lets a sinusoid through least; VF leaks little (< 0.406 in Amann et al. 2005).
- ``m_moment``, ``a1``, ``a2``, ``a3``, ``peak_hz``: the spectral algorithm of Barro et al.
  (1989): the normalised first spectral moment and the shares of the amplitude spectrum
  below half the peak frequency F, within 0.7-1.4 F (VF's concentration) and at the
  harmonics 2F-8F (sharp QRS complexes put energy there, VF does not).
- ``psr``: phase-space reconstruction (Amann, Tratnig, Unterkofler 2007): share of a 40x40
  grid visited by (x(t), x(t - 0.5 s)); an organised rhythm retraces one loop, VF fills it.
- ``tc_rate_hz``: threshold crossings per second (after Thakor, Zhu, Pan 1990, whose TCI is
  the mean interval between crossings of 20 % of the maximum).
- ``count1``, ``count2``, ``count3``: the sample counts of Jekova and Krasteva (2004) on the
  band-passed signal, as shares of the window.
- ``kurtosis``, ``hf_share`` (power above 12 Hz: narrow QRS complexes have it, VF and the
  broad complexes of VT do not), ``spectral_entropy``, ``acf_peak`` and ``acf_lag_s`` (how
  regular the rhythm is and at which period), ``zc_rate_hz`` (zero crossings per second),
  ``amp_ratio`` (smallest over largest 1 s peak-to-peak: VF waxes and wanes).

Every feature is scale-invariant: a lead's gain, units and polarity do not matter (a board
may send ADC counts). A small model (``RhythmModel``: a multinomial logistic regression or a
one-hidden-layer MLP stored as JSON, fitted by ``convert/vf.py`` with record-held-out
cross-validation, ``bench/vfdb.py``) maps the features to probabilities of VF/flutter, VT and
anything else.

Quality (0-1) judges whether the lead can be read at all, from the raw and filtered window:
gaps (NaN), a flat line (lead off: peak-to-peak a small share of the lead's recent typical),
saturation (samples stuck at one extreme), mains/muscle noise (power above 35 Hz against
1-30 Hz) and artefact bursts (far larger than the lead's typical swing). Scores are computed
whatever the quality; the caller sets low-quality leads aside (below ``MIN_QUALITY``).

Causal and chunk-size invariant: filters carry their state across ``push`` calls, and
``judge(t_s)`` reads the window that ends at ``t_s`` exactly, whatever was pushed after it
(up to ``SLACK_S``).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from device.dsp.buffers import RingBuffer
from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps
from device.dsp.stats import median
from device.errors import UserError
from device.roles import CARDIAC_FS_HZ

#: The window judged: 4 s, the segment length of the VF-detection literature on vfdb
#: (AHA-style evaluations use 4-8 s) and of the alarm's "for >= 4 s".
WINDOW_S = 4.0
#: How far behind the newest pushed sample ``judge`` may look (the core may push a little
#: ahead of the second it judges).
SLACK_S = 10.0
#: ECG band: 1 Hz removes baseline wander, 30 Hz keeps QRS and VF (3-10 Hz) and drops mains
#: and most muscle noise (the preprocessing band of Amann et al. 2005).
BAND_HZ = (1.0, 30.0)
#: Above 35 Hz an ECG has little besides the steepest parts of a QRS; muscle (EMG) and mains
#: noise live there. The pipeline's resampler passes up to 50 Hz at 125 Hz.
NOISE_HZ = 35.0
#: Leads below this quality should be set aside by the caller.
MIN_QUALITY = 0.5
#: Recent good windows whose peak-to-peak defines a lead's typical swing (1 a second).
TYPICAL_HISTORY = 60
#: Version of the feature definitions: bumped whenever a feature, filter or window changes, so
#: that cached training tables and fitted models are rebuilt.
FEATURES_VERSION = 1
#: The classes a model's probabilities are over, in this order.
CLASSES = ("vf", "vt", "other")

# -- quality limits: each physiological or technical, none read off a record ------------------
#: Gaps: a window more than 10 % missing is not judged (``device.features.MAX_GAP_SHARE``).
GAP_FULL, GAP_NONE = 0.02, 0.10
#: Flat: an open lead keeps ~1 % of the ECG's swing (amplifier noise); fine VF keeps > 5 %.
FLAT_NONE, FLAT_FULL = 0.02, 0.05
#: Saturation: share of samples at the window's extremes; a sinusoid spends < 3 % within
#: 0.2 % of its peak-to-peak of an extreme, a clipped or railed front end most of the window.
SAT_FULL, SAT_NONE = 0.08, 0.20
#: Noise: power above 35 Hz over power at 1-30 Hz; a clean QRS gives a few %, muscle noise
#: tens of % (graded between these).
NOISE_FULL, NOISE_NONE = 0.15, 0.50
#: Artefact: band peak-to-peak over the lead's typical; VF and VT swing about as far as the
#: QRS complexes they replace (< 2-3x), a tug on a cable many times more.
BURST_FULL, BURST_NONE = 4.0, 10.0


@dataclass(frozen=True)
class RhythmFeatures:
    """The published VF features of one 4 s window (definitions in the module docstring)."""

    tcsc: float
    mav: float
    leakage: float
    half_period_s: float
    m_moment: float
    a1: float
    a2: float
    a3: float
    peak_hz: float
    psr: float
    tc_rate_hz: float
    count1: float
    count2: float
    count3: float
    kurtosis: float
    hf_share: float
    spectral_entropy: float
    acf_peak: float
    acf_lag_s: float
    zc_rate_hz: float
    amp_ratio: float

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in FEATURE_NAMES], dtype=np.float64)


FEATURE_NAMES = tuple(f.name for f in fields(RhythmFeatures))


@dataclass(frozen=True)
class RhythmJudgement:
    """One lead's rhythm at ``t_s`` (the end of the 4 s window judged).

    - ``vf_score``: 0-1, how much the window looks like VF or flutter;
    - ``vt_score``: 0-1, how much it looks like a ventricular tachycardia (a regular, broad,
      fast rhythm: rhythm-level evidence beside the beat classifier's run of V beats);
    - ``quality``: 0-1, how analysable the lead is (below ``MIN_QUALITY``: set it aside);
    - ``rate_per_min``: the dominant rate of the waveform (VT or a normal rhythm: the beat
      rate; VF: its oscillation frequency x 60), None when there is nothing to read;
    - ``detail``: a short reason, e.g. ``"ok"``, ``"flat"``, ``"gap 40 %"``, ``"noise"``;
    - ``features``: what the scores were computed from (None while the window fills up or
      when the lead is flat).
    """

    t_s: float
    vf_score: float
    vt_score: float
    quality: float
    rate_per_min: float | None
    detail: str
    features: RhythmFeatures | None = None


# -- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RhythmModel:
    """Standardised features -> (optional hidden ReLU layer) -> softmax over ``CLASSES``.

    ``features`` names the inputs (a subset of ``FEATURE_NAMES``, each optionally
    ``log:NAME`` for log(1e-3 + value)); ``mean``/``scale`` standardise them (clipped to +-6).
    """

    name: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    classes: tuple[str, ...]
    meta: dict[str, Any]
    #: which raw feature feeds each input, and which inputs are logarithms (set once)
    _cols: np.ndarray = field(init=False, repr=False, compare=False)
    _logs: np.ndarray = field(init=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> RhythmModel:
        try:
            feats = tuple(str(f) for f in data["features"])
            for f in feats:
                if f.removeprefix("log:") not in FEATURE_NAMES:
                    raise ValueError(f"unknown feature {f!r}")
            classes = tuple(str(c) for c in data["classes"])
            if classes != CLASSES:
                raise ValueError(f"classes {classes} are not {CLASSES}")
            mean = np.asarray(data["mean"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
            layers = tuple(
                (np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
                for w, b in data["layers"]
            )
            n = len(feats)
            if mean.shape != (n,) or scale.shape != (n,) or not layers:
                raise ValueError("mean/scale/layers do not match the features")
            for w, b in layers:
                if w.ndim != 2 or w.shape[0] != n or b.shape != (w.shape[1],):
                    raise ValueError(f"layer of shape {w.shape} does not fit {n} inputs")
                n = w.shape[1]
            if n != len(classes):
                raise ValueError(f"the last layer has {n} outputs, not {len(classes)}")
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"{source}: not a rhythm model ({e})", "refit it with 'bedside train vf'"
            ) from None
        meta = {k: v for k, v in data.items() if k not in ("mean", "scale", "layers")}
        return cls(str(data.get("name", source)), feats, mean, scale, layers, classes, meta)

    @classmethod
    def load(cls, path: Path) -> RhythmModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: unreadable rhythm model ({e})", "reinstall it") from None
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.meta,
            "name": self.name,
            "features": list(self.features),
            "classes": list(self.classes),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [[w.tolist(), b.tolist()] for w, b in self.layers],
        }

    def __post_init__(self) -> None:
        # which raw feature feeds each input, and which inputs are logarithms (computed once:
        # the detector runs the model every second on every lead)
        cols = [FEATURE_NAMES.index(f.removeprefix("log:")) for f in self.features]
        object.__setattr__(self, "_cols", np.asarray(cols, dtype=np.int64))
        logs = [f.startswith("log:") for f in self.features]
        object.__setattr__(self, "_logs", np.asarray(logs, dtype=bool))

    def inputs(self, feats: np.ndarray) -> np.ndarray:
        """Raw feature rows (n, len(FEATURE_NAMES)) -> standardised model inputs."""
        x = np.array(np.atleast_2d(feats)[:, self._cols], dtype=np.float64)
        logs = self._logs
        x[:, logs] = np.log(1e-3 + np.maximum(x[:, logs], 0.0))
        return np.asarray(np.clip((x - self.mean) / self.scale, -6.0, 6.0))

    def probabilities_one(self, vec: np.ndarray) -> np.ndarray:
        """``probabilities`` of one feature vector (the detector's per-second path: the same
        arithmetic on 1-D arrays, without the 2-D bookkeeping)."""
        x = vec[self._cols]
        logs = self._logs
        x[logs] = np.log(1e-3 + np.maximum(x[logs], 0.0))
        h = np.minimum(np.maximum((x - self.mean) / self.scale, -6.0), 6.0)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        e = np.exp(h - h.max())
        return np.asarray(e / e.sum())

    def probabilities(self, feats: np.ndarray) -> np.ndarray:
        """Raw feature rows (n, len(FEATURE_NAMES)) -> class probabilities (n, 3)."""
        h = self.inputs(feats)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        e = np.exp(h - h.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))


#: The shipped model, beside this module (``convert/vf.py`` writes it).
SHIPPED_MODEL = Path(__file__).with_name("vf_model.json")


@lru_cache(maxsize=4)
def shipped_model(path: Path = SHIPPED_MODEL) -> RhythmModel:
    return RhythmModel.load(path)


# -- the features --------------------------------------------------------------------------------
class _Tables:
    """Per-rate constants: window taper, FFT bins and masks."""

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self.n = int(round(WINDOW_S * fs))
        n = self.n
        # Arafat's TCSC tapers each end over 0.25 s with a cosine
        k = int(round(0.25 * fs))
        taper = np.ones(n)
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(k) / k))
        taper[:k], taper[n - k :] = ramp, ramp[::-1]
        self.taper = taper
        self.nfft = 1 << int(math.ceil(math.log2(n)))
        self.hamming = np.hamming(n)
        self.df = fs / self.nfft
        self.freqs = np.arange(self.nfft // 2 + 1) * self.df
        self.lo = int(math.ceil(0.5 / self.df))  # 0.5 Hz
        self.peak_hi = int(math.floor(9.0 / self.df))  # VF and flutter peak below 9 Hz
        self.top = int(math.floor(min(50.0, 0.4 * fs) / self.df))  # what the resampler passes
        self.hf = int(math.ceil(12.0 / self.df))
        self.ent_hi = int(math.floor(30.0 / self.df))
        # autocorrelation (FFT of twice the length, so it is linear): lags 0.25-1.5 s
        # (40-240 beats/min)
        self.nfft2 = 2 * self.nfft
        self.lag_lo, self.lag_hi = int(round(0.25 * fs)), int(round(1.5 * fs))
        # unbiased autocorrelation at those lags, scaled so lag 0 reads 1: n / (n - lag)
        self.unbias = n / (n - np.arange(self.lag_lo, self.lag_hi + 1, dtype=np.float64))
        self.tau = int(round(0.5 * fs))  # phase-space delay (Amann 2007)
        self.sub = int(round(fs))  # 1 s sub-windows


@lru_cache(maxsize=4)
def _tables(fs: float) -> _Tables:
    return _Tables(fs)


def window_features(b: np.ndarray, fs: float = CARDIAC_FS_HZ) -> RhythmFeatures | None:
    """The features of one band-passed window (``WINDOW_S`` at ``fs``); None if it is flat."""
    v = feature_vector(b, fs)
    return None if v is None else RhythmFeatures(*v.tolist())


def feature_vector(b: np.ndarray, fs: float = CARDIAC_FS_HZ) -> np.ndarray | None:
    """``window_features`` as an array in ``FEATURE_NAMES`` order (what the model reads)."""
    t = _tables(fs)
    b = np.asarray(b, dtype=np.float64)
    n = len(b)
    a = np.abs(b)
    amax = float(a.max())
    # a held gap or a flat lead leaves only the filters' decaying ringing: below 1e-50 in any
    # unit there is no signal, and powers of it would underflow
    if not 1e-50 < amax < 1e50 or n != t.n:
        return None
    dur = n / fs
    # TCSC: tapered, normalised, share above 0.2
    y = np.abs(b * t.taper)
    tcsc = float(np.count_nonzero(y > 0.2 * float(y.max()))) / n
    mean_a = float(a.sum()) / n
    mav = mean_a / amax
    # VF filter: half-period from the mean slope, then the leakage of a notch at that period
    slope = float(np.abs(np.diff(b)).sum())
    half = int(math.floor(math.pi * float(a.sum()) / max(slope, 1e-12) + 0.5))
    half = min(max(half, 1), n // 2)
    num = float(np.abs(b[half:] + b[:-half]).sum())
    den = float((a[half:] + a[:-half]).sum())
    leakage = num / den if den > 0 else 1.0
    # spectral algorithm (Barro 1989)
    spec = np.abs(np.fft.rfft(b * t.hamming, t.nfft))
    j_peak = t.lo + int(np.argmax(spec[t.lo : t.peak_hi + 1]))
    f_peak = float(t.freqs[j_peak])
    amp = np.where(spec >= 0.05 * spec[j_peak], spec, 0.0)
    j_max = min(int(math.floor(20.0 * f_peak / t.df)), t.top)
    a_band = amp[t.lo : j_max + 1]
    total = float(a_band.sum())
    m_moment = float((t.freqs[1 : j_max + 1] * amp[1 : j_max + 1]).sum()) / max(
        float(amp[1 : j_max + 1].sum()) * f_peak, 1e-12
    )
    csum = np.concatenate(([0.0], np.cumsum(amp)))

    def band(f_lo: float, f_hi: float) -> float:
        i = max(int(math.ceil(f_lo / t.df)), t.lo)
        k = min(int(math.floor(f_hi / t.df)), j_max)
        return float(csum[k + 1] - csum[i]) if k >= i else 0.0

    a1 = band(0.5, f_peak / 2.0) / total
    a2 = band(0.7 * f_peak, 1.4 * f_peak) / total
    a3 = sum(band(h * f_peak - 0.6, h * f_peak + 0.6) for h in range(2, 9)) / total
    power = spec * spec
    p_all = float(power[t.lo : t.top + 1].sum())
    hf_share = float(power[t.hf : t.top + 1].sum()) / max(p_all, 1e-300)
    p = power[t.lo : t.ent_hi + 1]
    p = p / max(float(p.sum()), 1e-300)
    nz = p[p > 0]
    spectral_entropy = float(-(nz * np.log(nz)).sum()) / math.log(len(p))
    # regularity: the autocorrelation's highest peak at 0.25-1.5 s
    z = b - float(b.sum()) / n
    r = np.fft.irfft(np.abs(np.fft.rfft(z, t.nfft2)) ** 2, t.nfft2)[: t.lag_hi + 1]
    r0 = float(r[0])
    seg = r[t.lag_lo : t.lag_hi + 1] * (t.unbias / max(r0, 1e-300))
    j = int(np.argmax(seg))
    acf_peak, acf_lag_s = float(seg[j]), (t.lag_lo + j) / fs
    # phase space: share of a 40 x 40 grid visited
    lo, hi = float(b.min()), float(b.max())
    q = np.minimum(((b - lo) / (hi - lo) * 40.0).astype(np.int64), 39)
    psr = float(np.count_nonzero(np.bincount(q[t.tau :] * 40 + q[: -t.tau], minlength=1600)))
    psr /= 1600.0
    # threshold and zero crossings per second
    above = a > 0.2 * amax
    tc_rate = float(np.count_nonzero(above[1:] & ~above[:-1])) / dur
    sign = b > 0
    zc_rate = float(np.count_nonzero(sign[1:] != sign[:-1])) / dur
    # Jekova's counts
    md = float(np.abs(a - mean_a).sum()) / n
    count1 = float(np.count_nonzero(a >= 0.5 * amax)) / n
    count2 = float(np.count_nonzero(a >= mean_a)) / n
    count3 = float(np.count_nonzero(np.abs(a - mean_a) <= md)) / n
    z2 = z * z  # (z**4 is a generic power in numpy, ten times dearer than two products)
    var = float(z2.sum()) / n
    kurt = float((z2 * z2).sum()) / n / max(var * var, 1e-300)
    subs = b[: (n // t.sub) * t.sub].reshape(-1, t.sub)
    ptp = subs.max(axis=1) - subs.min(axis=1)
    amp_ratio = float(ptp.min()) / max(float(ptp.max()), 1e-300)
    return np.array(
        (tcsc, mav, leakage, half / fs, m_moment, a1, a2, a3, f_peak, psr, tc_rate, count1,
         count2, count3, kurt, hf_share, spectral_entropy, acf_peak, acf_lag_s, zc_rate,
         amp_ratio)
    )  # fmt: skip


def _ramp_down(v: float, full: float, none: float) -> float:
    """1 at or below ``full``, 0 at or above ``none``, linear between."""
    return float(min(max((none - v) / (none - full), 0.0), 1.0))


# -- the detector --------------------------------------------------------------------------------
class VentricularRhythm:
    """VF/flutter and VT evidence on one ECG lead (see the module docstring).

    ``model``: a ``RhythmModel`` (default: the shipped one); ``fs_hz``: the rate of the
    pushed samples (the core's ``CARDIAC_FS_HZ``).
    """

    def __init__(self, model: RhythmModel | None = None, fs_hz: float = CARDIAC_FS_HZ) -> None:
        self.fs_hz = float(fs_hz)
        self.model = model if model is not None else shipped_model()
        self._t = _tables(self.fs_hz)
        n = self._t.n + int(round(SLACK_S * self.fs_hz))
        self._hold = HoldGaps()
        self._band = CausalFilter.butter(2, BAND_HZ, self.fs_hz, "bandpass")
        self._noise = CausalFilter.butter(2, NOISE_HZ, self.fs_hz, "highpass")
        self._raw = RingBuffer(n)
        self._b = RingBuffer(n)
        self._hf = RingBuffer(n)
        self._gap = RingBuffer(n, fill=1.0)
        self._typical: deque[float] = deque(maxlen=TYPICAL_HISTORY)

    @property
    def samples_seen(self) -> int:
        return self._raw.total

    def push(self, x: np.ndarray) -> None:
        """Append samples at ``fs_hz`` (any chunk size; NaN marks a gap)."""
        held, bad = self._hold(np.asarray(x, dtype=np.float64).reshape(-1))
        if held.size == 0:
            return
        self._raw.extend(held)
        self._b.extend(self._band(held))
        self._hf.extend(self._noise(held))
        self._gap.extend(bad.astype(np.float64))

    def _window(self, buf: RingBuffer, lag: int) -> np.ndarray:
        w = buf.latest(self._t.n + lag)
        return w[: self._t.n]

    def judge(self, t_s: float) -> RhythmJudgement:
        """The rhythm of the ``WINDOW_S`` ending at signal time ``t_s`` (seconds since the
        first sample pushed); call it once per second, in order."""
        end = int(round(t_s * self.fs_hz))
        total = self._raw.total
        lag = total - end
        if lag < 0:
            raise ValueError(f"judge({t_s}): only {total / self.fs_hz:.3f} s were pushed")
        if lag > int(round(SLACK_S * self.fs_hz)):
            raise ValueError(f"judge({t_s}): more than {SLACK_S} s behind the samples pushed")
        if end < self._t.n:
            return RhythmJudgement(t_s, 0.0, 0.0, 0.0, None, "starting")
        b = self._window(self._b, lag)
        raw = self._window(self._raw, lag)
        gap_share = float(self._window(self._gap, lag).sum()) / self._t.n
        quality, detail, ptp = self._quality(b, raw, self._window(self._hf, lag), gap_share)
        vec = feature_vector(b, self.fs_hz)
        if vec is None:
            return RhythmJudgement(t_s, 0.0, 0.0, 0.0, None, "flat")
        feats = RhythmFeatures(*vec.tolist())
        probs = self.model.probabilities_one(vec)
        # an organised rhythm repeats at its beat interval; VF's rate is its oscillation
        if feats.acf_peak >= 0.3 and probs[0] < 0.5:
            rate: float | None = 60.0 / feats.acf_lag_s
        else:
            rate = 60.0 * feats.peak_hz
        return RhythmJudgement(t_s, float(probs[0]), float(probs[1]), quality, rate, detail, feats)

    def _quality(
        self, b: np.ndarray, raw: np.ndarray, hf: np.ndarray, gap_share: float
    ) -> tuple[float, str, float]:
        """(quality, detail, band peak-to-peak) of one window (limits at the module's top)."""
        ptp = float(b.max() - b.min())
        factors: list[tuple[float, str]] = [
            (_ramp_down(gap_share, GAP_FULL, GAP_NONE), f"gap {100 * gap_share:.0f} %")
        ]
        top, bottom = float(raw.max()), float(raw.min())
        span = top - bottom
        if span <= 0.0 or ptp <= 0.0:
            return 0.0, "flat", ptp
        near = 0.002 * span
        at_rail = max(
            int(np.count_nonzero(raw >= top - near)), int(np.count_nonzero(raw <= bottom + near))
        ) / len(raw)
        factors.append((_ramp_down(at_rail, SAT_FULL, SAT_NONE), "saturated"))
        # a lead that goes flat within the window: a 1 s stretch with almost no swing
        subs = b[: (len(b) // self._t.sub) * self._t.sub].reshape(-1, self._t.sub)
        sub_ptp = subs.max(axis=1) - subs.min(axis=1)
        flat_subs = float(np.count_nonzero(sub_ptp < FLAT_NONE * ptp)) / len(sub_ptp)
        factors.append((1.0 - flat_subs, "flat"))
        noise = float((hf * hf).sum()) / max(float((b * b).sum()), 1e-300)
        factors.append((_ramp_down(noise, NOISE_FULL, NOISE_NONE), "noise"))
        typical = median(self._typical) if len(self._typical) >= 5 else 0.0
        if typical > 0.0:
            rel = ptp / typical
            factors.append(
                (min(max((rel - FLAT_NONE) / (FLAT_FULL - FLAT_NONE), 0.0), 1.0), "flat")
            )
            factors.append((_ramp_down(rel, BURST_FULL, BURST_NONE), "artefact"))
        quality, why = min(factors, key=lambda f: f[0])
        technical = min(f[0] for f in factors[:4])
        if technical >= MIN_QUALITY and gap_share < GAP_NONE:
            self._typical.append(ptp)
        return quality, ("ok" if quality >= MIN_QUALITY else why), ptp
