"""What turns a beat's features (``classify.FEATURES``) into a class: signal-processing rules,
or a small network fitted on MIT-BIH by ``convert/beats.py`` and shipped as JSON.

- ``RuleModel``: the signal-processing baseline. A beat whose QRS differs from the
  patient's dominant beat (correlation, width, size) and is wide or comes early is
  ventricular; a beat shaped like the dominant one that comes early is supraventricular;
  anything else normal. The thresholds are textbook physiology, not fitted: a ventricular
  QRS conducts cell to cell and lasts >= 120 ms; "premature" is >= 12 % early; two beats of
  one focus correlate > 0.9 in shape.
- ``MlpModel``: multilayer perceptrons (standardised, clipped features, two ReLU layers,
  softmax over N S V F Q; a few networks fitted from different seeds, probabilities averaged),
  a few thousand weights each, numpy only; its JSON (``beat_mlp.json`` beside this
  file) carries its feature list, cross-validation figures and the rules' figures on the same
  folds. It is used when its cross-validated VEB figures beat the rules' (``prefer_over_dsp``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from device.beats.beat import BeatClass
from device.beats.classify import FEATURES
from device.errors import UserError

MODEL_PATH = Path(__file__).with_name("beat_mlp.json")
CLASS_ORDER = (BeatClass.N, BeatClass.S, BeatClass.V, BeatClass.F, BeatClass.Q)
_IDX = {name: i for i, name in enumerate(FEATURES)}


class BeatModel(Protocol):
    name: str

    def classify(self, features: np.ndarray) -> tuple[BeatClass, float]:
        """(class, confidence in [0, 1]) of one beat's feature vector."""


class RuleModel:
    """The signal-processing baseline (see the module docstring)."""

    name = "rules"

    def classify(self, f: np.ndarray) -> tuple[BeatClass, float]:
        corr, width_ms = f[_IDX["corr"]], f[_IDX["width_ms"]]
        log_width, log_amp = f[_IDX["log_width"]], f[_IDX["log_amp"]]
        rr_prev, rr_prev_next = f[_IDX["rr_prev"]], f[_IDX["rr_prev_next"]]
        differs = corr < 0.8 or log_width > math.log(1.3) or abs(log_amp) > math.log(1.6)
        wide = width_ms >= 120.0 or log_width >= math.log(1.25)
        early = rr_prev < 0.88 and rr_prev_next < 0.9
        if differs and (wide or early):
            return BeatClass.V, 0.8
        if not differs and corr >= 0.9 and early:
            return BeatClass.S, 0.6
        return BeatClass.N, 0.8 if not differs else 0.5


class MlpModel:
    """A small softmax network read from JSON (written by ``convert/beats.py``)."""

    def __init__(self, data: dict[str, Any], source: str = "") -> None:
        feats = tuple(data.get("features", ()))
        if feats != FEATURES:
            raise UserError(
                f"{source or 'beat model'}: features {list(feats)[:4]}... are not this "
                f"device's ({len(FEATURES)} features, {FEATURES[0]}...)",
                "refit it with 'bedside train beats' for this software version",
            )
        classes = tuple(data.get("classes", ()))
        if classes != tuple(c.value for c in CLASS_ORDER):
            raise UserError(
                f"{source}: classes {classes} are not N S V F Q",
                "refit it with 'bedside train beats'",
            )
        self.name = str(data.get("name", "beat_mlp"))
        # one network, or several ("members") whose probabilities are averaged
        members = data.get("members") or [data]
        self.members = [
            (
                float(m.get("clip", 1e9)),  # standardised inputs are clipped to +-clip
                np.asarray(m["mean"], dtype=np.float64),
                np.asarray(m["scale"], dtype=np.float64),
                [
                    (np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
                    for w, b in m["layers"]
                ],
            )
            for m in members
        ]
        self.manifest = data

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> MlpModel:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(
                f"{path}: unreadable beat model ({e})", "reinstall the package"
            ) from None
        return cls(data, str(path))

    def probabilities(self, f: np.ndarray) -> np.ndarray:
        """Class probabilities (N S V F Q) of one feature vector or of rows of them."""
        x = np.asarray(f, dtype=np.float64)
        total: np.ndarray | None = None
        for clip, mean, scale, layers in self.members:
            h = np.clip((x - mean) / scale, -clip, clip)
            for j, (w, b) in enumerate(layers):
                h = h @ w + b
                if j < len(layers) - 1:
                    h = np.maximum(h, 0.0)
            e = np.exp(h - h.max(axis=-1, keepdims=True))
            p = e / e.sum(axis=-1, keepdims=True)
            total = p if total is None else total + p
        assert total is not None
        out: np.ndarray = total / len(self.members)
        return out

    def classify(self, f: np.ndarray) -> tuple[BeatClass, float]:
        p = self.probabilities(f)
        k = int(np.argmax(p))
        return CLASS_ORDER[k], float(p[k])


def default_model() -> BeatModel:
    """The shipped network when it is there and beat the rules in cross-validation, else the
    rules."""
    if MODEL_PATH.is_file():
        m = MlpModel.load()
        if bool(m.manifest.get("prefer_over_dsp", False)):
            return m
    return RuleModel()
