"""What the beat stream says about the heart each second: the evidence the life-threatening
arrhythmia conditions judge (``device/alarms/arrhythmia.py``) and their alarms name.

For each ECG lead: whether it carries signal a beat detector can read (neither lost, flat nor
saturated, and trusted by the lead fusion), when it last saw a QRS, and its fibrillation score.
For each pulsatile channel (pleth, arterial line): whether it carries a readable pulse wave,
when it last saw a pulse, and its pulse rate. And the recent classified ECG beats, from which
rates over a number of consecutive beats and runs of ventricular beats are counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from device.beats.beat import Beat
from device.beats.stream import BeatsStep
from device.dsp.stats import median
from device.inputs import RoleInput
from device.roles import PULSATILE, Channel, Role

#: A lead the fusion weights below this is not trusted to show (or not show) a QRS: its recent
#: detections were not beat-shaped or the other leads did not confirm them.
MIN_LEAD_WEIGHT = 0.3
#: A pulse channel's recent pulses must look alike this much (median shape correlation) for
#: the channel to say anything about the heart: noise and motion make "pulses" of any shape.
MIN_PULSE_SHAPE = 0.6
#: The beats kept for the conditions: enough for the longest run they count (17 beats at
#: 40 bpm is 24 s).
KEEP_S = 30.0
#: Pulse rates are the median interval of the pulses of the last 8 s.
PULSE_RATE_S = 8.0
#: Rhythm judgements kept per lead (one a second).
RHYTHM_HISTORY = 8


@dataclass(frozen=True)
class LeadEvidence:
    """One ECG lead this second."""

    name: str  # the input name, e.g. "ecg:II"
    usable: bool  # carries a signal a QRS detector can read
    weight: float  # the fusion's trust in it (0-1)
    since_qrs_s: float | None  # since its last QRS (None: none seen yet)
    reason: str = ""  # why not usable: "lost", "flat", "saturated", "noisy"
    #: its waveform over the last 4 s (``device.rhythm``): how much it looks like VF/flutter
    #: and like VT (0-1), how analysable it is (0-1), and its dominant rate (per minute)
    vf_score: float | None = None
    vt_score: float | None = None
    rhythm_quality: float = 0.0
    rhythm_rate: float | None = None
    #: its last judgements, oldest first, one a second: (vf_score, vt_score, rate, quality)
    rhythm_history: tuple[tuple[float, float, float | None, float], ...] = ()


@dataclass(frozen=True)
class PulseEvidence:
    """One pulsatile channel (pleth, arterial line) this second."""

    name: str  # e.g. "ppg", "abp"
    usable: bool  # carries a readable pulse wave
    since_pulse_s: float | None  # since its last pulse (None: none yet)
    rate_bpm: float | None  # median rate of its recent pulses (None: too few)
    pulses_4s: int = 0  # pulses of good shape in the last 4 s
    reason: str = ""


@dataclass(frozen=True)
class CardiacEvidence:
    """The heart as the beat stream saw it up to ``t_s``."""

    t_s: float
    leads: tuple[LeadEvidence, ...] = ()
    pulses: tuple[PulseEvidence, ...] = ()
    beats: tuple[Beat, ...] = ()  # classified ECG beats of the last 30 s, in time order
    #: times of the fused ECG beats of the last 30 s as detected (before classification, so
    #: a second or two sooner): rates over consecutive beats are counted on these
    beat_times: tuple[float, ...] = ()

    @property
    def monitored(self) -> bool:
        """At least one ECG lead is in use (whatever its state)."""
        return bool(self.leads)


class EvidenceTracker:
    """Keeps the recent beats and pulses and says, each second, what they show."""

    def __init__(self, channels: list[Channel]) -> None:
        self.leads = [c for c in channels if c.role == Role.ECG]
        self.pulse_channels = [c for c in channels if c.role in PULSATILE]
        self._beats: deque[Beat] = deque()
        self._times: deque[float] = deque()
        self._rhythm: dict[Channel, deque[tuple[float, float, float | None, float]]] = {
            c: deque(maxlen=RHYTHM_HISTORY) for c in self.leads
        }
        self._pulses: dict[Channel, deque[Beat]] = {c: deque() for c in self.pulse_channels}

    def update(
        self,
        t_s: float,
        step: BeatsStep,
        inputs: Mapping[Channel, RoleInput],
        last_beat_s: Mapping[Channel, float],
    ) -> CardiacEvidence:
        for b in step.beats:
            if b.role == Role.ECG:
                self._beats.append(b)
            else:
                ch = Channel(b.role, b.lead)
                if ch in self._pulses:
                    self._pulses[ch].append(b)
        self._times.extend(d.t_s for d in step.detections.get(Role.ECG, ()))
        horizon = t_s - KEEP_S
        while self._beats and self._beats[0].t_s < horizon:
            self._beats.popleft()
        while self._times and self._times[0] < horizon:
            self._times.popleft()
        for q in self._pulses.values():
            while q and q[0].t_s < horizon:
                q.popleft()
        leads = []
        for ch in self.leads:
            inp = inputs.get(ch)
            w = step.lead_weights.get(ch, 0.0)
            reason = _input_reason(inp)
            if not reason and w < MIN_LEAD_WEIGHT:
                reason = "noisy"
            last = last_beat_s.get(ch)
            rj = step.rhythm.get(ch)
            if rj is not None:
                self._rhythm[ch].append(
                    (
                        round(rj.vf_score, 3),
                        round(rj.vt_score, 3),
                        rj.rate_per_min,
                        round(rj.quality, 3),
                    )
                )
            leads.append(
                LeadEvidence(
                    name=str(ch),
                    usable=not reason,
                    weight=round(w, 3),
                    since_qrs_s=None if last is None else t_s - last,
                    reason=reason,
                    vf_score=None if rj is None else round(rj.vf_score, 3),
                    vt_score=None if rj is None else round(rj.vt_score, 3),
                    rhythm_quality=0.0 if rj is None else round(rj.quality, 3),
                    rhythm_rate=rj.rate_per_min if rj is not None else None,
                    rhythm_history=tuple(self._rhythm[ch]),
                )
            )
        pulses = []
        for ch in self.pulse_channels:
            q = self._pulses[ch]
            recent = [b for b in q if b.t_s >= t_s - PULSE_RATE_S]
            shape = median([b.quality for b in recent]) if recent else 0.0
            reason = _input_reason(inputs.get(ch))
            if not reason and (len(recent) < 2 or shape < MIN_PULSE_SHAPE):
                reason = "no readable pulse"
            ibi = [b.t_s - a.t_s for a, b in zip(recent[:-1], recent[1:], strict=True)]
            rate = 60.0 / median(ibi) if len(ibi) >= 2 and median(ibi) > 0 else None
            good4 = sum(1 for b in q if b.t_s >= t_s - 4.0 and b.quality >= MIN_PULSE_SHAPE)
            pulses.append(
                PulseEvidence(
                    name=str(ch),
                    usable=not reason,
                    since_pulse_s=(t_s - q[-1].t_s) if q else None,
                    rate_bpm=rate,
                    pulses_4s=good4,
                    reason=reason,
                )
            )
        return CardiacEvidence(
            t_s, tuple(leads), tuple(pulses), tuple(self._beats), tuple(self._times)
        )


def _input_reason(inp: RoleInput | None) -> str:
    if inp is None:
        return "lost"
    if inp.lost_s >= 1.0:
        return "lost"
    if inp.off_s > 0:
        return inp.off_reason or "flat"
    return ""
