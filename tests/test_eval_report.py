"""``bedside eval --report DIR`` (no --model): the appliance's core against the references on
the bundled real excerpt (record 09 with its Numerics and Breaths), side by side with
NeuroKit2 when it is installed: one HTML page, PNGs and report.json that agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.config import load_config
from device.offline import process_recording
from device.recording import read_recording
from lab.reference import load_bidmc_reference, score

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", "eval", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("report")
    r = _eval("--report", str(out), "--data", str(EXCERPT))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_report_page_plots_and_numbers(report: Path) -> None:
    page = (report / "index.html").read_text()
    data = json.loads((report / "report.json").read_text())
    # every picture the page shows exists and is a PNG
    images = re.findall(r"<img src='?\"?([^'\" >]+)", page)
    assert {"bland_altman_hr.png", "bland_altman_rr.png", "timeseries_bidmc_09_excerpt.png"} <= set(
        images
    )
    for name in images:
        assert (report / name).read_bytes()[:8] == PNG_MAGIC, name

    # the core's scores are those of `bedside process` scored by the one rule, from 32 s
    rec = read_recording(str(EXCERPT))
    ref = load_bidmc_reference(EXCERPT, rec.fs_hz, rec.duration_s)
    est = {"hr": np.full(len(ref.hr_bpm), np.nan), "rr": np.full(len(ref.rr_bpm), np.nan)}
    for v in (m.to_record() for m in process_recording(rec, load_config(None))):
        if v["type"] == "vitals" and int(v["t_s"]) < len(ref.hr_bpm):
            for q in est:
                if v[f"{q}_bpm"] is not None:
                    est[q][int(v["t_s"])] = v[f"{q}_bpm"]
    got = data["per_subject"]["bidmc_09_excerpt"]["scores"]["bedside"]
    for q, r in (("hr", ref.hr_bpm), ("rr", ref.rr_bpm)):
        want = score(est[q][32:], r[32:])
        assert got[q]["mae"] == pytest.approx(want["mae"], abs=1e-9), q
        assert got[q]["n"] == want["n"] > 150
    assert got["hr"]["mae"] < 1.0 and got["rr"]["mae"] < 0.5  # this quiet stretch is easy

    # the page shows the same numbers: the per-subject HR table row, bedside MAE first
    row = re.search(
        r"data-quantity='hr'>.*?<td><a href='#bidmc_09_excerpt'>bidmc_09_excerpt</a></td>"
        r"<td>(\w+)</td><td>([\d.]+)</td>",
        page,
        re.S,
    )
    assert row is not None
    assert row.group(1) == "ecg"
    assert row.group(2) == f"{got['hr']['mae']:.2f}"
    assert "Bland-Altman" in page and "Per subject" in page


def test_report_has_neurokit2_alongside_when_installed(report: Path) -> None:
    pytest.importorskip("neurokit2")
    data = json.loads((report / "report.json").read_text())
    assert data["methods"] == ["bedside", "neurokit2"]
    nk = data["per_subject"]["bidmc_09_excerpt"]["scores"]["neurokit2"]
    # NeuroKit2 on the same ECG and impedance: a real answer, near the monitor's (HR ~77)
    assert nk["hr"]["coverage"] > 0.9 and nk["hr"]["mae"] < 3.0
    assert nk["rr"]["coverage"] > 0.9 and nk["rr"]["mae"] < 5.0
    assert "neurokit2 MAE" in (report / "index.html").read_text()


def test_report_without_peers_and_errors(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    r = _eval("--report", str(tmp_path), "--data", str(EXCERPT), "--no-peers", "--use", "ppg")
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["methods"] == ["bedside"]
    assert data["per_subject"]["bidmc_09_excerpt"]["source"] == {"hr": "ppg", "rr": "ppg"}
    r = _eval("--data", str(EXCERPT))
    assert r.returncode == 2 and "needs --report" in r.stderr
