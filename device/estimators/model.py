"""A learned estimator: a TFLite model run on causal windows, once per second.

The window comes from ``device.features`` (the same code the model was trained on). The model
answers with logits over a grid of rates; :func:`decode_rates` turns them into a rate and a
spread. The spread is the quality gate: above the manifest's ``max_spread`` (chosen in
cross-validation) the estimator answers None rather than a doubtful number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.estimators.base import Estimate
from device.features import FeatureStream
from device.inference import TfliteModel
from device.roles import Quantity, Role

#: Bins either side of the most likely one that the rate is averaged over: +-3 bins (6 bpm,
#: 3 breaths/min) spans one peak of the distribution, never a harmonic (2x or 0.5x the rate).
LOCAL_BINS = 3


def bin_centers(output: dict[str, Any]) -> np.ndarray:
    return float(output["lo"]) + float(output["step"]) * np.arange(int(output["n_bins"]))


def decode_rates(logits: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, bins) -> (rate, spread) per row.

    rate: probability-weighted mean of the bins within ``LOCAL_BINS`` of the most likely one
    (sub-bin resolution without being pulled towards a second peak); spread: the standard
    deviation of the whole distribution (wide or two-peaked = unsure).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top = p.argmax(axis=1)
    idx = np.arange(p.shape[1])[None, :]
    near = np.abs(idx - top[:, None]) <= LOCAL_BINS
    pl = np.where(near, p, 0.0)
    rate = (pl * centers[None, :]).sum(axis=1) / np.maximum(pl.sum(axis=1), 1e-12)
    mean = (p * centers[None, :]).sum(axis=1)
    spread = np.sqrt((p * (centers[None, :] - mean[:, None]) ** 2).sum(axis=1))
    return rate, spread


class ModelEstimator:
    """HR or RR from a shipped model; ``name`` is the model's (e.g. ``hr_ppg_cnn_int8``)."""

    def __init__(self, model: TfliteModel) -> None:
        self.model = model
        m = model.manifest
        self.name = model.name
        self.quantity = Quantity(str(m["task"]))
        self.role = Role(model.spec.role)
        self.fs_hz = model.spec.input_fs_hz
        self._stream = FeatureStream(model.spec)
        self._centers = bin_centers(m["output"])
        self._max_spread = float(m["output"].get("max_spread", np.inf))
        self.invocations = 0

    def push(self, x: np.ndarray) -> None:
        self._stream.push(x)

    def estimate(self, t_s: float) -> Estimate:
        usable, _ = self._stream.usable()
        if not usable:
            return Estimate(None, 0.0, self.name, self.role, self.quantity)
        logits = self.model.run(self._stream.window())
        self.invocations += 1
        rate, spread = decode_rates(logits, self._centers)
        r, s = float(rate[0]), float(spread[0])
        # quality 1 for a sharp distribution, 0.5 at the gate, falling beyond it
        quality = (
            float(1.0 / (1.0 + (s / self._max_spread) ** 2))
            if np.isfinite(self._max_spread)
            else 1.0
        )
        value = r if s <= self._max_spread else None
        return Estimate(value, quality, self.name, self.role, self.quantity)
