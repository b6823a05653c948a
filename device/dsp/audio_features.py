"""Streaming features of body sounds at the audio core's rate (2 kHz), in whole-array numpy.

Two views of the same sound, both from short-time power spectra (Hann-windowed frames at
fixed positions on the absolute sample axis, so the output does not depend on chunking):

- ``BreathBands``: the loudness of breath sounds in ``BREATH_BANDS`` (60-900 Hz), as log band
  energies every 50 ms, with short transients removed (a running median over 350 ms: heart
  sounds and clicks last 50-150 ms, an inspiration or an expiration 0.7-3 s), then averaged to
  10 Hz. Loudness and spectral shape both change between inspiration and expiration.
- ``HeartEnvelope``: the log energy of 25-200 Hz (where S1 and S2 carry most of their energy,
  below most breath-sound energy) every 10 ms, a homomorphic envelope of the heart sounds.

Gaps: each feature frame carries a flag, set when any of its input samples was missing.
"""

from __future__ import annotations

import numpy as np

from device.dsp.buffers import RingBuffer

#: The audio core's rate: breath sounds are strongest at 100-1000 Hz, heart sounds at 20-200 Hz;
#: 2 kHz keeps both (up to 900 Hz after ``device.dsp.polyphase``) and is the slowest capture rate.
AUDIO_FS_HZ = 2000.0

#: Breath-sound bands (Hz). The lowest two also hold heart sounds, which the running median
#: removes; above 900 Hz is the decimator's transition band.
BREATH_BANDS: tuple[tuple[float, float], ...] = (
    (60.0, 100.0),
    (100.0, 150.0),
    (150.0, 220.0),
    (220.0, 300.0),
    (300.0, 400.0),
    (400.0, 520.0),
    (520.0, 680.0),
    (680.0, 900.0),
)
#: 128 ms frames every 50 ms: 7.8 Hz spectral resolution, 20 frames/s.
BREATH_FRAME, BREATH_HOP = 256, 100
#: Running median over 7 frames (350 ms): longer than a heart sound, shorter than a breath phase.
BREATH_MEDIAN = 7
#: Frames averaged per output: 2 -> 10 Hz feature rate (the breath band's top, 45/min x 3
#: harmonics = 2.25 Hz, is well below its 5 Hz Nyquist).
BREATH_AVG = 2
BREATH_FEATURE_FS_HZ = AUDIO_FS_HZ / BREATH_HOP / BREATH_AVG

#: Heart-sound band (Hz) and framing: 32 ms frames every 10 ms (100 envelope samples/s).
HEART_BAND = (25.0, 200.0)
HEART_FRAME, HEART_HOP = 64, 20
HEART_ENVELOPE_FS_HZ = AUDIO_FS_HZ / HEART_HOP

#: Floor added to band energies before the log (digital silence stays finite): about the
#: energy of 16-bit quantisation noise in a frame.
ENERGY_FLOOR = 1e-10


class FrameSpectra:
    """Power spectra of Hann-windowed frames of ``frame`` samples every ``hop`` samples.

    Frame j covers input samples [j * hop, j * hop + frame); it is returned by the call in
    which its last sample arrives. ``bad`` flags say whether any of its samples was a gap.
    """

    def __init__(self, frame: int, hop: int) -> None:
        self.frame, self.hop = int(frame), int(hop)
        self.window = np.hanning(self.frame)
        self._buf = np.zeros(0)
        self._bad = np.zeros(0, dtype=bool)
        self._start = 0  # absolute index of _buf[0]
        self._next = 0  # next frame index

    def __call__(
        self, x: np.ndarray, bad: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        b = np.zeros(x.size, dtype=bool) if bad is None else np.asarray(bad, dtype=bool)
        buf = np.concatenate((self._buf, x))
        bbuf = np.concatenate((self._bad, b))
        end = self._start + buf.size  # absolute index one past the newest sample
        n_frames = max(0, (end - self.frame - self._next * self.hop) // self.hop + 1)
        first = self._next * self.hop - self._start  # buffer index of the next frame
        if n_frames:
            idx = first + self.hop * np.arange(n_frames)[:, None] + np.arange(self.frame)
            spec = np.abs(np.fft.rfft(buf[idx] * self.window, axis=1)) ** 2
            fbad = bbuf[idx].any(axis=1)
        else:
            spec = np.zeros((0, self.frame // 2 + 1))
            fbad = np.zeros(0, dtype=bool)
        self._next += n_frames
        keep = self._next * self.hop - self._start  # drop what no future frame needs
        self._buf, self._bad = buf[keep:], bbuf[keep:]
        self._start += keep
        return spec, fbad

    def freqs(self, fs_hz: float = AUDIO_FS_HZ) -> np.ndarray:
        return np.fft.rfftfreq(self.frame, 1.0 / fs_hz)


def band_slices(freqs: np.ndarray, bands: tuple[tuple[float, float], ...]) -> list[slice]:
    """The power-spectrum bins of each band, as slices."""
    out = []
    for lo, hi in bands:
        idx = np.flatnonzero((freqs >= lo) & (freqs < hi))
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out


def band_energies(spec: np.ndarray, slices: list[slice]) -> np.ndarray:
    """(frames, bands) sums of bins. Row by row, never a matrix product: a BLAS product may
    round differently for different numbers of rows, and chunking must not change a bit."""
    return np.stack([spec[:, s].sum(axis=1) for s in slices], axis=1)


class BreathBands:
    """Log band energies of breath sounds at ``BREATH_FEATURE_FS_HZ``; see the module doc.

    ``push(x)`` takes 2 kHz samples (NaN = gap) and returns (features (n, bands), gap flags
    (n,)) for the feature frames completed by this chunk.
    """

    def __init__(self, bands: tuple[tuple[float, float], ...] = BREATH_BANDS) -> None:
        self.bands = bands
        self._spectra = FrameSpectra(BREATH_FRAME, BREATH_HOP)
        self._slices = band_slices(self._spectra.freqs(), bands)
        self._recent = RingBuffer(BREATH_MEDIAN * len(bands))  # last frames' log energies
        self._recent_bad = RingBuffer(BREATH_MEDIAN)
        self._pair: list[tuple[np.ndarray, bool]] = []  # frames waiting to be averaged

    def push(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        bad = ~np.isfinite(x)
        spec, fbad = self._spectra(np.where(bad, 0.0, x), bad)
        nb = len(self.bands)
        if len(spec) == 0:
            return np.zeros((0, nb)), np.zeros(0, dtype=bool)
        loge = np.log(band_energies(spec, self._slices) + ENERGY_FLOOR)
        # causal running median over the last BREATH_MEDIAN frames (fewer at the start)
        hist = self._recent.latest().reshape(-1, nb)
        hist_bad = self._recent_bad.latest() > 0.5
        allf = np.concatenate((hist, loge))
        allb = np.concatenate((hist_bad, fbad))
        n_hist = len(hist)
        med = np.empty_like(loge)
        medbad = np.empty(len(loge), dtype=bool)
        for i in range(len(loge)):
            j = n_hist + i
            lo = max(0, j - BREATH_MEDIAN + 1)
            med[i] = np.median(allf[lo : j + 1], axis=0)
            medbad[i] = bool(allb[lo : j + 1].any())
        self._recent.extend(loge.reshape(-1))
        self._recent_bad.extend(fbad.astype(np.float64))
        out, out_bad = [], []
        for i in range(len(med)):
            self._pair.append((med[i], bool(medbad[i])))
            if len(self._pair) == BREATH_AVG:
                out.append(np.mean([p[0] for p in self._pair], axis=0))
                out_bad.append(any(p[1] for p in self._pair))
                self._pair = []
        if not out:
            return np.zeros((0, nb)), np.zeros(0, dtype=bool)
        return np.array(out), np.array(out_bad, dtype=bool)


class HeartEnvelope:
    """Log energy of ``HEART_BAND`` every 10 ms (a homomorphic envelope of S1/S2)."""

    def __init__(self, band: tuple[float, float] = HEART_BAND) -> None:
        self._spectra = FrameSpectra(HEART_FRAME, HEART_HOP)
        self._slices = band_slices(self._spectra.freqs(), (band,))

    def push(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        bad = ~np.isfinite(x)
        spec, fbad = self._spectra(np.where(bad, 0.0, x), bad)
        return np.log(band_energies(spec, self._slices)[:, 0] + ENERGY_FLOOR), fbad
