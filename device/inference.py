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
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from device.config import ModelsConfig
from device.delegates import DELEGATES, DelegateChoice, open_library, resolve_delegate
from device.delegates.litert_gpu import Tensor, tensor_of
from device.errors import UserError
from device.features import SPECS, FeatureSpec


def shipped_models_dir() -> Path:
    """The models shipped with the software, wherever it is installed: ``device/models`` in
    an installed wheel (pyproject maps the checkout's top-level ``models/`` there), the
    checkout's ``models/`` when the package runs from a checkout (``PYTHONPATH=.``, or an
    editable install)."""
    packaged = Path(str(importlib.resources.files("device") / "models"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "models"


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


def _number(v: Any, finite: bool = True) -> bool:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    return ok and (math.isfinite(v) or not finite)


def manifest_problem(data: dict[str, Any]) -> str | None:
    """The first value of a manifest the device could not use, or None."""
    from device.recording import ROLES

    inputs = data.get("inputs")
    output = data.get("output")
    feats = data.get("features")
    checks: list[tuple[str, bool, str]] = [
        ("name", isinstance(data.get("name"), str), "a string"),
        ("task", data.get("task") in ("hr", "rr"), "'hr' or 'rr'"),
        (
            "inputs",
            isinstance(inputs, list) and bool(inputs) and all(i in ROLES for i in inputs),
            f"a list of roles ({', '.join(ROLES)})",
        ),
        ("quant", isinstance(data.get("quant", ""), str), "a string"),
        ("target", isinstance(data.get("target"), str), "a string (cpu, gpu, edgetpu)"),
        ("prefer_over_dsp", isinstance(data.get("prefer_over_dsp", False), bool), "true or false"),
        ("sha256", isinstance(data.get("sha256"), str), "a hex string"),
        ("features", isinstance(feats, dict) and isinstance(feats.get("name"), str), "an object"),
        ("quantization", isinstance(data.get("quantization"), dict), "an object"),
        (
            "output",
            isinstance(output, dict)
            and _number(output.get("lo"))
            and _number(output.get("step"))
            and output["step"] > 0
            and isinstance(output.get("n_bins"), int)
            and 1 <= output["n_bins"] <= 10000
            # max_spread may be infinite (no gate), not NaN (a gate nothing passes)
            and _number(output.get("max_spread", 0.0), finite=False)
            and not math.isnan(output.get("max_spread", 0.0)),
            "an object with numbers lo, step > 0, n_bins 1-10000 and max_spread",
        ),
    ]
    cv = data.get("cv", {})
    summary = cv.get("summary", {}) if isinstance(cv, dict) else None
    checks.append(
        (
            "cv",
            # NaN when cross-validation scored no subject (prefer_over_dsp is then false)
            isinstance(summary, dict) and _number(summary.get("mean_mae", 0.0), finite=False),
            "an object whose summary has a number mean_mae",
        )
    )
    for key, ok, want in checks:
        if not ok:
            return f"'{key}' = {json.dumps(data.get(key))[:60]} is not {want}"
    return None


def read_manifest(tflite: Path) -> dict[str, Any]:
    path = tflite.with_suffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{tflite}: no manifest {path.name} beside it",
            "ship each model with the manifest written by 'bedside convert'",
        ) from None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
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
    problem = manifest_problem(data)
    if problem:
        raise UserError(f"{path}: manifest {problem}", "regenerate it with 'bedside convert'")
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
        try:
            self._runner: Runner = DELEGATES[self.delegate.key].open(self.path, cfg)
        except (ValueError, RuntimeError) as e:
            raise UserError(
                f"{self.path}: LiteRT cannot load the model ({e})",
                "reconvert it with 'bedside convert' for this delegate",
            ) from None
        #: where the ops run: "cpu", or "gpu" / "gpu+cpu" on LiteRT's GPU accelerator
        self.where = self._runner.where
        self._in, self._out = self._runner.input, self._runner.output
        want = (1, *self.spec.shape)
        if self._in.shape != want:
            raise UserError(
                f"{self.path}: input tensor shape {self._in.shape} is not {want} "
                "(the manifest's window)",
                "reconvert the model from its training output",
            )

    def run(self, window: np.ndarray) -> np.ndarray:
        """One window (n_samples, channels) -> the model's output vector as float."""
        x = np.asarray(window, dtype=np.float32)[None, ...]
        dt = self._in.dtype
        if dt != np.float32:
            info = np.iinfo(dt)
            x = np.clip(np.round(x / self._in.scale + self._in.zero_point), info.min, info.max)
            x = x.astype(dt)
        y = self._runner.invoke(x)[0]
        if self._out.dtype != np.float32:
            scale, zero = self._out.scale, self._out.zero_point
            return np.asarray((y.astype(np.float32) - zero) * scale, dtype=np.float32)
        return np.asarray(y, dtype=np.float32)


class Runner(Protocol):
    """One loaded model as a delegate opens it (``Delegate.open``)."""

    where: str
    input: Tensor
    output: Tensor

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """The input tensor (in its dtype, with the batch axis) -> the output tensor."""


class InterpreterRunner:
    """LiteRT's classic Interpreter, with the delegate objects a delegate loaded (none: the
    CPU's XNNPACK kernels)."""

    def __init__(self, path: Path, delegates: list[Any], threads: int) -> None:
        with litert_info_filtered():
            self._interp = interpreter_module().Interpreter(
                model_path=str(path), experimental_delegates=delegates or None, num_threads=threads
            )
            self._interp.allocate_tensors()
        self.where = "delegate" if delegates else "cpu"
        i, o = self._interp.get_input_details()[0], self._interp.get_output_details()[0]
        self._i, self._o = int(i["index"]), int(o["index"])
        self.input, self.output = tensor_of(i), tensor_of(o)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._i, x)
        self._interp.invoke()
        return np.array(self._interp.get_tensor(self._o))


def models_dir(cfg: ModelsConfig | None) -> Path:
    """The configured models folder, or the shipped one; a configured folder that does not
    exist is an error (falling back to signal processing without a word would hide it)."""
    if cfg is None or not cfg.dir:
        return shipped_models_dir()
    path = Path(cfg.dir)
    try:
        path.stat()
    except PermissionError as e:  # is_dir() would say False: "not a folder" is the wrong lead
        from device.access import read_error

        raise read_error(path, e, "[models] dir") from None
    except OSError:
        pass  # not there: said below
    if not path.is_dir():
        raise UserError(
            f"[models] dir = {cfg.dir!r} is not a folder",
            "point it at a folder of .tflite models with their .json manifests, or remove the "
            "key to use the models shipped with the software",
        )
    return path


def shipped_models(
    directory: Path, skip: list[str] | tuple[str, ...] = ()
) -> list[tuple[Path, dict[str, Any]]]:
    """(path, manifest) of every model in ``directory`` but those named in ``skip``.

    A model whose manifest is missing or broken is an error (a models folder holds models;
    one that cannot be read is a damaged install, not a file to pass over in silence)."""
    out = []
    for p in sorted(directory.glob("*.tflite")):
        if p.stem in skip:
            continue
        try:
            out.append((p, read_manifest(p)))
        except UserError as e:
            raise UserError(
                e.what,
                f"{e.fix}, or remove the model, or list '{p.stem}' in [models] disable",
            ) from None
    return out
