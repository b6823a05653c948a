"""The short soak: 30 minutes of signal through ``bedside run`` and a real Mosquitto at up to
200x (``bench/soak.py``, which runs 24 h of signal as a bench command). Its requirements: RSS
grows by at most 5 % after warm-up, file descriptors do not grow, and the store does not grow
while the broker is up; the station receives every second once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_short_soak_meets_the_soak_requirements(tmp_path: Path, _mosquitto_binary: str) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--signal-h",
            "0.5",
            "--sample-s",
            "0.2",  # >= 20 samples after warm-up even when 30 min take only 9 s at 200x
            "--out",
            str(out),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), run.stdout + run.stderr
    result = json.loads(out.read_text())
    print({k: v for k, v in result.items() if k != "samples"})
    assert result["daemon_exit_code"] == 0
    assert result["signal_s"] >= 1800
    station = result["station"]
    assert station["seq_gaps_vitals"] == 0 and station["duplicates"] == 0, station
    assert result["required"] == {
        "rss_growth_le_5_percent": True,
        "fds_do_not_grow": True,
        "store_does_not_grow": True,
    }, result
    assert run.returncode == 0, run.stdout + run.stderr
