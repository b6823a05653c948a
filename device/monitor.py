"""The monitor: the streaming pipeline plus the alarm engine, one step per second.

This is the whole functional core: it is fed samples (and gaps, when a live source delivers
nothing) and returns the messages of each completed second, vitals first and then alarm
events. ``bedside process``, ``bedside run`` and the tests all drive it.

Every message has ``kind`` ("vitals" or "alarm": the MQTT topic leaf), ``to_record()`` (the
JSON-lines form) and ``to_payload(bed, ts)`` (the MQTT form).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from device.config import Config
from device.messages import Vitals
from device.pipeline import Pipeline, default_estimators


class Monitor:
    def __init__(self, pipeline: Pipeline, cfg: Config, bed: str = "", epoch_s: float = 0.0) -> None:
        self.pipeline = pipeline
        self.cfg = cfg
        self.bed = bed or cfg.bed.id
        #: wall-clock time (Unix s) of signal time 0; 0 for offline runs and replays, so that
        #: alarm ids are deterministic there and unique across restarts when live
        self.epoch_s = epoch_s

    @classmethod
    def for_inputs(cls, fs_hz: dict[str, float], cfg: Config, bed: str = "", epoch_s: float = 0.0) -> Monitor:
        return cls(Pipeline(fs_hz, default_estimators(fs_hz)), cfg, bed, epoch_s)

    @property
    def t_s(self) -> float:
        """Signal time of the last completed second."""
        return float(self.pipeline.second)

    def feed(self, role: str, x: np.ndarray | Sequence[float]) -> None:
        self.pipeline.feed(role, x)

    def feed_gap(self, role: str, n_samples: int) -> None:
        """``n_samples`` of ``role`` that never arrived (port gone): gaps, and signal_lost after 2 s."""
        self.pipeline.feed_gap(role, n_samples)

    def step(self) -> list[Any]:
        """Messages (Vitals, then alarm events) for every second now complete."""
        out: list[Any] = []
        for v in self.pipeline.drain():
            out.append(v)
            out.extend(self._alarms(v))
        return out

    def acknowledge(self, alarm_id: str) -> list[Any]:
        """Acknowledge an alarm (from ``<prefix>/<bed>/cmd/ack``); returns the state-change events."""
        return []

    def alarm_summary(self) -> list[dict[str, Any]]:
        """The alarms currently active or latched, for the retained status message."""
        return []

    def _alarms(self, v: Vitals) -> list[Any]:
        return []
