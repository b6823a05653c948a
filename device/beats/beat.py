"""The beat stream's types: one ``Detection`` per beat a channel's detector commits, and one
``Beat`` per heartbeat the core reports (ECG leads fused; a pulse channel's own beats)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from device.roles import Role


class BeatClass(str, Enum):
    """AAMI EC57 beat classes (ANSI/AAMI EC57, after the MIT-BIH beat labels).

    - N: beats of sinus node origin (normal, bundle branch blocks, escape beats);
    - S: supraventricular ectopic beats (atrial or junctional premature);
    - V: ventricular ectopic beats (premature ventricular contractions, ventricular escape);
    - F: fusion of a ventricular and a normal beat;
    - Q: unclassifiable (paced beats, beats the classifier cannot judge, pulses).
    """

    N = "N"
    S = "S"
    V = "V"
    F = "F"
    Q = "Q"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Detection:
    """A beat one channel's detector has committed (decided once, never revised).

    ``t_s`` is the fiducial time in signal seconds, corrected for the filters' delays: the R
    peak of an ECG lead, the steepest point of a pulse's upstroke. ``size`` is the detection
    feature's height (QRS slope energy, upstroke steepness), ``corr`` how much its shape
    matches the channel's recent beats (0-1), and ``valid`` whether the interval ending at it
    is usable: the channel's previous beat is known, no gap lies between, and it is shorter
    than the slowest rate reported.
    """

    t_s: float
    size: float
    corr: float
    valid: bool
    #: the detection feature's peak (s, delay-corrected): a smoother fiducial than the R peak
    #: (whose sample can jump between the R and S waves of a biphasic QRS), so intervals, and
    #: the heart rate, are measured between these
    t_feature_s: float = 0.0


@dataclass(frozen=True)
class Beat:
    """One heartbeat as the core reports it (``bedside process --beats``, the alarm strips).

    - ``t_s``: its time in signal seconds: the R peak (ECG), the pulse upstroke (PPG, ABP);
    - ``role`` and ``lead``: the channel that timed it (for ECG, the best lead that saw it);
    - ``beat_class``: its AAMI EC57 class (pulses are Q: a pulse wave does not tell a
      ventricular beat from a normal one);
    - ``quality``: 0-1, how sure the detection is (shape match and lead agreement);
    - ``leads``: every ECG lead that detected it.
    """

    kind: typing.ClassVar[str] = "beat"
    t_s: float
    role: Role
    lead: str
    beat_class: BeatClass
    quality: float
    leads: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "beat",
            "t_s": round(self.t_s, 3),
            "role": self.role.value,
            "lead": self.lead or None,
            "class": self.beat_class.value,
            "quality": round(self.quality, 3),
            "leads": list(self.leads),
        }
