"""What every channel's beat detector shares: causal filtering, a detection feature, and
candidate beats found and decided once, in blocks of one second of the channel's own samples.

A detector works through its samples one block (``fs_hz`` samples: one second) at a time,
whatever size the chunks it is pushed, so its decisions depend on the samples alone, never on
how they were chunked. A candidate is a local maximum of the feature with no higher local maximum
within the refractory period on either side (``find_peaks``' distance rule, decided locally); it is
decided as soon as the samples after it have arrived, so every beat is detected exactly once,
about a refractory period after its peak.
The pipeline pushes one second at a time, so blocks add no latency there.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from device.beats.beat import Detection
from device.dsp.buffers import RingBuffer
from device.dsp.filters import CausalFilter
from device.dsp.gaps import HoldGaps
from device.dsp.peaks import local_maxima, parabolic_offset
from device.dsp.quality import FLAT_RELATIVE
from device.dsp.stats import median_columns

#: Beats closer than 250 ms are one beat (a 240 bpm ceiling, above infants' ~200-220 bpm).
REFRACTORY_S = 0.25
#: Slowest heart rate an interval may show: 25 bpm; a longer pause is a gap, not a rate.
HR_MIN_BPM = 25.0
#: The window the detection threshold is set from: long enough to hold several beats even at
#: 40 bpm, short enough to follow a change of lead or gain within seconds.
LEVEL_S = 6.0
#: Signal the detector keeps (the level window, plus the samples around a beat it looks at).
HISTORY_S = 8.0
#: Beats whose shapes form the channel's template (their median, sample by sample): enough
#: that one ectopic beat or artefact cannot set it, few enough to follow a slow change.
TEMPLATE_BEATS = 8


class ChannelDetector:
    """Streaming beat detection on one channel (see the module docstring).

    Subclasses give the band-pass (``filt``), the feature (``_feature``), the half-width of
    the shape segment the template is made of (``segment_s``), and the decision
    (``_decide``), and may locate the fiducial point (``_fiducial_s``).
    """

    segment_s = 0.25
    #: how much signal after a candidate's peak its decision needs (at least the refractory
    #: period, which makes it the highest peak on either side)
    lookahead_s = REFRACTORY_S

    def __init__(self, fs_hz: float, filt: CausalFilter, delay_s: float = 0.0) -> None:
        """``delay_s``: how late this channel's samples are (an upstream resampler's group
        delay), subtracted from every beat time."""
        self.fs_hz = float(fs_hz)
        self.block = max(1, int(round(self.fs_hz)))
        self.delay_s = float(delay_s)
        self._filt = filt
        self._hold = HoldGaps()
        n = int(round(HISTORY_S * self.fs_hz))
        self._raw = RingBuffer(n)
        self._f = RingBuffer(n)
        self._gap = RingBuffer(n, fill=1.0)
        self._queue: list[np.ndarray] = []
        self._n_queued = 0
        self.total = 0  # samples processed
        self.refractory = max(1, int(self.fs_hz * REFRACTORY_S))
        self._ahead = max(self.refractory, int(round(self.lookahead_s * self.fs_hz)))
        self._scan = self.refractory  # next sample that may be a candidate's peak
        self._flat = BlockFlat(int(round(LEVEL_S)))
        self.is_flat = False  # the last block's level window was a flat line
        #: candidates of the last ``LEVEL_S`` (absolute index, feature height)
        self._cands: deque[tuple[int, float]] = deque()
        #: committed beats (absolute index, feature height), the last few
        self._beats: deque[tuple[int, float]] = deque(maxlen=64)
        self._segments: deque[np.ndarray] = deque(maxlen=TEMPLATE_BEATS)
        self._seg = int(round(self.segment_s * self.fs_hz))

    # -- what subclasses give ----------------------------------------------------------------
    def _feature(self, y: np.ndarray) -> np.ndarray:
        """The detection feature of filtered samples (stateful across blocks)."""
        raise NotImplementedError

    def _decide(
        self, p: int, size: float, f: np.ndarray, a0: int, level: float
    ) -> list[tuple[int, float]]:
        """The beats (absolute index, height) committed for the candidate at ``p`` (none, it,
        or it with beats found before it on a second look)."""
        raise NotImplementedError

    def _fiducial_s(self, p: int, raw: np.ndarray, a0: int) -> float:
        """The beat's time (s) for a committed feature peak at ``p``: the peak itself."""
        return p / self.fs_hz

    def _block_stats(self, f: np.ndarray) -> None:
        """Once per block with candidates to decide, before the decisions (``f``: the feature
        over the history)."""

    # -- streaming ---------------------------------------------------------------------------
    def push(self, x: np.ndarray) -> list[Detection]:
        """Add samples (NaN = gap); returns the beats committed, in time order."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size:
            self._queue.append(x)
            self._n_queued += x.size
        out: list[Detection] = []
        while self._n_queued >= self.block:
            buf = np.concatenate(self._queue) if len(self._queue) > 1 else self._queue[0]
            head, tail = buf[: self.block], buf[self.block :]
            self._queue = [tail] if tail.size else []
            self._n_queued -= self.block
            out.extend(self._process(head))
        return out

    def _process(self, x: np.ndarray) -> list[Detection]:
        held, bad = self._hold(x)
        y = self._filt(held)
        f = self._feature(y)
        self._raw.extend(held)
        self._f.extend(f)
        self._gap.extend(bad.astype(np.float64))
        self.total += len(x)
        self.is_flat = self._flat(held) or self.total < 2 * self.fs_hz
        # candidates whose refractory period on both sides (and look-ahead) has arrived
        last = self.total - 1 - self._ahead
        if last < self._scan:
            return []
        r = self.refractory
        fw = self._f.latest(self.total - max(0, self._scan - r - 1))
        a0 = self.total - len(fw)  # absolute index of fw[0]
        found = _thinned_maxima(fw, self._scan - a0, last - a0, r) + a0
        self._scan = last + 1
        if len(found) == 0:
            self._forget(last)
            return []
        # the window the decisions look at: the level window and the samples after the peaks
        f_all = self._f.latest(self._f.capacity)
        a_all = self.total - len(f_all)
        raw_all = self._raw.latest(self._raw.capacity)
        gap_all = self._gap.latest(self._gap.capacity) > 0.5
        self._block_stats(f_all)
        out: list[Detection] = []
        for p in found.tolist():
            size = float(f_all[p - a_all])
            self._cands.append((p, size))
            self._forget(p)
            if self.is_flat or gap_all[p - a_all]:
                continue
            level = self._level()
            if level <= 0.0:
                continue
            for q, h in self._decide(p, size, f_all, a_all, level):
                out.append(self._commit(q, h, f_all, raw_all, gap_all, a_all, level))
        return out

    def _forget(self, now: int) -> None:
        horizon = now - int(LEVEL_S * self.fs_hz)
        while self._cands and self._cands[0][0] < horizon:
            self._cands.popleft()

    def _level(self) -> float:
        """The typical beat size: the median of the k largest candidates of the level window,
        k = the beats it holds even at 40 bpm, so one huge artefact cannot set the level."""
        k = max(2, int(LEVEL_S * 40.0 / 60.0))
        sizes = sorted(h for _, h in self._cands)[-k:]
        return small_median(sizes)

    def _commit(
        self,
        p: int,
        size: float,
        f: np.ndarray,
        raw: np.ndarray,
        gap: np.ndarray,
        a0: int,
        level: float,
    ) -> Detection:
        prev = self._beats[-1][0] if self._beats else None
        valid = (
            prev is not None
            and prev >= a0
            and not gap[prev - a0 : p - a0 + 1].any()
            and (p - prev) < self.fs_hz * 60.0 / HR_MIN_BPM
        )
        corr = self._shape_corr(f, p - a0)
        self._beats.append((p, size))
        t = self._fiducial_s(p, raw, a0) - self.delay_s
        i = p - a0
        off = parabolic_offset(float(f[i - 1]), float(f[i]), float(f[i + 1]))
        t_feature = (p + off) / self.fs_hz - self.delay_s
        return Detection(t, size, corr, valid, t_feature, strength=size / level)

    def _shape_corr(self, f: np.ndarray, i: int) -> float:
        """Correlation of the beat at ``f[i]`` with the median of the channel's recent beats
        (itself included), 0 until three beats are known."""
        b = self._seg
        if i < b or i + b > len(f):
            return 0.0
        seg = f[i - b : i + b]
        seg = seg - seg.mean()
        self._segments.append(seg)
        if len(self._segments) < 3:
            return 0.0
        tmpl = median_columns(np.asarray(self._segments))
        den = float(np.linalg.norm(seg)) * float(np.linalg.norm(tmpl))
        return max(0.0, float(seg @ tmpl) / den) if den > 0 else 0.0

    def candidates(self) -> list[tuple[int, float]]:
        """The level window's candidates (absolute index, height), for a second look."""
        return list(self._cands)

    @property
    def last_beat(self) -> int | None:
        return self._beats[-1][0] if self._beats else None

    @property
    def last_size(self) -> float:
        return self._beats[-1][1] if self._beats else 0.0

    def recent_intervals(self, n: int = 24) -> np.ndarray:
        """Intervals (samples) between the last ``n`` committed beats."""
        idx = np.fromiter((q for q, _ in list(self._beats)[-n:]), dtype=np.int64)
        return np.diff(idx)


def _thinned_maxima(f: np.ndarray, lo: int, hi: int, distance: int) -> np.ndarray:
    """Indices in [lo, hi] of local maxima of ``f`` with no higher local maximum (nor an equal
    earlier one) closer than ``distance`` samples: the distance rule of ``find_peaks``, judged
    against the neighbours alone (``f`` must hold ``distance`` samples beyond ``hi``)."""
    peaks = local_maxima(f)
    if len(peaks) == 0:
        return peaks
    vals = f[peaks]
    out = []
    pl, vl = peaks.tolist(), vals.tolist()
    for j, p in enumerate(pl):
        if p < lo or p > hi or vl[j] <= 0.0:
            continue
        keep = True
        k = j - 1
        while k >= 0 and p - pl[k] < distance:
            if vl[k] >= vl[j]:
                keep = False
                break
            k -= 1
        k = j + 1
        while keep and k < len(pl) and pl[k] - p < distance:
            if vl[k] > vl[j]:
                keep = False
            k += 1
        if keep:
            out.append(p)
    return np.asarray(out, dtype=np.int64)


class BlockFlat:
    """Is the last ``blocks`` seconds a flat line? Their largest peak-to-peak is under 2 % of
    the channel's recent swing (decaying 2 % a second, so a channel that really becomes weaker
    is followed within a minute), or zero: a probe or lead off. ``FlatLine``'s rule, on
    per-second peak-to-peaks, which cost two reductions a second instead of a percentile."""

    def __init__(self, blocks: int) -> None:
        self._ptp: deque[float] = deque(maxlen=max(1, blocks))
        self._scale = 0.0

    def __call__(self, block: np.ndarray) -> bool:
        self._ptp.append(float(block.max() - block.min()) if block.size else 0.0)
        spread = max(self._ptp)
        if spread <= 1e-9:
            return True
        self._scale = max(spread, 0.98 * self._scale)
        return spread < FLAT_RELATIVE * self._scale


def small_median(x: list[float]) -> float:
    """The median of a few plain floats (0 for none), without numpy's per-call cost."""
    if not x:
        return 0.0
    v = sorted(x)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
