"""The wheel carries what runs on the appliance, models included: built with ``pip wheel``,
installed into a new virtual environment and run from outside the checkout, ``bedside
process --use ppg`` answers RR with the shipped RR-from-PPG model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"


@pytest.mark.e2e
def test_wheel_installed_elsewhere_runs_with_its_shipped_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # nothing may point back at the checkout
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = wheels.glob("bedside_edge-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # the dependencies (numpy, LiteRT, paho...) come from this environment's site-packages;
    # a path listed in a .pth file is added as it is, its own .pth files (such as the
    # checkout's editable install) are not run
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    away = tmp_path / "elsewhere"
    away.mkdir()
    shutil.copy(EXCERPT, away / "rec.csv.gz")
    where = subprocess.run(
        [py, "-c", "import device.inference as i; print(i.__file__, i.shipped_models_dir())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=away,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    done = subprocess.run(
        [venv / "bin" / "bedside", "process", "rec.csv.gz", "--jsonl", "out.jsonl", "--use", "ppg"],
        capture_output=True,
        text=True,
        cwd=away,
    )
    assert done.returncode == 0, done.stderr
    vitals = [json.loads(ln) for ln in (away / "out.jsonl").read_text().splitlines()]
    rr = [v for v in vitals if v["type"] == "vitals" and v["rr_bpm"] is not None]
    assert len(rr) > 100
    assert {v["rr_model"] for v in rr} == {"rr_ppg_cnn_int8"}
