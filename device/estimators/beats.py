"""Heart rate from the intervals between the beat stream's beats (ECG R waves or PPG pulses).

The signal-processing HR estimator: the fallback when no learned model fits, and the
baseline the models must beat. Measured on the 42 shared BIDMC records
(``bench/accuracy.py``, ``bench/results/accuracy.json``), with HR rounded to whole bpm as the
pipeline publishes it: mean per-subject MAE 0.86 bpm from PPG, 0.75 bpm from ECG (0.68 and
0.51 without record 41, whose monitor HR ignores many beats of a bigeminy); unrounded 0.95
and 0.86.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from device.beats.beat import Detection
from device.dsp.stats import mean, median, std
from device.estimators.base import Estimate
from device.roles import CARDIAC_FS_HZ, Quantity, Role

#: With no beat for this long (or 2.5 intervals), the rate is withdrawn.
_STALE_S = 3.0
#: How late a beat reaches the estimator after its time: the detector decides a candidate a
#: refractory period after its feature's peak, which trails the fiducial point.
_CONFIRM_S = 0.35
_KEEP_BEATS = 64
#: Display damping: first-order smoothing once per second with a 2 s time constant.
_DISPLAY_ALPHA = float(1.0 - np.exp(-1.0 / 2.0))
#: A sustained rate change: the last 5 intervals steady (CV < 8 %) and all > 20 % away from
#: the ones before them; the average then restarts from the new rhythm. (At 12 % it fired on
#: respiratory sinus arrhythmia, whose few fast or slow beats showed as spikes: ECG MAE on
#: the shared records, unrounded, 0.85 at 20 % against 0.87 at 12 %, with the tachycardia
#: alarm still <= 8 s; at 30 % a PPG step was missed for 12 s.)
_STEP_BEATS = 5
_STEP_CV = 0.08
_STEP_CHANGE = 0.20
#: Intervals that set the typical interval against which detection failures are judged.
_CONTEXT_BEATS = 24


class BeatIntervalHR:
    """Heart rate from the intervals between the beats of the beat stream (fused ECG R waves,
    or PPG pulses): see ``device.beats``, which detects each beat once as it arrives.

    HR is 60 / mean of the last ``avg_beats`` intervals that end within ``avg_s`` seconds: every
    detected beat counts, so atrial fibrillation and ectopic beats give the mean rate a bedside
    monitor shows (it averages all beats too), not a rate biased by discarding real short or
    long intervals; only what looks like a detection failure in a regular rhythm (a split or
    a doubled interval) is corrected (``corrected_beats``). The shown value is damped with a
    2 s time constant, except that a sustained, steady change of rhythm is followed at once
    (``sustained_change_bpm``): an 80 -> 130 bpm step is shown within ~3 s.

    Quality is how much the beats look alike (each beat's correlation with the median beat of
    its channel: noise and artefact are not beat-shaped) times the share of intervals used as
    they were. Below ``min_quality``, or when no beat was seen for too long, the value is None.
    """

    quantity = Quantity.HR

    def __init__(
        self,
        role: str,
        *,
        name: str = "dsp",
        avg_s: float = 10.0,
        avg_beats: int = 12,
        min_quality: float = 0.65,
    ) -> None:
        if role not in ("ecg", "ppg", "abp"):
            raise ValueError(f"BeatIntervalHR cannot use role {role!r}")
        self.role, self.name = Role(role), name
        #: the estimator is fed the beat stream's detections of its role, not samples
        self.beat_role = self.role
        self.takes_samples = False
        self.fs_hz = CARDIAC_FS_HZ
        self.avg_s, self.avg_beats = avg_s, avg_beats
        self.min_quality = min_quality
        # Beats so far (time, feature height, shape correlation, whether the interval ending
        # at it is usable).
        self._t: list[float] = []
        self._h: list[float] = []
        self._corr: list[float] = []
        self._valid: list[bool] = []
        self._display: float | None = None  # the damped rate last shown
        self._rhythm_start_s = -np.inf  # first beat of the current rhythm after a step

    def push(self, x: np.ndarray) -> None:
        """Samples are not used: beats come from the beat stream (``push_beats``)."""

    def push_beats(self, beats: Sequence[Detection]) -> None:
        """The beats of this role the beat stream committed this second, in time order."""
        for d in beats:
            self._t.append(d.t_feature_s)
            self._h.append(d.size)
            self._corr.append(d.corr)
            self._valid.append(d.valid)
        if len(self._t) > _KEEP_BEATS:
            for lst in (self._t, self._h, self._corr, self._valid):
                del lst[: len(lst) - _KEEP_BEATS]

    # -- rate ----------------------------------------------------------------------------------
    def estimate(self, t_s: float) -> Estimate:
        est, fast = self._rate(t_s)
        if est.value is None:
            self._display = None
            return est
        raw = est.value
        if fast is not None or self._display is None:
            self._display = fast if fast is not None else raw
        else:
            # Display damping: the average of the last beats still jitters with every
            # irregular beat (atrial fibrillation, ectopy); a first-order smoothing with a
            # ~2 s time constant steadies it, as bedside monitors do.
            self._display += _DISPLAY_ALPHA * (raw - self._display)
        return Estimate(self._display, est.quality, self.name, self.role, self.quantity)

    def beats_since(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(signal times, sizes) of the beats after ``t_s``: the beat train that other
        estimators (RR from the pulse's modulation) are built on."""
        t = np.asarray(self._t)
        sel = t > t_s
        return t[sel], np.asarray(self._h)[sel]

    def _rate(self, t_s: float) -> tuple[Estimate, float | None]:
        """(the undamped rate, the new rate when the rhythm just changed step-wise)."""
        none = Estimate(None, 0.0, self.name, self.role, self.quantity)
        if len(self._t) < 3:
            return none, None
        t = np.asarray(self._t)
        ibi = t[1:] - t[:-1]
        valid = np.asarray(self._valid[1:])
        # No beat for much longer than the recent intervals: the signal was lost (or the heart
        # stopped); the last rate is no longer the heart rate.
        recent_ibi = ibi[valid][-self.avg_beats :]
        if (
            len(recent_ibi) == 0
            or t_s - t[-1] > max(_STALE_S, 2.5 * median(recent_ibi)) + _CONFIRM_S
        ):
            return none, None
        # intervals ending in the averaging window, none from before a change of rhythm
        recent = valid & (t[1:] > t_s - self.avg_s) & (t[:-1] >= self._rhythm_start_s)
        sel = np.flatnonzero(recent)[-self.avg_beats :]
        if len(sel) < 2:
            return none, None
        fast = sustained_change_bpm(ibi[sel])
        if fast is not None:
            # A new rhythm: show it now, and average only its beats from here on, so the
            # shown rate does not sag back towards the old one as the window refills.
            self._rhythm_start_s = float(t[sel[-_STEP_BEATS]])
            sel = sel[-_STEP_BEATS:]
        beats, span, kept = corrected_beats(ibi[np.flatnonzero(valid)][-_CONTEXT_BEATS:], ibi[sel])
        corr = np.asarray(self._corr)[sel + 1]
        quality = float(corr.mean()) * kept
        if beats < 2 or span <= 0.0 or quality < self.min_quality:
            return Estimate(None, quality, self.name, self.role, self.quantity), None
        rate = Estimate(60.0 * beats / span, quality, self.name, self.role, self.quantity)
        return rate, fast


def sustained_change_bpm(ibi: np.ndarray) -> float | None:
    """The new rate when the last few intervals form a new, steady rhythm (a step, such as
    the onset of a tachycardia), else None.

    The last ``_STEP_BEATS`` intervals must agree with each other (coefficient of variation
    under 8 %: a regular rhythm, not fibrillation) and all differ by more than 20 % in the
    same direction from the intervals before them. Then the display follows at once
    instead of waiting for the averaging window to fill: a rate change a nurse must see
    is shown within a few beats.
    """
    k = _STEP_BEATS
    if len(ibi) < k + 2:
        return None
    # plain floats: a handful of values, where numpy's per-call overhead is the whole cost
    # (``stats.mean``/``std`` add them up in numpy's order)
    values = np.asarray(ibi, dtype=np.float64).tolist()
    new, old = values[-k:], mean(values[:-k])
    dev = [v / old - 1.0 for v in new]
    steady = std(new) < _STEP_CV * mean(new)
    if steady and (all(d > _STEP_CHANGE for d in dev) or all(d < -_STEP_CHANGE for d in dev)):
        return 60.0 / mean(new)
    return None


def _hidden_beats(ratio: list[float], i: int) -> tuple[int, int] | None:
    """(n, k) when the n = 2 or 3 intervals from ``i`` (in typical intervals, ``ratio``) are
    all off the rhythm (outside 0.8-1.2) and together span k > n whole typical intervals
    (within 0.12 of one), else None. Runs that make fewer beats than intervals (a couplet
    of premature beats and the like) are real rhythm and are not touched."""
    for n in (2, 3):
        seg = ratio[i : i + n]
        if len(seg) < n or any(0.8 <= r <= 1.2 for r in seg):
            return None
        total = 0.0  # numpy's order for a few values
        for r in seg:
            total += r
        k = round(total)
        if k > n and abs(total - k) <= 0.12:
            return n, int(k)
    return None


def corrected_beats(context: np.ndarray, ibi: np.ndarray) -> tuple[int, float, float]:
    """Heart beats and their total duration behind the intervals ``ibi``, correcting what are
    detection failures rather than rhythm, judged against the median of ``context``:

    - in an otherwise regular rhythm, two short intervals that together make one typical
      interval (within 12 %) were split by an extra detection (a dicrotic wave, a T wave, a
      motion spike): they count as one;
    - in an otherwise regular rhythm, a long interval and the one or two off-rhythm ones
      after it that together make more whole typical intervals than they are (within 12 %
      of one; a 1.3 and a 1.6 make three) hide a missed beat next to a misplaced one: they
      count as that many (``_hidden_beats``);
    - in an otherwise regular rhythm, an interval of about 2 or 3 typical intervals hides
      beats that were not detected (a premature beat with too little stroke volume to reach
      the finger, a low-amplitude QRS): it counts as 2 or 3;
    - an interval too short or too long to be either is an artefact and is left out.

    Everything else counts as it is: short and long intervals of atrial fibrillation, of an
    ectopic beat and its compensatory pause, or of a couplet of premature beats are real
    beats, and the monitor counts them too.
    Returns (beats, seconds, share of the intervals used as they were).
    """
    med = median(context)
    ratios = np.asarray(ibi, dtype=np.float64) / med
    # Regular rhythm: the intervals near the median vary by under 15 % (sinus rhythm varies
    # a few %, atrial fibrillation 20-30 %).
    near = ratios[(ratios > 0.7) & (ratios < 1.4)]
    regular = len(near) >= 3 and float(np.std(near)) < 0.15
    # the walk below in plain floats (the same arithmetic, without numpy's per-item cost)
    ratio, ivals = ratios.tolist(), np.asarray(ibi, dtype=np.float64).tolist()
    beats, span, clean = 0, 0.0, 0
    i = 0
    while i < len(ivals):
        r = ratio[i]
        if regular and r < 0.7 and i + 1 < len(ivals) and abs(r + ratio[i + 1] - 1.0) <= 0.12:
            beats, span, i = beats + 1, span + (ivals[i] + ivals[i + 1]), i + 2
            continue
        run = _hidden_beats(ratio, i) if regular and r > 1.2 else None
        if run is not None:
            n, k = run
            total = 0.0  # numpy's order for a few values
            for v in ivals[i : i + n]:
                total += v
            beats, span, i = beats + k, span + total, i + n
            continue
        k = round(r)
        if regular and k >= 2 and abs(r - k) <= 0.15 * k:
            beats, span = beats + int(k), span + ivals[i]
        elif 0.4 <= r <= 2.0:
            beats, span, clean = beats + 1, span + ivals[i], clean + 1
        i += 1
    return beats, span, clean / len(ivals)
