"""What the audio channel listens to: breathing, the heart, or both as the placement allows.

A stethoscope or microphone on the chest hears breath sounds and heart sounds; at the neck
mostly breathing; pressed over the apex mostly the heart. ``[audio] listens`` decides:

- ``"breath"``: respiratory rate only (``BreathSoundsRR``);
- ``"heart"``: heart rate only (``HeartSoundsHR``);
- ``"auto"`` (default): both run on the same sound and each publishes only when its own
  quality measure passes (a clear breathing rhythm, a clear beat period). They also watch
  each other (``watch``): a breathing rate on the heart's rhythm (HR or HR/2) is refused, and
  so is a heart rate on the rhythm of the breath sounds' bursts.

Which estimators serve is the registry's decision (``device.estimators.registry``); this
module only says which (quantity, audio) keys a placement leaves out.
"""

from __future__ import annotations

from device.estimators.base import Estimator
from device.roles import EstimateKey, Quantity, Role

#: listens -> the quantities heard
HEARS: dict[str, tuple[Quantity, ...]] = {
    "breath": (Quantity.RR,),
    "heart": (Quantity.HR,),
    "auto": (Quantity.HR, Quantity.RR),
}


def unheard(listens: str) -> set[EstimateKey]:
    """The audio keys a channel that carries ``listens`` does not serve."""
    if listens not in HEARS:
        raise ValueError(f"listens must be one of {', '.join(HEARS)}, not {listens!r}")
    return {EstimateKey(q, Role.AUDIO) for q in Quantity if q not in HEARS[listens]}


def audio_estimators(listens: str = "auto") -> list[Estimator]:
    """The signal-processing estimators of an audio channel that carries ``listens``."""
    from device.config import ModelsConfig
    from device.estimators.registry import select_estimators

    return select_estimators([Role.AUDIO], ModelsConfig(enabled=False), unheard(listens))
