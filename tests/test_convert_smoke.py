"""Smoke path of the model workshop: train tiny models, convert to every quantisation, load
each with LiteRT, check manifests; the full-int8 LSTM converter crash is reported cleanly.

Runs the real CLI (``python -m device train|convert``) in child processes on two BIDMC records
for one epoch: this proves the path, not the accuracy (the full training is documented in
docs/models.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bidmc" / "bidmc_csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"needs the shared BIDMC records at {DATA}"),
]


def bedside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tensorflow", reason="the [convert] extra (TensorFlow) is not installed")
    out = tmp_path_factory.mktemp("train")
    p = bedside(
        "train",
        "hr",
        "--data",
        str(DATA),
        "--out",
        str(out),
        "--inputs",
        "ppg",
        "--records",
        "1,2",
        "--folds",
        "2",
        "--epochs",
        "1",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "subject-level 2-fold CV over 2 subjects" in p.stdout
    return out


def test_training_writes_model_and_cv(trained: Path) -> None:
    info = json.loads((trained / "hr_ppg_cnn.train.json").read_text())
    assert (trained / "hr_ppg_cnn.keras").is_file()
    assert set(info["cv"]["per_subject"]) == {"bidmc_01", "bidmc_02"}
    # each subject was scored by the fold that did not train on it
    assert sorted(sum(info["training"]["folds"], [])) == ["bidmc_01", "bidmc_02"]
    for row in info["cv"]["per_subject"].values():
        assert 0.0 <= row["coverage"] <= 1.0 and np.isfinite(row["mae"])
    assert info["features"]["name"] == "hr_ppg" and info["features"]["role"] == "ppg"


def test_out_of_fold_answers_and_blend_bench(trained: Path, tmp_path: Path) -> None:
    """The out-of-fold file holds each subject's model and DSP answers on the same seconds,
    and bench/blend.py scores blends of the two from it (w = 1 is the DSP alone)."""
    z = np.load(trained / "hr_ppg_cnn.oof.npz")
    info = json.loads((trained / "hr_ppg_cnn.train.json").read_text())
    for s in ("bidmc_01", "bidmc_02"):
        n = len(z[f"{s}/seconds"])
        assert all(len(z[f"{s}/{k}"]) == n for k in ("rate", "spread", "usable", "target", "dsp"))
        assert np.isfinite(z[f"{s}/dsp"]).mean() > 0.9  # the DSP answers nearly every second
    out = tmp_path / "blend.json"
    p = subprocess.run(
        [sys.executable, "bench/blend.py", str(trained / "hr_ppg_cnn.oof.npz"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["what"]: r for r in json.loads(out.read_text())["blends"]}
    assert rows["dsp"]["mean_mae"] == pytest.approx(info["dsp_baseline"]["summary"]["mean_mae"])
    # the model alone is the CV figure, rounded to whole bpm (which moves it by <= 0.5)
    assert rows["model"]["mean_mae"] == pytest.approx(info["cv"]["summary"]["mean_mae"], abs=0.5)
    assert rows["model"]["mean_coverage"] == pytest.approx(info["cv"]["summary"]["mean_coverage"])


@pytest.mark.parametrize("quant", ["float32", "float16", "dynamic", "int8"])
def test_convert_each_quantisation(trained: Path, tmp_path: Path, quant: str) -> None:
    from device.inference import TfliteModel, sha256_file

    out = tmp_path / f"hr_ppg_cnn_{quant}.tflite"
    p = bedside("convert", str(trained / "hr_ppg_cnn.keras"), "--quant", quant, "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    man = json.loads(out.with_suffix(".json").read_text())
    for key in (
        "task",
        "inputs",
        "sample_rate_hz",
        "window_s",
        "hop_s",
        "preprocessing",
        "features",
        "input",
        "output",
        "training",
        "cv",
        "verification",
        "versions",
        "sha256",
    ):
        assert key in man, key
    assert man["sha256"] == sha256_file(out)
    assert man["task"] == "hr" and man["inputs"] == ["ppg"] and man["sample_rate_hz"] == 125.0
    assert man["output"]["units"] == "bpm"
    if quant == "int8":
        assert man["input"]["dtype"] == "int8" and man["output"]["tensor"]["dtype"] == "int8"
        assert man["input"]["scale"] > 0
    else:
        assert man["input"]["dtype"] == "float32"
    # a conversion must not change the answer by more than rounding (int8: a fraction of a bpm)
    assert man["verification"]["mean_abs_diff"] < (1.0 if quant == "int8" else 0.05)
    model = TfliteModel(out)  # the device's loader: manifest, sha256 and shape checks
    window = np.zeros(model.spec.shape, dtype=np.float32)
    window[0, 0] = 1.0
    assert model.run(window).shape == (man["output"]["n_bins"],)


def test_edgetpu_target_checks_ops(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "hr_ppg_cnn_edgetpu.tflite"
    p = bedside(
        "convert",
        str(trained / "hr_ppg_cnn.keras"),
        "--quant",
        "int8",
        "--target",
        "edgetpu",
        "--out",
        str(out),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "edgetpu_compiler" in p.stdout
    man = json.loads(out.with_suffix(".json").read_text())
    from convert.commands.convert import EDGETPU_OPS

    assert set(man["ops"]) <= EDGETPU_OPS
    bad = bedside(
        "convert",
        str(trained / "hr_ppg_cnn.keras"),
        "--quant",
        "float16",
        "--target",
        "edgetpu",
        "--out",
        str(tmp_path / "x.tflite"),
    )
    assert bad.returncode == 2 and "use --quant int8" in bad.stderr


def test_lstm_int8_crash_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="the [convert] extra (TensorFlow) is not installed")
    p = bedside(
        "train",
        "rr",
        "--data",
        str(DATA),
        "--out",
        str(tmp_path),
        "--inputs",
        "resp",
        "--arch",
        "crnn",
        "--records",
        "1,2",
        "--folds",
        "2",
        "--epochs",
        "1",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / "rr_resp_crnn_int8.tflite"
    p = bedside(
        "convert", str(tmp_path / "rr_resp_crnn.keras"), "--quant", "int8", "--out", str(out)
    )
    assert p.returncode == 2
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("bedside convert: error:") and "Traceback" not in p.stderr
    assert "float16" in line and "--arch cnn" in line
    assert not out.with_suffix(".json").exists()
    ok = bedside(
        "convert",
        str(tmp_path / "rr_resp_crnn.keras"),
        "--quant",
        "float16",
        "--out",
        str(tmp_path / "rr_resp_crnn_float16.tflite"),
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
