"""Quantize a trained model to TFLite and write its manifest (FILE.json) beside it.

MODEL is a ``.keras`` file written by ``bedside train`` (its ``.train.json`` and
``.windows.npz`` must sit beside it). The conversion runs in a child process, so a converter
crash becomes a clear message naming what works instead. A verification step runs the TFLite
model and the Keras model on held-out windows and reports their difference in bpm or
breaths/min.

  --quant int8      full-integer (int8 input and output); calibrated on real windows
                    (--calib DIR of recordings, default the windows saved by training)
  --target edgetpu  full int8, static shapes, every op checked against the Edge TPU's list;
                    runs edgetpu_compiler when on PATH, else prints the command
  --target gpu      float16 (what the TFLite GPU delegate runs)

Without --out the model goes to the checkout's ``models/`` folder (the models the wheel ships):
``models/<MODEL stem>_<quant>.tflite``.

Examples:
  bedside convert build/models/hr_ppg_cnn.keras --quant int8     # -> models/hr_ppg_cnn_int8.tflite
  bedside convert build/hr_ppg_cnn.keras --quant float16 --target gpu \
      --out models/hr_ppg_cnn_float16.tflite
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import UserError

#: where a converted model goes without --out: the checkout's models/ (run from the checkout),
#: which pyproject maps to the package device.models in the wheel
DEFAULT_OUT_DIR = Path("models")

#: Ops the Edge TPU compiler maps to the accelerator (Coral's "supported operations" list);
#: anything else runs on the CPU, which defeats the point of the accelerator.
EDGETPU_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "DEQUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "SQUARED_DIFFERENCE",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="trained .keras model from 'bedside train'")
    p.add_argument("--quant", required=True, choices=("float32", "float16", "dynamic", "int8"))
    p.add_argument(
        "--calib",
        type=Path,
        metavar="DIR",
        help="int8: folder of recordings whose windows calibrate the ranges (default: the "
        "real windows saved by training)",
    )
    p.add_argument("--target", default="cpu", choices=("cpu", "gpu", "edgetpu"))
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.tflite",
        help="default models/<MODEL stem>_<quant>.tflite (_edgetpu added for that target): "
        "the checkout's models/ folder, which the wheel ships",
    )


def run(args: argparse.Namespace) -> int:
    model = args.model
    if not model.is_file():
        raise UserError(
            f"{model}: no such model", "give the .keras file written by 'bedside train'"
        )
    stem = model.name.removesuffix(".keras")
    train_json = model.with_name(stem + ".train.json")
    windows = model.with_name(stem + ".windows.npz")
    for need in (train_json, windows):
        if not need.is_file():
            raise UserError(
                f"{need}: missing beside {model.name}",
                "convert the output folder of 'bedside train' as a whole",
            )
    info = json.loads(train_json.read_text())
    quant = args.quant
    if args.out is None:
        suffix = "_edgetpu" if args.target == "edgetpu" else ""
        args.out = DEFAULT_OUT_DIR / f"{stem}_{quant}{suffix}.tflite"
    if args.target == "gpu" and quant != "float16":
        raise UserError(
            f"--target gpu with --quant {quant}",
            "the TFLite GPU delegate runs float16: use --quant float16",
        )
    if args.target == "edgetpu" and quant != "int8":
        raise UserError(
            f"--target edgetpu with --quant {quant}",
            "the Edge TPU runs full-integer models: use --quant int8",
        )
    saved = np.load(windows)
    with tempfile.TemporaryDirectory(prefix="bedside-convert-") as tmp:
        calib_path = Path(tmp) / "calib.npy"
        calib, calib_source = calibration_windows(args.calib, info, saved)
        np.save(calib_path, calib)
        req = {
            "model": str(model),
            "arch": info["arch"],
            "task": info["task"],
            "shape": info["features"]["model_input_shape"],
            "n_bins": info["output"]["n_bins"],
            "members": int(info.get("members", 1)),
            "quant": quant,
            "calib": str(calib_path),
            "out": str(args.out),
        }
        req_path = Path(tmp) / "request.json"
        req_path.write_text(json.dumps(req))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        convert_in_child(req_path, info, quant)
    check = inspect_tflite(args.out)
    if args.target == "edgetpu":
        edgetpu_check(args.out, check)
    verification = verify(model, args.out, saved, info)
    manifest = build_manifest(args, info, check, verification, len(calib), calib_source)
    args.out.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    units = info["output"]["units"]
    print(
        f"{args.out}: {manifest['size_bytes']} bytes, {quant} for {args.target}; "
        f"TFLite vs Keras on {verification['windows']} held-out windows: mean |diff| "
        f"{verification['mean_abs_diff']:.3f} {units}, MAE {verification['mae_tflite']:.3f} vs "
        f"{verification['mae_keras']:.3f} (delta {verification['delta_mae']:+.3f})"
    )
    if args.target == "edgetpu":
        compile_for_edgetpu(args.out)
    return 0


def calibration_windows(
    calib_dir: Path | None, info: dict[str, Any], saved: Any
) -> tuple[np.ndarray, str]:
    if calib_dir is None:
        return np.asarray(
            saved["calib"], dtype=np.float32
        ), "windows saved by training (every subject)"
    from convert.dataset import load_subject, record_files
    from device.features import SPECS

    spec = SPECS[info["features"]["name"]]
    xs = []
    for f in record_files(calib_dir)[:12]:
        s = load_subject(f, spec, info["task"])
        xs.append(s.windows[s.usable][::10])
    return np.concatenate(xs).astype(np.float32), f"windows of {calib_dir}"


def convert_in_child(req_path: Path, info: dict[str, Any], quant: str) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "convert.quantize", str(req_path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    if proc.returncode == 0:
        return
    has_lstm = info["arch"] == "crnn"
    works = (
        "float32, float16 and dynamic work for this CNN-LSTM; for int8 or Edge TPU train --arch cnn"
        if has_lstm
        else "try --quant float16 or dynamic"
    )
    if proc.returncode < 0 or proc.returncode >= 128:
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        name = (
            signal.Signals(sig).name
            if sig in signal.Signals._value2member_map_
            else f"signal {sig}"
        )
        what = (
            f"the TensorFlow converter crashed ({name}, exit {proc.returncode}) converting "
            f"{info['task']}_{'_'.join(info['inputs'])}_{info['arch']} to {quant}"
        )
        if has_lstm and quant == "int8":
            what += " (full-int8 LSTM conversion is a known TensorFlow 2.21 converter crash)"
        raise UserError(what, works)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise UserError(
        f"conversion of {req_path.parent.name} to {quant} failed: {tail}",
        "convert a model written by this version's 'bedside train'; " + works,
    )


def inspect_tflite(path: Path) -> dict[str, Any]:
    """Ops, tensor types and I/O details of a converted model, read back with LiteRT."""
    from device.inference import interpreter_module

    mod = interpreter_module()
    # without the default XNNPACK delegate, which would hide the model's ops behind DELEGATE
    interp = mod.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    ops = sorted({str(op["op_name"]) for op in interp._get_ops_details()})

    def io(d: dict[str, Any]) -> dict[str, Any]:
        scale, zero = d["quantization"]
        return {
            "name": d["name"],
            "shape": [int(v) for v in d["shape"]],
            "shape_signature": [int(v) for v in d["shape_signature"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero),
        }

    float_tensors = sum(
        1 for t in interp.get_tensor_details() if np.dtype(t["dtype"]) == np.float32
    )
    return {
        "ops": ops,
        "input": io(interp.get_input_details()[0]),
        "output": io(interp.get_output_details()[0]),
        "float32_tensors": float_tensors,
    }


def edgetpu_check(path: Path, check: dict[str, Any]) -> None:
    bad = [op for op in check["ops"] if op not in EDGETPU_OPS]
    if bad:
        raise UserError(
            f"{path}: ops {', '.join(bad)} are not Edge TPU operations",
            "use --arch cnn (convolutions, pooling, dense) for Edge TPU models",
        )
    for side in ("input", "output"):
        if check[side]["dtype"] != "int8":
            raise UserError(
                f"{path}: {side} is {check[side]['dtype']}, the Edge TPU needs int8",
                "use --quant int8",
            )
        if any(v < 0 for v in check[side]["shape_signature"]):
            raise UserError(
                f"{path}: {side} shape {check[side]['shape_signature']} is dynamic",
                "the Edge TPU needs static shapes; the converter builds with batch 1",
            )


def compile_for_edgetpu(path: Path) -> None:
    cmd = ["edgetpu_compiler", "-s", "-o", str(path.parent), str(path)]
    if shutil.which("edgetpu_compiler"):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout)
        if proc.returncode != 0:
            raise UserError(
                f"edgetpu_compiler failed on {path}: {proc.stderr.strip()}", "see its log above"
            )
    else:
        print(
            "edgetpu_compiler is not on PATH (it exists for x86-64 Debian/Ubuntu only). "
            "On such a machine run:\n"
            "  sudo apt-get install edgetpu-compiler   "
            "# from Coral's apt repository packages.cloud.google.com/apt\n"
            f"  {' '.join(cmd)}\n"
            f"It writes {path.stem}_edgetpu.tflite (the compiler's naming); ship it with a copy "
            f"of {path.with_suffix('.json').name}."
        )


def verify(model_path: Path, tflite: Path, saved: Any, info: dict[str, Any]) -> dict[str, Any]:
    """The TFLite model against the Keras model on held-out windows, in the output's units."""
    import keras

    from convert.commands.train import decode
    from device.inference import interpreter_module

    x = np.asarray(saved["verify_x"], dtype=np.float32)
    y = np.asarray(saved["verify_y"], dtype=np.float64)
    keras_model = keras.models.load_model(model_path, compile=False)
    k_rate, _ = decode(
        np.asarray(keras_model.predict(x, batch_size=256, verbose=0)), info["output"]
    )
    interp = interpreter_module().Interpreter(model_path=str(tflite), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for w in x:
        v = w[None, ...]
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            v = np.clip(np.round(v / s + z), -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], v)
        interp.invoke()
        o = interp.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            s, z = out["quantization"]
            o = (o.astype(np.float32) - z) * s
        outs.append(o)
    t_rate, _ = decode(np.stack(outs), info["output"])
    diff = np.abs(t_rate - k_rate)
    return {
        "windows": int(len(x)),
        "subjects": info["training"]["folds"][-1],
        "note": "windows of the last CV fold's held-out subjects, every 4th usable second; the "
        "difference TFLite vs Keras is what quantisation costs (the final model saw these "
        "subjects in training, so the MAE values are not cross-validated)",
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff": float(diff.max()),
        "mae_keras": float(np.abs(k_rate - y).mean()),
        "mae_tflite": float(np.abs(t_rate - y).mean()),
        "delta_mae": float(np.abs(t_rate - y).mean() - np.abs(k_rate - y).mean()),
        "units": info["output"]["units"],
    }


def build_manifest(
    args: argparse.Namespace,
    info: dict[str, Any],
    check: dict[str, Any],
    verification: dict[str, Any],
    n_calib: int,
    calib_source: str,
) -> dict[str, Any]:
    import tensorflow as tf

    from device.inference import sha256_file

    feats = info["features"]
    cv = info["cv"]["summary"]
    dsp = (info.get("dsp_baseline") or {}).get("summary")
    # The device prefers a model over DSP only where cross-validation says it is better
    prefer = bool(cv["mean_coverage"] >= 0.95 and (dsp is None or cv["mean_mae"] < dsp["mean_mae"]))
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - the runtime version is informative only
        litert = "unknown"
    name = args.out.stem
    return {
        "name": name,
        "task": info["task"],
        "inputs": info["inputs"],
        "arch": info["arch"],
        "members": int(info.get("members", 1)),
        "quant": args.quant,
        "target": args.target,
        "sample_rate_hz": feats["input_fs_hz"],
        "model_rate_hz": feats["fs_hz"],
        "window_s": feats["window_s"],
        "hop_s": feats["hop_s"],
        "features": feats,
        "preprocessing": "device.features: pipeline resampling to the role's internal rate, causal "
        "Butterworth filters per channel (see features.channels), decimation, "
        f"per-window {feats['normalisation']} normalisation, clipped to +-8",
        "input": check["input"],
        "output": {**info["output"], "tensor": check["output"]},
        "quantization": {
            "mode": args.quant,
            "calibration_windows": n_calib if args.quant == "int8" else 0,
            "calibration_source": calib_source if args.quant == "int8" else None,
            "float32_tensors": check["float32_tensors"],
        },
        "ops": check["ops"],
        "training": info["training"],
        "cv": info["cv"],
        "dsp_baseline": info.get("dsp_baseline"),
        "prefer_over_dsp": prefer,
        "verification": verification,
        "versions": {
            **info["versions"],
            "converter": f"tensorflow {tf.__version__} TFLiteConverter",
            "runtime": f"ai-edge-litert {litert}",
        },
        "sha256": sha256_file(args.out),
        "size_bytes": args.out.stat().st_size,
    }
