"""The wheel carries what runs on the appliance, models included: built with ``pip wheel``,
installed into a new virtual environment and run from outside the checkout, ``bedside
process --use ppg`` answers RR with the shipped RR-from-PPG model.

The models live at the top of the checkout (``models/``) and travel in the wheel as the
package ``device.models`` (pyproject's ``package-dir``); pyproject lists every package by
name, so a test checks that the list is complete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from device.compat import tomllib

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
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(
        p.name for p in (ROOT / "models").iterdir() if p.suffix in (".tflite", ".json")
    )
    assert shipped and all(f"device/models/{n}" in names for n in shipped), sorted(names)
    assert not any(n.startswith("models/") for n in names)  # not a top-level package "models"
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


def test_pyproject_lists_every_package() -> None:
    """A package missing from ``[tool.setuptools] packages`` would be missing from the wheel."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(d.relative_to(ROOT).parts)
        for top in ("device", "convert", "lab", "station")
        for d in [ROOT / top, *(ROOT / top).rglob("*")]
        if (d / "__init__.py").is_file()
    }
    data = {"device.data", "device.models", "station.web", "station.web.vendor"}
    assert listed == found | data


def test_editable_install_finds_the_checkout_models(tmp_path: Path) -> None:
    """The development environment (``pip install -e .``, as .ci/bootstrap makes it) run from
    elsewhere, without PYTHONPATH: the checkout's top-level models/."""
    editable = [
        d
        for d in metadata.distributions(name="bedside-edge")
        if json.loads(d.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable")
    ]
    if not editable:
        pytest.skip("bedside-edge is not installed editable in this environment")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", "import device.inference as i; print(i.shipped_models_dir())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert Path(out) == ROOT / "models"
    assert sorted(Path(out).glob("*.tflite"))
