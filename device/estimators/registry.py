"""Which estimators the core runs for the roles it has.

Learned models (``device.inference``) are preferred where a shipped model fits the available
roles and its manifest matches the input; signal processing is the fallback.
"""

from __future__ import annotations

from collections.abc import Iterable

from device.estimators.base import Estimator
from device.estimators.dsp import BeatIntervalHR, BreathIntervalRR


def dsp_estimators(roles: Iterable[str]) -> list[Estimator]:
    """The signal-processing estimators for the roles available."""
    out: list[Estimator] = []
    roles = set(roles)
    for role in ("ecg", "ppg"):
        if role in roles:
            out.append(BeatIntervalHR(role))
    if "resp" in roles:
        out.append(BreathIntervalRR("resp"))
    if "audio" in roles:
        # breathing sounds (microphone / electronic stethoscope): see device/estimators/audio.py
        from device.estimators.audio import BreathSoundRR

        out.append(BreathSoundRR("audio"))
    return out


def select_estimators(roles: Iterable[str], cfg: object | None = None) -> list[Estimator]:
    """Estimators for ``roles``: models where they fit, DSP for the rest."""
    return dsp_estimators(roles)
