"""The typed keys that cross the core's seams: what is measured (``Quantity``), from which
sensor (``Role``), and the pair that names one estimate (``EstimateKey``).

Both enums are ``StrEnum`` (``device.compat``: 3.11's, or one that behaves the same on 3.10):
``Role.PPG == "ppg"`` and they serialise as their value, so configs, JSON lines and MQTT
payloads keep their plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.compat import StrEnum


class Quantity(StrEnum):
    """What an estimator measures."""

    HR = "hr"  # heart (pulse) rate, beats/min
    RR = "rr"  # respiratory rate, breaths/min


class Role(StrEnum):
    """What a channel measures, whatever the board or file it comes from."""

    ECG = "ecg"  # electrocardiogram (any lead)
    PPG = "ppg"  # photoplethysmogram (pulse oximeter pleth, systole up)
    RESP = "resp"  # thoracic impedance respiration
    AUDIO = "audio"  # breath or heart sounds (microphone, electronic stethoscope)
    ABP = "abp"  # invasive arterial blood pressure (an arterial line), mmHg


#: Roles whose every beat is a pulse wave: they confirm or refute a heartbeat the ECG shows
#: (or fails to show).
PULSATILE = (Role.PPG, Role.ABP)
#: Roles sampled with the heart's timing precision (resampled to ``CARDIAC_FS_HZ``).
CARDIAC = (Role.ECG, Role.PPG, Role.ABP)


@dataclass(frozen=True, order=True)
class Channel:
    """One input signal: a role and, where a role can have several (the ECG's leads), which.

    Written ``ecg`` (a role's only channel) or ``ecg:II`` (lead II): that string is how
    recordings, board layouts, frames and technical alarms name the channel.
    """

    role: Role
    lead: str = ""

    def __str__(self) -> str:
        return f"{self.role.value}:{self.lead}" if self.lead else self.role.value

    @classmethod
    def parse(cls, text: str | Channel) -> Channel:
        """``"ecg:II"`` -> Channel(ECG, "II"); ``"ppg"`` -> Channel(PPG); errors list the roles."""
        if isinstance(text, Channel):
            return text
        name, _, lead = str(text).partition(":")
        return cls(role(name), lead.strip())


@dataclass(frozen=True, order=True)
class EstimateKey:
    """One estimate's identity: a quantity from a role, e.g. (rr, ppg)."""

    quantity: Quantity
    role: Role

    def __str__(self) -> str:
        """``rr_ppg``: the name used in JSON (``sqi``) and in model file names."""
        return f"{self.quantity}_{self.role}"

    @classmethod
    def parse(cls, text: str) -> EstimateKey:
        """``"rr_ppg"`` -> EstimateKey(RR, PPG)."""
        quantity, _, role = text.partition("_")
        return cls(Quantity(quantity), Role(role))


#: Internal rates the estimators and models work at; channels arriving at other rates are
#: resampled to these. 125 Hz keeps the QRS complex (energy up to ~40 Hz) and systolic
#: upstrokes sharp enough for beat timing to a few ms with peak interpolation.
CARDIAC_FS_HZ = 125.0
#: Breathing lives below 1 Hz (60 breaths/min); 25 Hz is plenty and keeps 32 s windows small.
RESP_FS_HZ = 25.0


def role(value: str) -> Role:
    """``Role(value)`` with an error that lists the roles."""
    try:
        return Role(value)
    except ValueError:
        raise ValueError(
            f"unknown role {value!r}; roles are {', '.join(r.value for r in Role)}"
        ) from None
