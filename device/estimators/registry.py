"""The one estimator registry: which estimator serves each (quantity, role).

Two kinds of estimator serve a key such as (rr, ppg):

- **signal processing**, one registered entry per key (``SIGNAL_ESTIMATORS``). A *fallback*
  entry (RR from the PPG's breathing modulation) runs only when nothing else measures its
  quantity for the roles in use: with an impedance lead on, the PPG's RR is not needed.
- **learned models** shipped as ``.tflite`` with a manifest. A model serves its key when its
  manifest matches the device's input, its variant suits the delegate, and its
  cross-validation beat the signal-processing baseline measured on the same subjects
  (``prefer_over_dsp``), or when ``[models] force`` names it.

The device (``select_estimators``) and ``bedside train``'s baseline (``signal_estimator``)
both read this registry, so the baseline a model is judged against is the estimator the
device would otherwise run. Adding an estimator is a module plus one ``register`` call.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.errors import UserError
from device.estimators.base import Estimator
from device.roles import EstimateKey, Quantity, Role

if TYPE_CHECKING:
    from device.config import ModelsConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignalEstimator:
    """A registered signal-processing estimator: the key it serves and how to build it.

    ``target`` is ``"module:Class"``, imported only when the estimator is used (so audio
    estimators cost nothing on a bed without a microphone); ``build`` may be given instead.
    """

    key: EstimateKey
    target: str = ""
    build: Callable[[Role], Estimator] | None = None
    fallback: bool = False  # only when no other estimator measures ``key.quantity``

    def make(self) -> Estimator:
        if self.build is not None:
            return self.build(self.key.role)
        module, _, name = self.target.partition(":")
        cls: Callable[[Role], Estimator] = getattr(importlib.import_module(module), name)
        return cls(self.key.role)


#: Registry order is the order the core runs (and reports) them.
SIGNAL_ESTIMATORS: dict[EstimateKey, SignalEstimator] = {}


def register(entry: SignalEstimator) -> None:
    """Add (or replace) the signal-processing estimator of ``entry.key``."""
    SIGNAL_ESTIMATORS[entry.key] = entry


for _key, _target, _fallback in (
    (EstimateKey(Quantity.HR, Role.ECG), "device.estimators.beats:BeatIntervalHR", False),
    (EstimateKey(Quantity.HR, Role.PPG), "device.estimators.beats:BeatIntervalHR", False),
    # the arterial line's pulse rate (its pulses, from the beat stream)
    (EstimateKey(Quantity.HR, Role.ABP), "device.estimators.beats:BeatIntervalHR", False),
    (EstimateKey(Quantity.RR, Role.RESP), "device.estimators.breaths:BreathIntervalRR", False),
    # heart and breath sounds from a microphone or electronic stethoscope: the heart first, so
    # that the breath-sound estimator can refuse this second's heart rhythm
    (EstimateKey(Quantity.HR, Role.AUDIO), "device.estimators.heart_sounds:HeartSoundsHR", False),
    (EstimateKey(Quantity.RR, Role.AUDIO), "device.estimators.breath_sounds:BreathSoundsRR", False),
    # the PPG's breathing modulation: less accurate than impedance, so only as the fallback
    (
        EstimateKey(Quantity.RR, Role.PPG),
        "device.estimators.pulse_modulation:PulseModulationRR",
        True,
    ),
):
    register(SignalEstimator(_key, _target, fallback=_fallback))


def signal_estimator(key: EstimateKey) -> Estimator | None:
    """A new signal-processing estimator for ``key`` (fallbacks included), or None."""
    entry = SIGNAL_ESTIMATORS.get(key)
    return entry.make() if entry is not None else None


# -- models --------------------------------------------------------------------------------
def _model_key(manifest: dict[str, Any]) -> EstimateKey | None:
    inputs = manifest.get("inputs") or []
    if len(inputs) != 1:
        return None
    try:
        return EstimateKey(Quantity(str(manifest["task"])), Role(str(inputs[0])))
    except ValueError:
        return None


def chosen_models(roles: Iterable[Role], mcfg: ModelsConfig) -> dict[EstimateKey, Path]:
    """The model file that serves each key it covers (see the module docstring)."""
    from device.delegates import DELEGATES, resolve_delegate
    from device.inference import models_dir, shipped_models

    if not mcfg.enabled:
        return {}
    roles = set(roles)
    # the delegate the models will run on: the configured one, or the CPU as its fallback
    running_on = resolve_delegate(mcfg).key
    target = DELEGATES[running_on].target
    ranks = {q: i for i, q in enumerate(DELEGATES[running_on].quants)}
    found = shipped_models(models_dir(mcfg), mcfg.disable)
    forced: dict[EstimateKey, Path] = {}
    stems = {p.stem: (p, man) for p, man in found}
    for stem in mcfg.force:
        if stem not in stems:
            raise UserError(
                f"[models] force names {stem!r}, which is not in {models_dir(mcfg)}",
                f"use one of: {', '.join(sorted(stems)) or 'none (the folder has no models)'}",
            )
        path, man = stems[stem]
        key = _model_key(man)
        if key is None:
            raise UserError(f"[models] force: {stem} has no single input role", "force another")
        if key.role in roles:
            forced[key] = path
    # per key: the variant the delegate runs best, then the lowest CV error
    best: dict[EstimateKey, tuple[tuple[int, float], Path]] = {}
    for path, man in found:
        key = _model_key(man)
        if key is None or path.stem in mcfg.disable or key.role not in roles:
            continue
        if (
            man.get("target") != target
            or man.get("quant") not in ranks
            or not man.get("prefer_over_dsp")
        ):
            continue
        cv = (man.get("cv") or {}).get("summary") or {}
        rank = (ranks[str(man["quant"])], float(cv.get("mean_mae", float("inf"))))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, path)
    chosen = {key: path for key, (_rank, path) in best.items()}
    chosen.update(forced)
    return dict(sorted(chosen.items()))


def select_estimators(
    roles: Iterable[str],
    mcfg: ModelsConfig | None = None,
    exclude: Collection[EstimateKey] = (),
) -> list[Estimator]:
    """The estimators the core runs for ``roles``: the chosen models, then signal processing
    for every key no model serves (fallback entries only for a quantity nothing else
    measures), leaving out the keys in ``exclude`` (e.g. heart rate from a microphone that
    only listens to breathing). A chosen model that fails its checks is an error, not a
    silent fallback.

    An estimator with a ``watch(others)`` method is then shown the other estimators on its
    role (the heart- and breath-sound estimators each refuse the other's rhythm)."""
    from device.config import ModelsConfig
    from device.estimators.model import ModelEstimator
    from device.inference import TfliteModel

    mcfg = mcfg or ModelsConfig()
    in_use = [Role(r) for r in roles]
    out: list[Estimator] = [
        ModelEstimator(TfliteModel(path, mcfg, {key.role}))
        for key, path in chosen_models(in_use, mcfg).items()
        if key not in exclude
    ]
    covered = {EstimateKey(e.quantity, e.role) for e in out} | set(exclude)
    entries = [e for e in SIGNAL_ESTIMATORS.values() if e.key.role in in_use]
    for entry in sorted(entries, key=lambda e: e.fallback):
        measured = {k.quantity for k in covered}
        if entry.key in covered or (entry.fallback and entry.key.quantity in measured):
            continue
        out.append(entry.make())
        covered.add(entry.key)
    for est in out:
        watch = getattr(est, "watch", None)
        if callable(watch):
            watch([o for o in out if o is not est and o.role == est.role])
    return out


def describe(estimators: Iterable[Estimator]) -> list[str]:
    """One line per (quantity, role): which estimator serves it (for the start-up log)."""
    return [f"{e.quantity} from {e.role}: {e.name}" for e in estimators]
