"""The estimator interface: samples in, one estimate with a quality out, once per second.

An estimator owns its causal filters and ring buffers. The pipeline pushes it samples of one
role at the estimator's own rate (``fs_hz``; NaN marks a gap) and asks for an estimate at
each second of signal time. When quality is too poor to trust, it returns ``value=None``
rather than a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer at one second.

    ``value`` is in the quantity's unit (bpm or breaths/min) or None; ``quality`` in [0, 1]
    is the signal-quality index behind it; ``last_event_s`` is the signal time of the newest
    beat or breath detected (for apnea), when the estimator detects events.
    """

    value: float | None
    quality: float
    estimator: str
    role: str
    quantity: str
    last_event_s: float | None = None
    detail: dict[str, float] = field(default_factory=dict)


class Estimator(Protocol):
    """What the pipeline needs of an HR or RR estimator."""

    name: str  # e.g. "dsp" or "hr_ppg_cnn_int8"
    quantity: str  # "hr" or "rr"
    role: str  # input role: "ecg", "ppg", "resp", "audio"
    fs_hz: float  # the rate samples must be pushed at

    def push(self, x: np.ndarray) -> None:
        """Append samples (NaN = gap) at ``fs_hz``."""

    def estimate(self, t_s: float) -> Estimate:
        """The estimate for the signal up to ``t_s`` (seconds since the stream started)."""
