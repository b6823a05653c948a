"""Causal model inputs: the windows a learned estimator sees, defined once for training and serving.

A *feature spec* names the input role, the causal filters applied at the role's internal
rate, an optional decimation, the window length and the per-window normalisation. The
trainer (``convert``) and the device's model estimator (``device.estimators.model``) both
build a :class:`FeatureStream` from the same spec, so a window on the ward is computed by
exactly the code that computed the training windows (no training/serving skew).

The specs are plain data and are written into each model's manifest; the device refuses a
model whose manifest spec differs from the one it would compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from device.dsp.buffers import RingBuffer
from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps
from device.dsp.quality import FlatLine
from device.dsp.resample import Decimator
from device.dsp.stats import lag_products
from device.roles import CARDIAC_FS_HZ, RESP_FS_HZ

#: Version of the window definition; bumped whenever a filter, rate or normalisation changes,
#: so that a model trained on older windows is refused rather than fed different inputs.
FEATURES_VERSION = 1

#: A window is unusable when more than this share of it was gap (NaN) input.
MAX_GAP_SHARE = 0.1


@dataclass(frozen=True)
class Channel:
    """One input channel of a model: a causal filter chain on the role's samples.

    ``kind`` is ``band`` (the band-passed signal itself), ``envelope`` (the power of the
    band-passed signal, low-passed: the pulse amplitude, which breathing modulates) or
    ``upslope`` (the rising slope of the band-passed signal, negative slopes set to 0).
    """

    kind: str
    band_hz: tuple[float, float]
    envelope_lp_hz: float = 0.0
    post_band_hz: tuple[float, float] | None = None


@dataclass(frozen=True)
class FeatureSpec:
    """What a model is fed: role, rates, channels, window, normalisation."""

    name: str
    role: str
    input_fs_hz: float  # the internal rate the pipeline delivers this role at
    decimate: int  # keep every n-th filtered sample
    window_s: float
    hop_s: float  # one estimate per second
    channels: tuple[Channel, ...]
    normalisation: (
        str  # "robust_range" (median 0, 5-95 % spread 1) or "zscore", per window and channel
    )
    #: "none": the model sees the window itself; "acf": its autocorrelation at lags 0..acf_max_lag_s
    transform: str = "none"
    acf_max_lag_s: float = 0.0
    version: int = FEATURES_VERSION

    @property
    def fs_hz(self) -> float:
        """Rate of the model's input samples."""
        return self.input_fs_hz / self.decimate

    @property
    def n_samples(self) -> int:
        return int(round(self.window_s * self.fs_hz))

    @property
    def shape(self) -> tuple[int, int]:
        """The model's input shape."""
        if self.transform == "acf":
            return (int(round(self.acf_max_lag_s * self.fs_hz)), len(self.channels))
        return (self.n_samples, len(self.channels))

    def to_manifest(self) -> dict[str, Any]:
        d = asdict(self)
        d["fs_hz"] = self.fs_hz
        d["n_samples"] = self.n_samples
        d["model_input_shape"] = list(self.shape)
        return d


# Pulse waves: fundamental 0.5-3.7 Hz (30-220 bpm) with harmonics; 0.5-8 Hz keeps the systolic
# upstroke and removes the respiratory baseline (the same band the DSP beat detector uses).
_PPG_PULSE = Channel("band", (0.5, 8.0))
# ECG: 1-30 Hz keeps QRS (8-25 Hz) and the P/T waves' timing, removes wander and mains hum.
_ECG_BAND = Channel("band", (1.0, 30.0))
# The systolic upstroke is the one steep rise per beat; a dicrotic wave's rise is far smaller.
# The autocorrelation of rising slopes therefore peaks at the beat interval, not half of it.
_PPG_UPSLOPE = Channel("upslope", (0.5, 8.0))
# Breathing at 5-70 breaths/min is 0.08-1.2 Hz. The PPG carries it three ways: baseline
# (venous return and intrathoracic pressure, "RIIV"), pulse amplitude ("RIAV") and rate
# (sinus arrhythmia). The baseline is the PPG band-passed at 0.08-1 Hz; the amplitude is the
# power of the 0.5-8 Hz pulse band, low-passed at 1 Hz and band-passed like the baseline.
_PPG_BASELINE = Channel("band", (0.08, 1.0))
_PPG_AMPLITUDE = Channel("envelope", (0.5, 8.0), envelope_lp_hz=1.0, post_band_hz=(0.08, 1.0))
_RESP_BAND = Channel("band", (0.08, 1.0))

#: Breathing is below 1.2 Hz: 5 Hz carries it with margin, and both internal rates
#: (125 Hz cardiac, 25 Hz resp) divide to it exactly.
RESP_FEATURE_FS_HZ = 5.0

#: 8 s of PPG/ECG hold 5-30 beats at 40-220 bpm: enough to time the rhythm, short enough to
#: follow a change within seconds. 32 s of breathing is the reference's own window.
SPECS: dict[str, FeatureSpec] = {
    # HR from PPG: 8 s of the pulse band (5-30 beats at 40-220 bpm) at every 4th sample
    # (31.25 Hz: pulse waves have little above 8 Hz).
    "hr_ppg": FeatureSpec(
        "hr_ppg", "ppg", CARDIAC_FS_HZ, 4, 8.0, 1.0, (_PPG_PULSE,), "robust_range"
    ),
    # the same with 12 s windows, a documented variant: CV mean MAE 1.84 bpm (median 0.63)
    # against 1.40 (0.79) for 8 s; one subject's error grew to 26 bpm
    "hr_ppg_w12": FeatureSpec(
        "hr_ppg_w12", "ppg", CARDIAC_FS_HZ, 4, 12.0, 1.0, (_PPG_PULSE,), "robust_range"
    ),
    # HR from ECG: the autocorrelation of 12 s (9-44 beats at 45-220 bpm) at full rate (8 ms lag
    # steps) up to 2.2 s lag (27 bpm): where the beat interval is, not the waveform.
    "hr_ecg": FeatureSpec(
        "hr_ecg", "ecg", CARDIAC_FS_HZ, 1, 12.0, 1.0, (_ECG_BAND,), "robust_range", "acf", 2.2
    ),
    # The same autocorrelation of the PPG's rising slopes, kept as a documented variant: its
    # median error beat the waveform model's, but on two subjects whose pulse has a strong
    # second (dicrotic) rise it read twice the heart rate (+51 and +83 bpm) in cross-validation.
    "hr_ppg_acf": FeatureSpec(
        "hr_ppg_acf",
        "ppg",
        CARDIAC_FS_HZ,
        1,
        12.0,
        1.0,
        (_PPG_UPSLOPE,),
        "robust_range",
        "acf",
        2.2,
    ),
    "rr_ppg": FeatureSpec(
        "rr_ppg",
        "ppg",
        CARDIAC_FS_HZ,
        int(CARDIAC_FS_HZ / RESP_FEATURE_FS_HZ),
        32.0,
        1.0,
        (_PPG_BASELINE, _PPG_AMPLITUDE),
        "zscore",
    ),
    # RR variant on the autocorrelation of the breathing channels up to 20 s lag (3 breaths/min);
    # documented, not shipped: 2.15 breaths/min mean CV MAE against 1.48 for the plain windows
    "rr_ppg_acf": FeatureSpec(
        "rr_ppg_acf",
        "ppg",
        CARDIAC_FS_HZ,
        int(CARDIAC_FS_HZ / RESP_FEATURE_FS_HZ),
        32.0,
        1.0,
        (_PPG_BASELINE, _PPG_AMPLITUDE),
        "zscore",
        "acf",
        20.0,
    ),
    "rr_resp": FeatureSpec(
        "rr_resp",
        "resp",
        RESP_FS_HZ,
        int(RESP_FS_HZ / RESP_FEATURE_FS_HZ),
        32.0,
        1.0,
        (_RESP_BAND,),
        "zscore",
    ),
}


class _ChannelFilter:
    def __init__(self, ch: Channel, fs_hz: float) -> None:
        self.kind = ch.kind
        self.band = CausalFilter.butter(2, ch.band_hz, fs_hz, "bandpass")
        self.env = (
            CausalFilter.butter(2, ch.envelope_lp_hz, fs_hz, "lowpass")
            if ch.kind == "envelope"
            else None
        )
        self.post = (
            CausalFilter.butter(2, ch.post_band_hz, fs_hz, "bandpass") if ch.post_band_hz else None
        )
        self._last: float | None = None  # previous band-passed sample, for the slope

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.band(x)
        if self.kind == "upslope" and y.size:
            prev = float(y[0]) if self._last is None else self._last
            self._last = float(y[-1])
            y = np.maximum(np.diff(y, prepend=prev), 0.0)
        if self.env is not None:
            y = self.env(y * y)
        if self.post is not None:
            y = self.post(y)
        return y


class FeatureStream:
    """Streaming computation of a spec's windows: push samples, read the latest window.

    Causal and chunk-size invariant: the window after n samples does not depend on how they
    were pushed.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._hold = HoldGaps()
        self._filters = [_ChannelFilter(ch, spec.input_fs_hz) for ch in spec.channels]
        n = spec.n_samples
        self._feat = [RingBuffer(n) for _ in spec.channels]
        n_in = int(round(spec.window_s * spec.input_fs_hz))
        self._raw = RingBuffer(n_in)
        self._gap = RingBuffer(n_in, fill=1.0)
        self._decimate = Decimator(spec.decimate)
        self._flat = FlatLine()  # the same flat-line rule as the signal-processing estimators

    @property
    def samples_seen(self) -> int:
        return self._raw.total

    def push(self, x: np.ndarray) -> None:
        held, bad = self._hold(np.asarray(x, dtype=np.float64))
        if held.size == 0:
            return
        self._raw.extend(held)
        self._gap.extend(bad.astype(np.float64))
        keep = self._decimate.indices(len(held))
        for f, buf in zip(self._filters, self._feat, strict=True):
            buf.extend(f(held)[keep])

    def ready(self) -> bool:
        return self._feat[0].total >= self.spec.n_samples

    def window(self) -> np.ndarray:
        """The model input for the latest window (``spec.shape``), float32."""
        w = np.stack([b.latest(self.spec.n_samples) for b in self._feat], axis=1)
        return model_input(w, self.spec)

    def usable(self) -> tuple[bool, float]:
        """(window usable, gap share): enough samples, few gaps, not a flat line."""
        gap = self._gap.latest()
        share = float(gap.mean()) if len(gap) else 1.0
        if not self.ready() or share > MAX_GAP_SHARE:
            return False, share
        return not self._flat(self._raw.latest()), share


def model_input(w: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A raw feature window (n_samples, channels) -> what the model is fed."""
    x = normalise(w, spec.normalisation)
    if spec.transform == "acf":
        return autocorrelation(x, spec.shape[0])
    return x


def autocorrelation(x: np.ndarray, n_lags: int) -> np.ndarray:
    """Per-channel autocorrelation at lags 0..n_lags-1, unbiased and scaled to 1 at lag 0.

    A pulse train's autocorrelation peaks at multiples of the beat interval whatever the
    pulse's shape: the rate is in where the peaks are, not in the probe's or patient's
    waveform, which a direct regressor otherwise learns as a shortcut.
    """
    x = np.asarray(x, dtype=np.float64)
    r = lag_products(x - x.mean(axis=0), n_lags)
    r /= np.maximum(r[:1], 1e-12)
    return np.asarray(np.clip(r, -1.0, 1.0), dtype=np.float32)


def normalise(w: np.ndarray, how: str) -> np.ndarray:
    """Per-window, per-channel normalisation (amplitudes differ by probe, gain and patient)."""
    w = np.asarray(w, dtype=np.float64)
    if how == "robust_range":
        lo, med, hi = np.percentile(w, [5, 50, 95], axis=0)
        out = (w - med) / np.maximum(hi - lo, 1e-9)
    elif how == "zscore":
        out = (w - w.mean(axis=0)) / np.maximum(w.std(axis=0), 1e-9)
    else:
        raise ValueError(f"unknown normalisation {how!r}")
    return np.asarray(np.clip(out, -8.0, 8.0), dtype=np.float32)


@dataclass
class RecordWindows:
    """Every per-second window of one record, as the streaming estimator would see them."""

    seconds: np.ndarray  # t = k s at which each window ends
    windows: np.ndarray  # (n, n_samples, channels) float32, normalised
    usable: np.ndarray  # bool: the estimator would run the model on this window
    filtered: np.ndarray  # (n_feature_samples, channels): the un-normalised feature series


def record_windows(
    spec: FeatureSpec, x: np.ndarray, seconds: Sequence[int] | None = None
) -> RecordWindows:
    """Windows ending at each whole second of ``x`` (already at ``spec.input_fs_hz``).

    The stream is fed second by second, exactly as the pipeline feeds the estimator, so
    usability (gaps, flat line) is judged with the same state.
    """
    fs = spec.input_fs_hz
    stream = FeatureStream(spec)
    n_sec = int(len(x) // fs)
    want = set(range(1, n_sec + 1)) if seconds is None else set(int(s) for s in seconds)
    secs: list[int] = []
    wins: list[np.ndarray] = []
    ok: list[bool] = []
    series: list[list[np.ndarray]] = [[] for _ in spec.channels]
    for k in range(1, n_sec + 1):
        a, b = int(round((k - 1) * fs)), int(round(k * fs))
        before = [buf.total for buf in stream._feat]
        stream.push(x[a:b])
        for c, buf in enumerate(stream._feat):
            new = buf.total - before[c]
            if new:
                series[c].append(buf.latest(new))
        good, _ = stream.usable()
        if k in want and stream.ready():
            secs.append(k)
            wins.append(stream.window())
            ok.append(good)
    filt = np.stack([np.concatenate(s) if s else np.zeros(0) for s in series], axis=1)
    shape = (0, *spec.shape)
    return RecordWindows(
        np.asarray(secs, dtype=np.int64),
        np.stack(wins) if wins else np.zeros(shape, np.float32),
        np.asarray(ok, dtype=bool),
        filt,
    )
