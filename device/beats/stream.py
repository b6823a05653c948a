"""The beat stream: every heartbeat detected once, as it arrives, on every cardiac channel.

Each ECG lead has its own QRS detector and each pulsatile channel (PPG, ABP) its own pulse
detector (``qrs.py``, ``pulse.py``). The ECG leads' detections are then fused into one beat
per heartbeat: detections of different leads within 150 ms are one beat, which counts when
the leads that saw it outweigh the leads that did not, each lead weighted by how much it can
be trusted now (``LeadWeight``: its beats' shape consistency and its agreement with the
others). A lead that is lost, flat or saturated has no say. A beat classifier then gives each
fused beat its AAMI class. Heart rate, the arrhythmia conditions and the alarm evidence all
read what this stream says.

The stream is fed once per second with each channel's samples at the cardiac rate and
returns the detections of that second (for the heart-rate estimators) and the beats now final
(classified; for output and the arrhythmia conditions).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from device.beats.beat import Beat, BeatClass, Detection
from device.beats.channel import ChannelDetector
from device.beats.classify import BeatClassifier
from device.beats.pulse import PulseDetector
from device.beats.qrs import QrsDetector
from device.rhythm.vf import RhythmJudgement, VentricularRhythm, shipped_model
from device.roles import CARDIAC_FS_HZ, PULSATILE, Channel, Role

#: Detections of different leads within this much of each other are one heartbeat (the EC57
#: match window; leads see the same QRS within a few tens of ms).
FUSE_S = 0.15
#: A beat seen by one lead only counts when that lead's weight is at least this share of the
#: best lead's, and the detection is beat-shaped (its shape correlation at least this).
TRUSTED = 0.9
SINGLE_LEAD_CORR = 0.8
#: Smoothing of each lead's weight, per beat (about the last 10 beats count).
WEIGHT_ALPHA = 0.1
#: The waveform is not judged for VF or VT while the last 4 s hold at least 3 fused beats,
#: all beat-shaped (shape correlation >= 0.8), regular (intervals within 15 % of their mean)
#: and slower than 100 bpm: a fibrillating heart makes no such beats, and a ventricular
#: tachycardia is faster. It saves most of the judgement's cost in ordinary rhythms.
ORGANISED_S = 4.0
ORGANISED_CORR = 0.8
ORGANISED_CV = 0.15
ORGANISED_MAX_BPM = 100.0


@dataclass
class LeadWeight:
    """How much one ECG lead is trusted when leads disagree (0-1): the consistency of its
    detections' shapes (noise and artefact are not beat-shaped), smoothed over about ten
    detections."""

    shape: float = 1.0

    @property
    def value(self) -> float:
        return self.shape

    def update(self, attr: str, x: float) -> None:
        setattr(self, attr, getattr(self, attr) + WEIGHT_ALPHA * (x - getattr(self, attr)))


@dataclass(frozen=True)
class BeatsStep:
    """What the beat stream says about one second.

    - ``detections``: the beats committed this second per role, for heart rate: the fused
      ECG beats, and each pulsatile role's pulses (its first channel);
    - ``beats``: the beats now final, classified, in time order (ECG beats a bounded delay
      after they are detected; pulses at once);
    - ``lead_weights``: each ECG lead's weight (0 while it is lost or flat);
    - ``rhythm``: each ECG lead's VF/VT judgement of the last 4 s.
    """

    detections: Mapping[Role, tuple[Detection, ...]]
    beats: tuple[Beat, ...]
    lead_weights: Mapping[Channel, float] = field(default_factory=dict)
    #: each ECG lead's ventricular rhythm judgement of the last 4 s (``device.rhythm``)
    rhythm: Mapping[Channel, RhythmJudgement] = field(default_factory=dict)


class BeatStream:
    """Beats from every cardiac channel (see the module docstring)."""

    def __init__(self, delays_s: Mapping[Channel, float], classify: bool = True) -> None:
        """``delays_s``: each cardiac channel the core has, with how late its samples are
        (the upstream resampler's delay), in input order."""
        self.fs_hz = CARDIAC_FS_HZ
        self.detectors: dict[Channel, ChannelDetector] = {}
        for ch, delay in delays_s.items():
            if ch.role == Role.ECG:
                self.detectors[ch] = QrsDetector(self.fs_hz, delay, ch.lead)
            elif ch.role in PULSATILE:
                self.detectors[ch] = PulseDetector(self.fs_hz, delay, ch.lead)
        self.leads = [ch for ch in self.detectors if ch.role == Role.ECG]
        self.weights = {ch: LeadWeight() for ch in self.leads}
        # VF and VT are judged on the waveform (in VF there are no beats to detect)
        model = shipped_model() if self.leads else None
        self.rhythm = {ch: VentricularRhythm(model, self.fs_hz) for ch in self.leads}
        self._pending: list[tuple[Channel, Detection]] = []
        self._last_fused: Detection | None = None
        self._recent: deque[Detection] = deque()  # fused beats of the last ORGANISED_S
        self._pulse_role_first: dict[Role, Channel] = {}
        for ch in self.detectors:
            if ch.role in PULSATILE:
                self._pulse_role_first.setdefault(ch.role, ch)
        self._new: dict[Channel, list[Detection]] = {ch: [] for ch in self.detectors}
        self.classifier = (
            BeatClassifier([c.lead or c.role.value for c in self.leads], CARDIAC_FS_HZ)
            if (classify and self.leads)
            else None
        )
        self._unclassified: list[tuple[Detection, Channel, tuple[str, ...], float]] = []
        #: signal time of the newest fused ECG beat, and of each channel's newest beat
        self.last_ecg_beat_s: float | None = None
        self.last_beat_s: dict[Channel, float] = {}

    def push(self, channel: Channel, y: np.ndarray) -> None:
        """One second of ``channel``'s samples at ``CARDIAC_FS_HZ`` (NaN = gap)."""
        det = self.detectors.get(channel)
        if det is None:
            return
        found = det.push(y)
        if found:
            self._new[channel].extend(found)
            self.last_beat_s[channel] = found[-1].t_s

    def push_leads(self, samples: Mapping[Channel, np.ndarray]) -> None:
        """Every ECG lead's samples of the same second, for the beat classifier and the
        rhythm judgement."""
        for ch, det in self.rhythm.items():
            det.push(samples[ch])
        if self.classifier is not None:
            self.classifier.push({c.lead or c.role.value: samples[c] for c in self.leads})

    def step(self, t_s: float, present: Mapping[Channel, bool]) -> BeatsStep:
        """The second ending at ``t_s``: fuse and classify (``present``: each channel has
        signal, neither lost nor flat nor saturated)."""
        detections: dict[Role, tuple[Detection, ...]] = {}
        for role, ch in self._pulse_role_first.items():
            detections[role] = tuple(self._new[ch])
        pulses = [
            Beat(d.t_s, ch.role, ch.lead, BeatClass.Q, d.corr)
            for ch, found in self._new.items()
            if ch.role in PULSATILE
            for d in found
        ]
        for ch in self.leads:
            self._pending.extend((ch, d) for d in self._new[ch])
        for found in self._new.values():
            found.clear()
        fused = self._fuse(present) if self.leads else []
        if fused:
            detections[Role.ECG] = tuple(d for d, _, _, _ in fused)
            self.last_ecg_beat_s = fused[-1][0].t_s
        ecg_beats = self._classify(fused, t_s)
        beats = sorted(ecg_beats + pulses, key=lambda b: b.t_s)
        weights = {
            ch: (w.value if present.get(ch, True) else 0.0) for ch, w in self.weights.items()
        }
        for d, _, _, _ in fused:
            self._recent.append(d)
        while self._recent and self._recent[0].t_s < t_s - ORGANISED_S:
            self._recent.popleft()
        organised = self._organised_bpm()
        rhythm = {
            ch: (
                det.judge(t_s)
                if organised is None
                else RhythmJudgement(t_s, 0.0, 0.0, 1.0, organised, "organised")
            )
            for ch, det in self.rhythm.items()
        }
        return BeatsStep(detections, tuple(beats), weights, rhythm)

    def _organised_bpm(self) -> float | None:
        """The rate of the last 4 s when they are an organised, slow rhythm (see
        ``ORGANISED_S``), else None."""
        r = self._recent
        if len(r) < 3 or any(d.corr < ORGANISED_CORR for d in r):
            return None
        ibi = [b.t_s - a.t_s for a, b in zip(list(r)[:-1], list(r)[1:], strict=True)]
        m = sum(ibi) / len(ibi)
        if (
            m <= 0
            or max(abs(v - m) for v in ibi) > ORGANISED_CV * m
            or 60.0 / m >= ORGANISED_MAX_BPM
        ):
            return None
        return 60.0 / m

    # -- fusion ------------------------------------------------------------------------------
    def _fuse(
        self, present: Mapping[Channel, bool]
    ) -> list[tuple[Detection, Channel, tuple[str, ...], float]]:
        """Fused beats whose every lead has decided: (detection, timing lead, leads that saw
        it, share of the weight behind it)."""
        det0 = self.detectors[self.leads[0]]
        decided_s = (det0.total - 1 - det0.refractory) / self.fs_hz - max(
            d.delay_s for d in (self.detectors[c] for c in self.leads)
        )
        horizon = decided_s - FUSE_S
        self._pending.sort(key=lambda cd: cd[1].t_s)
        live = [ch for ch in self.leads if present.get(ch, True)]
        out: list[tuple[Detection, Channel, tuple[str, ...], float]] = []
        while self._pending and self._pending[0][1].t_s < horizon:
            first = self._pending[0][1].t_s
            group: dict[Channel, Detection] = {}
            rest: list[tuple[Channel, Detection]] = []
            for ch, d in self._pending:
                if d.t_s - first <= FUSE_S and ch not in group:
                    group[ch] = d
                else:
                    rest.append((ch, d))
            self._pending = rest
            beat = self._vote(group, live)
            if beat is not None:
                out.append(beat)
        return out

    def _vote(
        self, group: Mapping[Channel, Detection], live: Iterable[Channel]
    ) -> tuple[Detection, Channel, tuple[str, ...], float] | None:
        """A detection seen by two or more leads is a beat. One seen by a single lead is a
        beat when that lead is trusted nearly as much as the best one (``TRUSTED``) and the
        detection is beat-shaped: a lead can miss beats that another shows (a premature beat
        with little energy in one axis), and noise on a poor lead is not beat-shaped."""
        live = list(live)
        saw = [ch for ch in group if ch in live]
        if not saw:
            return None
        q = {ch: self.weights[ch].value for ch in live}
        best = max(q.values())
        if len(live) == 1 or len(saw) >= 2:
            accepted = True
        else:
            d0 = group[saw[0]]
            accepted = q[saw[0]] >= TRUSTED * best and d0.corr >= SINGLE_LEAD_CORR
        for ch in saw:
            self.weights[ch].update("shape", group[ch].corr)
        if not accepted:
            return None
        timing = max(saw, key=lambda ch: q[ch])
        d = group[timing]
        prev = self._last_fused
        valid = (
            prev is not None
            and any(group[ch].valid for ch in saw)
            and d.t_s - prev.t_s < 60.0 / 25.0
        )
        w = {ch: max(q[ch], 1e-3) for ch in saw}
        corr = sum(w[ch] * group[ch].corr for ch in saw) / sum(w.values())
        fused = Detection(d.t_s, d.size, corr, valid, d.t_feature_s, d.strength)
        self._last_fused = fused
        share = sum(q[ch] for ch in saw) / max(sum(q.values()), 1e-9)
        return fused, timing, tuple(ch.lead or ch.role.value for ch in saw), min(1.0, share)

    # -- classification ----------------------------------------------------------------------
    def _classify(
        self, fused: list[tuple[Detection, Channel, tuple[str, ...], float]], t_s: float
    ) -> list[Beat]:
        if self.classifier is None:
            return [
                Beat(d.t_s, Role.ECG, ch.lead, BeatClass.Q, share * d.corr, leads)
                for d, ch, leads, share in fused
            ]
        self._unclassified.extend(fused)
        for d, _ch, leads, _share in fused:
            self.classifier.add_beat(d.t_s, leads)
        out = []
        for c in self.classifier.classified():
            while self._unclassified and self._unclassified[0][0].t_s < c.t_s - 1e-6:
                self._unclassified.pop(0)  # the classifier never skips one; defensive
            if not self._unclassified:
                break
            d, ch, leads, share = self._unclassified.pop(0)
            out.append(Beat(d.t_s, Role.ECG, ch.lead, c.beat_class, share * d.corr, leads))
        return out
