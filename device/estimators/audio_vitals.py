"""What the audio channel listens to: breathing, the heart, or both as the placement allows.

A stethoscope or microphone on the chest hears breath sounds and heart sounds; at the neck
mostly breathing; pressed over the apex mostly the heart. ``[audio] listens`` decides:

- ``"breath"``: respiratory rate only (``BreathSoundsRR``);
- ``"heart"``: heart rate only (``HeartSoundsHR``);
- ``"auto"`` (default): both run on the same sound and each publishes only when its own
  quality measure passes (a clear breathing rhythm, a clear beat period). They also watch
  each other: a breathing rate on the heart's rhythm (HR or HR/2) is refused, and so is a
  heart rate on the rhythm of the breath sounds' bursts (inspirations and expirations).

The estimators are created in the order the pipeline asks them for their estimates: the
heart first, so the breath estimator checks against this second's heart rate.
"""

from __future__ import annotations

from device.estimators.base import Estimator
from device.estimators.breath_sounds import BreathSoundsRR
from device.estimators.heart_sounds import HeartSoundsHR

LISTENS = ("breath", "heart", "auto")


def audio_estimators(listens: str = "auto", role: str = "audio") -> list[Estimator]:
    """The estimators for an audio channel that carries ``listens``."""
    if listens not in LISTENS:
        raise ValueError(f"listens must be one of {', '.join(LISTENS)}, not {listens!r}")
    heart = HeartSoundsHR(role) if listens in ("heart", "auto") else None
    breath = BreathSoundsRR(role) if listens in ("breath", "auto") else None
    if heart is not None and breath is not None:
        breath.heart = heart
        heart.breath = breath
    return [e for e in (heart, breath) if e is not None]
