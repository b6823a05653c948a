"""QRS detection on one ECG lead, streaming (after Pan and Tompkins, 1985).

A 5-15 Hz band-pass (where QRS energy peaks; it rejects baseline wander, most P- and T-wave
energy below 5 Hz and mains and muscle noise above 15 Hz), the first difference, squaring and
a 150 ms moving integration give one smooth energy lobe per QRS whatever its polarity or axis.
A lobe is a beat when it is at least a fifth of the typical beat size of the last 6 s, unless
it is the T wave of the beat before it; a gap of over 1.5 typical intervals is looked at again
with a lower threshold (search-back). Each beat is decided once, a refractory period after
its lobe's peak, and timed at its R peak: the largest deflection from the local baseline in
the 200 ms before the lobe's peak.
"""

from __future__ import annotations

import numpy as np

from device.beats.channel import ChannelDetector, small_median
from device.dsp.filters import CausalFilter
from device.dsp.peaks import parabolic_offset
from device.dsp.stats import median

#: Pan-Tompkins moving-integration width: about one QRS duration.
INTEGRATION_S = 0.15
#: A candidate counts as a beat when it is at least this fraction of the typical beat size:
#: the feature is slope energy, so 0.2 is ~45 % of the typical slope: normal beats between
#: ectopic beats 2x their size still count; noise lobes stay under ~5 %.
THRESHOLD = 0.2
#: T-wave test: a lobe within 360 ms of a beat and under 30 % of its energy is its T wave; a
#: real beat that early (> 166 bpm) is as steep as the last.
T_WAVE_S = 0.36
T_WAVE_RATIO = 0.3
#: Search-back: in a gap over 1.5 typical intervals, a candidate of at least 5 % of the
#: typical beat energy (and 4 x the window's lower-quartile lobe, the noise: in a trigeminy
#: of large ectopic beats the small normal beats are a third of the lobes, so the median
#: lobe would be one of them) is a missed beat.
SEARCHBACK_GAP = 1.5
SEARCHBACK = 0.05
NOISE_MULTIPLE = 4.0
#: The level also remembers the last beats' sizes, decaying slowly once beats stop: a
#: candidate must reach this fraction of it. The 6 s level alone sinks within seconds of the
#: last QRS, after which P waves and noise of an asystole would pass its threshold; a real
#: change of lead or gain is followed as the memory decays (half-life 20 s from 2 s after the
#: last beat).
LONG_FRACTION = 0.08
LONG_BEATS = 8
LONG_HALF_LIFE_S = 20.0
#: Where the R peak lies relative to the energy lobe's peak: the lobe peaks at the end of the
#: QRS (the integration trails it by up to 150 ms, the band-pass by ~20 ms).
R_SEARCH_S = (0.20, 0.0)


class QrsDetector(ChannelDetector):
    """Streaming QRS detection on one ECG lead (see the module docstring)."""

    segment_s = 0.25

    def __init__(self, fs_hz: float, delay_s: float = 0.0, lead: str = "") -> None:
        super().__init__(fs_hz, CausalFilter.butter(2, (5.0, 15.0), fs_hz, "bandpass"), delay_s)
        self.lead = lead
        self._mwi = max(1, int(round(self.fs_hz * INTEGRATION_S)))
        self._last_y = 0.0
        self._sq_tail = np.zeros(0)  # the last mwi - 1 squared slopes
        self._n_feature = 0

    def _feature(self, y: np.ndarray) -> np.ndarray:
        d = np.empty_like(y)
        if self._n_feature == 0:
            d[0] = 0.0
        else:
            d[0] = y[0] - self._last_y
        np.subtract(y[1:], y[:-1], out=d[1:])
        self._last_y = float(y[-1])
        sq = d * d
        w = self._mwi
        ext = np.concatenate((self._sq_tail, sq))
        c = np.concatenate(([0.0], np.cumsum(ext)))
        n_tail = len(self._sq_tail)
        # moving mean over the last w squared slopes (fewer at the stream's start)
        ends = np.arange(n_tail + 1, len(ext) + 1)
        starts = np.maximum(ends - w, 0)
        f = (c[ends] - c[starts]) / w
        first = self._n_feature
        self._n_feature += len(y)
        if first < w:  # the integrator has not filled yet
            f[: min(len(f), w - first)] = 0.0
        self._sq_tail = ext[-(w - 1) :] if w > 1 else np.zeros(0)
        return f

    def _decide(
        self, p: int, size: float, f: np.ndarray, a0: int, level: float
    ) -> list[tuple[int, float]]:
        if size < THRESHOLD * level or size < LONG_FRACTION * self._long_level(p):
            return []
        last = self.last_beat
        if last is not None and p <= last + self.refractory - 1:
            return []
        if (
            last is not None
            and p - last < T_WAVE_S * self.fs_hz
            and size < T_WAVE_RATIO * (self.last_size)
        ):
            return []  # a T wave (or P wave) just after a beat, not a beat
        out = self._search_back(p, level)
        out.append((p, size))
        return out

    def _long_level(self, p: int) -> float:
        """The median size of the last beats, halved for every 20 s without a beat (from 2 s
        after the last one)."""
        if not self._beats:
            return 0.0
        sizes = [h for _, h in list(self._beats)[-LONG_BEATS:]]
        idle = (p - self._beats[-1][0]) / self.fs_hz - 2.0
        return float(small_median(sizes) * (0.5 ** (max(0.0, idle) / LONG_HALF_LIFE_S)))

    def _search_back(self, p: int, level: float) -> list[tuple[int, float]]:
        """Pan-Tompkins search-back: a gap between the last beat and this one longer than
        1.5 typical intervals hides a beat too small for the threshold (a normal QRS between
        ectopic beats several times its size, a low-voltage stretch): take the largest
        candidate in the gap when it stands well above the window's noise lobes."""
        last = self.last_beat
        if last is None:
            return []
        ibi = self.recent_intervals()
        ibi = ibi[ibi < self.fs_hz * 60.0 / 25.0]
        if len(ibi) < 4:
            return []
        typical = median(ibi)
        if p - last <= SEARCHBACK_GAP * typical:
            return []
        cands = self.candidates()
        floor = max(
            SEARCHBACK * level,
            NOISE_MULTIPLE * _lower_quartile([h for _, h in cands]),
            LONG_FRACTION * self._long_level(p),
        )
        r = self.refractory
        bounds = [last, p]
        added: list[tuple[int, float]] = []
        for _ in range(3):  # a long gap may hide more than one beat
            new = []
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                if b - a <= SEARCHBACK_GAP * typical:
                    continue
                inside = [(q, h) for q, h in cands if a + r < q < b - r and h >= floor]
                if inside:
                    new.append(max(inside, key=lambda c: c[1]))
            if not new:
                break
            added.extend(new)
            bounds = sorted(set(bounds) | {q for q, _ in new})
        return sorted(added)

    def _fiducial_s(self, p: int, raw: np.ndarray, a0: int) -> float:
        """The R peak: the sample deviating most from the local baseline (the median around
        the QRS) in the 200 ms before the energy lobe's peak, refined between samples."""
        i = p - a0
        lo = max(1, i - int(round(R_SEARCH_S[0] * self.fs_hz)))
        hi = min(len(raw) - 1, i - int(round(R_SEARCH_S[1] * self.fs_hz)) + 1)
        if hi - lo < 3:
            return p / self.fs_hz
        ctx = raw[max(0, lo - int(0.15 * self.fs_hz)) : min(len(raw), hi + int(0.1 * self.fs_hz))]
        base = median(ctx)
        dev = np.abs(raw[lo:hi] - base)
        j = lo + int(np.argmax(dev))
        if 0 < j < len(raw) - 1:
            off = parabolic_offset(
                abs(float(raw[j - 1]) - base),
                abs(float(raw[j]) - base),
                abs(float(raw[j + 1]) - base),
            )
        else:
            off = 0.0
        return (a0 + j + off) / self.fs_hz


def _lower_quartile(x: list[float]) -> float:
    """The 25th percentile (by rank) of a few values; 0 for none."""
    if not x:
        return 0.0
    return sorted(x)[len(x) // 4]
