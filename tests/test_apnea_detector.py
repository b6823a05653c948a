"""Apnea comes from the impedance breath detector whichever RR estimator serves (rr, resp).

With the impedance CNN forced as the RR estimator (``[models] force``), a quiet, breathing
patient raises no apnea alarm, the published ``rr_model`` names the model, and a spliced
30 s apnea still alarms within the delay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.config import parse_config
from device.offline import process_recording
from device.recording import Recording, read_csv
from lab import splice

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
SHARED = ROOT.parent / "shared" / "data" / "bidmc" / "bidmc_csv"
FORCED = {"models": {"force": ["rr_resp_cnn_int8"]}}


def run(rec: Recording) -> list[dict[str, Any]]:
    return [m.to_record() for m in process_recording(rec, parse_config(FORCED))]


def apneas(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in out if r["type"] == "alarm" and r["condition"] == "apnea"]


def test_forced_impedance_model_raises_no_false_apnea_on_a_breathing_patient() -> None:
    rec = read_csv(EXCERPT).restricted(["resp"])
    out = run(rec)
    vitals = [r for r in out if r["type"] == "vitals" and r["rr_bpm"] is not None]
    assert len(vitals) > 150
    assert {r["rr_model"] for r in vitals} == {"rr_resp_cnn_int8"}
    assert apneas(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("record", ["bidmc_01", "bidmc_09", "bidmc_13", "bidmc_22"])
def test_forced_impedance_model_quiet_shared_records(record: str) -> None:
    path = SHARED / f"{record}_Signals.csv.gz"
    if not path.exists():
        pytest.skip(f"needs the shared BIDMC records at {SHARED}")
    out = run(read_csv(path))
    assert apneas(out) == []
    assert any(r.get("rr_model") == "rr_resp_cnn_int8" for r in out if r["type"] == "vitals")


def test_forced_impedance_model_still_alarms_on_a_spliced_apnea() -> None:
    rec = read_csv(EXCERPT)
    sig = {r: np.asarray(x) for r, x in rec.role_signals().items()}
    s, start = splice.apnea(sig, rec.fs_hz, start_s=120.0, duration_s=30.0)
    out = run(Recording("<spliced>", rec.fs_hz, s, {r: r for r in s}))
    first = [a for a in apneas(out) if a["state"] == "active" and not a["latched"]]
    assert len(first) == 1
    assert 0 < first[0]["t_s"] - start <= 20.0 + 2.0
