"""Which estimators the core runs for the roles it has.

Learned models (``device.inference``) are preferred where a shipped model fits the available
roles, its manifest matches the device's input, and its cross-validation beat the
signal-processing estimator on the same subjects (``prefer_over_dsp`` in the manifest).
Signal processing covers every (quantity, role) no model covers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from device.estimators.base import Estimator
from device.estimators.dsp import BeatIntervalHR, BreathIntervalRR

log = logging.getLogger(__name__)

#: Model variants each delegate runs, best first.
QUANT_PREFERENCE = {
    "cpu": ("int8", "dynamic", "float16", "float32"),
    "gpu": ("float16", "float32"),
    "edgetpu": ("int8",),
}


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


def _models_config(cfg: object | None) -> Any:
    from device.inference import ModelsConfig

    extra = getattr(cfg, "extra", None)
    if isinstance(extra, dict) and isinstance(extra.get("models"), ModelsConfig):
        return extra["models"]
    return ModelsConfig()


def model_estimators(roles: Iterable[str], cfg: object | None = None) -> list[Estimator]:
    """One model estimator per (quantity, role) that a preferred shipped model covers."""
    from device.estimators.model import ModelEstimator
    from device.inference import DELEGATES, TfliteModel, models_dir, shipped_models

    mcfg = _models_config(cfg)
    if not mcfg.enabled:
        return []
    roles = set(roles)
    directory: Path = models_dir(mcfg)
    target = DELEGATES[mcfg.delegate].target
    ranks = {q: i for i, q in enumerate(QUANT_PREFERENCE[mcfg.delegate])}
    # per (quantity, role): the variant the delegate runs best, then the lowest CV error
    best: dict[tuple[str, str], tuple[tuple[int, float], Path]] = {}
    for path, man in shipped_models(directory, mcfg.disable):
        inputs = man.get("inputs") or []
        if path.stem in mcfg.disable or len(inputs) != 1 or inputs[0] not in roles:
            continue
        if (
            man.get("target") != target
            or man.get("quant") not in ranks
            or not man.get("prefer_over_dsp")
        ):
            continue
        key = (str(man["task"]), str(inputs[0]))
        cv = (man.get("cv") or {}).get("summary") or {}
        rank = (ranks[str(man["quant"])], float(cv.get("mean_mae", float("inf"))))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, path)
    out: list[Estimator] = []
    for (_task, role), (_rank, path) in sorted(best.items()):
        # a chosen model that fails its checks is an error, not a silent fallback
        out.append(ModelEstimator(TfliteModel(path, mcfg, {role})))
        log.debug("using model %s for %s", path.name, role)
    return out


def select_estimators(roles: Iterable[str], cfg: object | None = None) -> list[Estimator]:
    """Estimators for ``roles``: models where they fit, DSP for the rest."""
    roles = list(roles)
    models = model_estimators(roles, cfg)
    covered = {(m.quantity, m.role) for m in models}
    return models + [e for e in dsp_estimators(roles) if (e.quantity, e.role) not in covered]
