"""The device runs the shipped models with LiteRT: loading, manifest checks, delegates, the
registry's choice, and ``bedside process --use ppg`` naming the model, without TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.config import ModelsConfig, parse_config
from device.errors import UserError
from device.estimators.registry import select_estimators
from device.inference import (
    TfliteModel,
    read_manifest,
    sha256_file,
    shipped_models_dir,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = (
    Path(os.environ.get("BEDSIDE_SHARED_DATA") or ROOT.parent / "shared" / "data")
    / "bidmc"
    / "bidmc_csv"
)
RECORD = DATA / "bidmc_01_Signals.csv.gz"
SHIPPED = sorted(shipped_models_dir().glob("*.tflite"))
CPU_INT8_HR_PPG = shipped_models_dir() / "hr_ppg_cnn_int8.tflite"

needs_models = pytest.mark.skipif(
    not CPU_INT8_HR_PPG.is_file(), reason="models/hr_ppg_cnn_int8.tflite not shipped"
)
needs_data = pytest.mark.skipif(
    not RECORD.is_file(), reason=f"needs the shared BIDMC records at {DATA}"
)


@needs_models
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_loads_with_litert(path: Path) -> None:
    man = read_manifest(path)
    assert man["name"] == path.stem
    assert man["sha256"] == sha256_file(path)
    assert path.stem.startswith(
        f"{man['task']}_{'+'.join(man['inputs'])}_{man['arch']}_{man['quant']}"
    )
    if man["quant"] == "int8":
        assert path.stat().st_size <= 64 * 1024
    if man["target"] != "cpu":
        return  # gpu/edgetpu variants need their delegate
    model = TfliteModel(path)
    out = model.run(np.zeros(model.spec.shape, dtype=np.float32))
    assert out.shape == (man["output"]["n_bins"],) and np.all(np.isfinite(out))


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / CPU_INT8_HR_PPG.name
    shutil.copy(CPU_INT8_HR_PPG, dst)
    shutil.copy(CPU_INT8_HR_PPG.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@needs_models
@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("window_s", 10.0, "window_s"),
        ("input_fs_hz", 250.0, "input_fs_hz"),
        ("role", "ecg", "role"),
        ("name", "hr_unknown", "unknown to this device"),
    ],
)
def test_manifest_mismatch_is_refused(tmp_path: Path, key: str, value: object, expect: str) -> None:
    dst = _copy(tmp_path)
    man = json.loads(dst.with_suffix(".json").read_text())
    man["features"][key] = value
    dst.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(UserError) as e:
        TfliteModel(dst)
    assert expect in e.value.message and str(dst) in e.value.message and "fix:" in e.value.message


@needs_models
def test_altered_model_and_wrong_role_are_refused(tmp_path: Path) -> None:
    dst = _copy(tmp_path)
    with pytest.raises(UserError, match="needs role 'ppg'"):
        TfliteModel(dst, roles={"ecg", "resp"})
    dst.write_bytes(dst.read_bytes() + b"\0")
    with pytest.raises(UserError, match="sha256"):
        TfliteModel(dst)
    dst.with_suffix(".json").unlink()
    with pytest.raises(UserError, match="no manifest"):
        TfliteModel(dst)


def _preferred_cpu_models() -> dict[tuple[str, str], str]:
    """(quantity, role) -> the shipped CPU model whose cross-validation beat DSP."""
    out = {}
    for p in SHIPPED:
        man = read_manifest(p)
        if man["target"] == "cpu" and man["quant"] == "int8" and man["prefer_over_dsp"]:
            out[(man["task"], man["inputs"][0])] = man["name"]
    return out


@needs_models
def test_registry_prefers_models_that_beat_dsp_and_respects_config(tmp_path: Path) -> None:
    preferred = _preferred_cpu_models()
    assert preferred, "no shipped model is preferred over DSP"
    names = {(e.quantity, e.role): e.name for e in select_estimators(["ppg", "resp", "ecg"])}
    for key, name in names.items():
        assert name == preferred.get(key, "dsp"), key
    # RR from PPG: the model serves it beside impedance (the DSP fallback would not run there)
    assert names[("rr", "ppg")] == "rr_ppg_cnn_int8"
    cfg = parse_config({"models": {"enabled": False}})
    assert {e.name for e in select_estimators(["ppg"], cfg.models)} == {"dsp"}
    cfg = parse_config({"models": {"disable": ["rr_ppg_cnn_int8"]}})
    assert all(e.name == "dsp" for e in select_estimators(["ppg"], cfg.models))
    empty = parse_config({"models": {"dir": str(tmp_path)}})
    assert {e.name for e in select_estimators(["ppg", "resp"], empty.models)} == {"dsp"}


@needs_models
# A delegate library that is missing must not reach LiteRT's Delegate, whose half-built object
# then prints "Exception ignored in Delegate.__del__" on the daemon's stderr.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_delegates_fail_clearly_or_fall_back() -> None:
    with pytest.raises(UserError, match="libedgetpu"):
        TfliteModel(CPU_INT8_HR_PPG, ModelsConfig(delegate="edgetpu"))
    # LiteRT's GPU accelerator with no Vulkan driver at all (the loader reads this variable),
    # in a process of its own: the test process keeps LiteRT's CompiledModel libraries out
    code = (
        "from pathlib import Path\nfrom device.config import ModelsConfig\n"
        "from device.errors import UserError\nfrom device.inference import TfliteModel\n"
        f"try:\n    TfliteModel(Path({str(CPU_INT8_HR_PPG)!r}), ModelsConfig(delegate='gpu'))\n"
        "except UserError as e:\n    print(e.message)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VK_ICD_FILENAMES": "/nonexistent/none.json"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "LiteRT GPU accelerator" in done.stdout and "No adapters found" in done.stdout
    # configured fallback: the same model on the CPU
    model = TfliteModel(CPU_INT8_HR_PPG, ModelsConfig(delegate="edgetpu", fallback="cpu"))
    assert model.run(np.zeros(model.spec.shape, np.float32)).ndim == 1
    with pytest.raises(UserError, match="models.delegate"):
        parse_config({"models": {"delegate": "tpu"}})


@needs_models
@needs_data
def test_process_use_ppg_runs_the_model_without_tensorflow(tmp_path: Path) -> None:
    out = tmp_path / "v.jsonl"
    code = (
        "import sys; from device.cli import main; rc = main(sys.argv[1:]); "
        "print('TENSORFLOW_IMPORTED=' + str('tensorflow' in sys.modules), file=sys.stderr); "
        "sys.exit(rc)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, "process", str(RECORD), "--jsonl", str(out), "--use", "ppg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "TENSORFLOW_IMPORTED=False" in p.stderr
    vitals = [r for r in map(json.loads, out.read_text().splitlines()) if r.get("type") == "vitals"]
    preferred = _preferred_cpu_models()
    from lab.reference import load_bidmc_reference

    ref = load_bidmc_reference(RECORD)
    for q, ref_q in (("hr", ref.hr_bpm), ("rr", ref.rr_bpm)):
        got = [v for v in vitals if v.get(f"{q}_bpm") is not None]
        assert len(got) > 0.8 * (len(vitals) - 32), q
        assert {v[f"{q}_model"] for v in got} == {preferred.get((q, "ppg"), "dsp")}
        err = [
            abs(v[f"{q}_bpm"] - ref_q[int(v["t_s"])])
            for v in got
            if v["t_s"] >= 32 and np.isfinite(ref_q[int(v["t_s"])])
        ]
        assert np.mean(err) < 3.0, q


@needs_models
@needs_data
def test_a_300_hz_ppg_gives_the_same_heart_rate() -> None:
    from scipy.signal import resample_poly

    from device.estimators.model import ModelEstimator
    from device.pipeline import run_recording
    from device.recording import read_csv

    rec = read_csv(RECORD).excerpt(0, 120)
    x = rec.role("ppg")

    def hr(sig: np.ndarray, fs: float) -> np.ndarray:
        v = run_recording(
            {"ppg": sig}, fs, estimators=[ModelEstimator(TfliteModel(CPU_INT8_HR_PPG))]
        )
        return np.array([np.nan if r.hr_bpm is None else r.hr_bpm for r in v])

    at125, at300 = hr(x, 125.0), hr(resample_poly(x, 12, 5), 300.0)
    n = min(len(at125), len(at300))
    a, b = at125[20:n], at300[20:n]
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.9
    # the 300 Hz stream passes an extra anti-aliasing filter and resampler: same rate within 1 bpm
    assert np.median(np.abs(a[both] - b[both])) < 1.0
