"""Running TFLite models on the device with LiteRT (never TensorFlow).

- ``ai_edge_litert`` is the runtime; ``tflite_runtime`` is the fallback for older images.
- Delegates are plug-ins (``device.delegates``: ``cpu``, ``gpu``, ``edgetpu``): each knows
  how to load itself and says clearly what is missing. A configured delegate that cannot load
  is fatal unless ``[models] fallback = "cpu"`` lets the models run on the CPU instead (then
  the bed reports itself degraded).
- Each ``.tflite`` has a manifest ``.json`` beside it. Before a model runs, the manifest is
  checked against the file (sha256), against the device's own window definition
  (``device.features``: role, rate, window, channels, normalisation) and against the
  interpreter's input tensor; any mismatch is refused with a clear ``UserError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from device.config import ModelsConfig
from device.delegates import DELEGATES, DelegateChoice, open_library, resolve_delegate
from device.errors import UserError
from device.features import SPECS, FeatureSpec


def shipped_models_dir() -> Path:
    """The models shipped in the package (``device/models``), wherever it is installed."""
    return Path(str(importlib.resources.files("device") / "models"))


#: Manifest keys the device relies on.
REQUIRED_KEYS = ("name", "task", "inputs", "features", "output", "quantization", "sha256", "target")


# -- runtime -----------------------------------------------------------------------------
def interpreter_module() -> Any:
    """The LiteRT interpreter module: ai_edge_litert, else tflite_runtime."""
    try:
        from ai_edge_litert import interpreter

        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter  # type: ignore[import-not-found,unused-ignore]

        return interpreter
    except ImportError:
        raise UserError(
            "no TFLite runtime: neither ai_edge_litert nor tflite_runtime can be imported",
            "pip install ai-edge-litert (or set [models] enabled = false to use signal processing)",
        ) from None


#: What LiteRT's C++ runtime prints on stderr when an interpreter starts, on every start: not
#: news on a ward log (and no environment variable turns it off).
_LITERT_CHATTER = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def litert_info_filtered() -> Iterator[None]:
    """Hold back LiteRT's informational start-up line from stderr (file descriptor 2, where
    its C++ logger writes); anything else written there meanwhile is passed on unchanged."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().splitlines(keepends=True):
                if line.rstrip() not in _LITERT_CHATTER:
                    os.write(2, line)


# -- delegates (device.delegates: one module each, a registry, the fallback) -------------
load_delegate = open_library  # the name older code imports


# -- manifests ---------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(tflite: Path) -> dict[str, Any]:
    path = tflite.with_suffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{tflite}: no manifest {path.name} beside it",
            "ship each model with the manifest written by 'bedside convert'",
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(
            f"{path}: unreadable manifest ({e})", "regenerate it with 'bedside convert'"
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: manifest is not a JSON object", "regenerate it with 'bedside convert'"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UserError(
            f"{path}: manifest lacks {', '.join(missing)}", "regenerate it with 'bedside convert'"
        )
    return data


def spec_mismatch(manifest_features: dict[str, Any], spec: FeatureSpec) -> str | None:
    """The first difference between a manifest's window definition and the device's, or None."""
    mine = json.loads(json.dumps(spec.to_manifest()))  # tuples -> lists, as in JSON
    for key in (
        "role",
        "input_fs_hz",
        "fs_hz",
        "decimate",
        "window_s",
        "hop_s",
        "n_samples",
        "channels",
        "normalisation",
        "transform",
        "acf_max_lag_s",
        "model_input_shape",
        "version",
    ):
        if manifest_features.get(key) != mine.get(key):
            have, want = manifest_features.get(key), mine.get(key)
            return f"{key}: model has {have!r}, device computes {want!r}"
    return None


def check_manifest(
    tflite: Path, manifest: dict[str, Any], roles: set[str] | None = None
) -> FeatureSpec:
    """Check a manifest against the file, the device's window definition and the roles."""
    feats = manifest["features"]
    name = feats.get("name") if isinstance(feats, dict) else None
    spec = SPECS.get(str(name))
    if spec is None:
        raise UserError(
            f"{tflite}: manifest window definition {name!r} is unknown to this device",
            f"known: {', '.join(SPECS)}; use a model converted for this software version",
        )
    problem = spec_mismatch(feats, spec)
    if problem:
        raise UserError(
            f"{tflite}: manifest does not match the device's input ({problem})",
            "retrain/convert the model with this software version, or remove it from the "
            "models dir",
        )
    if roles is not None and spec.role not in roles:
        raise UserError(
            f"{tflite}: model needs role {spec.role!r}, the input has "
            f"{', '.join(sorted(roles)) or 'none'}",
            "use a model for the roles the device has",
        )
    digest = sha256_file(tflite)
    if digest != manifest["sha256"]:
        raise UserError(
            f"{tflite}: sha256 {digest[:12]}... differs from its manifest's "
            f"{str(manifest['sha256'])[:12]}...",
            "the model file or manifest was altered; reinstall both",
        )
    return spec


# -- a loaded model ----------------------------------------------------------------------
class TfliteModel:
    """One interpreter: float windows in, float outputs out (quantizing where the model is int8)."""

    def __init__(
        self, path: Path, cfg: ModelsConfig | None = None, roles: set[str] | None = None
    ) -> None:
        cfg = cfg or ModelsConfig()
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.spec = check_manifest(self.path, self.manifest, roles)
        self.name = str(self.manifest["name"])
        #: where it runs: the configured delegate, or the CPU as its configured fallback
        self.delegate: DelegateChoice = resolve_delegate(cfg)
        delegates = DELEGATES[self.delegate.key].load(cfg)
        mod = interpreter_module()
        try:
            with litert_info_filtered():
                self._interp = mod.Interpreter(
                    model_path=str(self.path),
                    experimental_delegates=delegates or None,
                    num_threads=cfg.threads,
                )
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(
                f"{self.path}: LiteRT cannot load the model ({e})",
                "reconvert it with 'bedside convert' for this delegate",
            ) from None
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        want = (1, *self.spec.shape)
        if tuple(int(v) for v in self._in["shape"]) != want:
            raise UserError(
                f"{self.path}: input tensor shape {tuple(self._in['shape'])} is not {want} "
                "(the manifest's window)",
                "reconvert the model from its training output",
            )

    def run(self, window: np.ndarray) -> np.ndarray:
        """One window (n_samples, channels) -> the model's output vector as float."""
        x = np.asarray(window, dtype=np.float32)[None, ...]
        dt = self._in["dtype"]
        if dt != np.float32:
            scale, zero = self._in["quantization"]
            info = np.iinfo(dt)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dt)
        self._interp.set_tensor(self._in["index"], x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out["index"])[0]
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            return np.asarray((y.astype(np.float32) - zero) * scale, dtype=np.float32)
        return np.asarray(y, dtype=np.float32)


def models_dir(cfg: ModelsConfig | None) -> Path:
    """The configured models folder, or the shipped one; a configured folder that does not
    exist is an error (falling back to signal processing without a word would hide it)."""
    if cfg is None or not cfg.dir:
        return shipped_models_dir()
    path = Path(cfg.dir)
    if not path.is_dir():
        raise UserError(
            f"[models] dir = {cfg.dir!r} is not a folder",
            "point it at a folder of .tflite models with their .json manifests, or remove the "
            "key to use the models shipped with the software",
        )
    return path


def shipped_models(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(path, manifest) of every model with a readable manifest in ``directory``."""
    out = []
    for p in sorted(directory.glob("*.tflite")):
        try:
            out.append((p, read_manifest(p)))
        except UserError:
            continue  # reported when chosen; an unrelated file must not stop the device
    return out
