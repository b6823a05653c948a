"""Alarms on recordings spliced from real ones (lab/splice.py), through the whole core.

Times here are signal time (seconds of recording), not wall clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.config import load_config
from device.offline import process_recording
from device.recording import Recording, read_csv
from lab import splice

#: The bundled excerpt: 210 s of BIDMC record 09 (HR ~77 bpm, RR ~20, clean ECG, PPG and
#: impedance), so that these tests run on a fresh clone too.
RECORD = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"


@pytest.fixture(scope="module")
def signals() -> tuple[dict[str, np.ndarray], float]:
    rec = read_csv(RECORD)
    return rec.role_signals(), rec.fs_hz


def run(sig: dict[str, np.ndarray], fs: float) -> list[dict[str, Any]]:
    rec = Recording("<spliced>", fs, dict(sig), {r: r for r in sig})
    return [m.to_record() for m in process_recording(rec, load_config(None))]


def active(
    records: list[dict[str, Any]], condition: str, role: str | None = None
) -> list[dict[str, Any]]:
    """Alarms as they first sound (not re-announcements of a latched alarm)."""
    return [
        r
        for r in records
        if r["type"] == "alarm"
        and r["state"] == "active"
        and r["condition"] == condition
        and not r["latched"]
        and (role is None or r["role"] == role)
    ]


def test_quiet_real_segment_raises_no_alarm(signals: tuple[dict[str, np.ndarray], float]) -> None:
    sig, fs = signals
    out = run(sig, fs)
    assert [r for r in out if r["type"] == "alarm"] == []
    assert sum(1 for r in out if r["type"] == "vitals" and r["hr_bpm"] is not None) > 190


def test_tachycardia_step_alarms_within_10_s(signals: tuple[dict[str, np.ndarray], float]) -> None:
    sig, fs = signals
    s, step = splice.hr_step(sig, fs, before_s=90.0, after_s=60.0, factor=130.0 / 77.0)
    out = run(s, fs)
    (alarm,) = active(out, "hr_high")
    assert 0 < alarm["t_s"] - step <= 10.0
    assert alarm["priority"] == "medium" and alarm["value"] > 120
    # nothing else: the impedance was not time-scaled and every signal is present
    assert [r["condition"] for r in out if r["type"] == "alarm"] == ["hr_high"]


def test_apnea_alarms_within_delay_plus_2_s(signals: tuple[dict[str, np.ndarray], float]) -> None:
    sig, fs = signals
    s, start = splice.apnea(sig, fs, start_s=120.0, duration_s=30.0)
    out = run(s, fs)
    (alarm,) = active(out, "apnea")
    assert 0 < alarm["t_s"] - start <= 20.0 + 2.0 and alarm["priority"] == "high"
    # breathing resumed, but apnea is high priority: it stays latched until acknowledged
    later = [
        r
        for r in out
        if r["type"] == "alarm" and r["condition"] == "apnea" and r["t_s"] > alarm["t_s"]
    ]
    assert [r["latched"] for r in later] == [True]
    assert not active(out, "sensor_off"), (
        "the cardiogenic oscillation left in the impedance is not a flat line"
    )


def test_sensor_off_and_signal_lost_on_ppg(signals: tuple[dict[str, np.ndarray], float]) -> None:
    sig, fs = signals
    part = {r: x[: int(200 * fs)] for r, x in sig.items()}
    s, start = splice.flat(part, fs, role="ppg", start_s=120.0)
    (off,) = active(run(s, fs), "sensor_off", "ppg")
    assert 0 < off["t_s"] - start <= 4.0 and off["priority"] == "low"

    s, start = splice.dropout(part, fs, role="ppg", start_s=120.0, duration_s=20.0)
    out = run(s, fs)
    (lost,) = active(out, "signal_lost", "ppg")
    assert 0 < lost["t_s"] - start <= 3.0 and lost["priority"] == "low"
    cleared = [
        r for r in out if r["type"] == "alarm" and r["id"] == lost["id"] and r["state"] == "cleared"
    ]
    assert len(cleared) == 1 and 140.0 <= cleared[0]["t_s"] <= 142.0
    # ECG carried the heart rate throughout
    assert all(
        r["hr_bpm"] is not None for r in out if r["type"] == "vitals" and 20 < r["t_s"] <= 200
    )


def test_all_signals_lost_is_a_high_priority_technical_alarm(
    signals: tuple[dict[str, np.ndarray], float],
) -> None:
    sig, fs = signals
    part = {r: x[: int(100 * fs)] for r, x in sig.items()}
    for role in list(part):
        part, _ = splice.dropout(part, fs, role=role, start_s=60.0, duration_s=40.0)
    out = run(part, fs)
    lost = active(out, "signal_lost")
    assert {r["role"] for r in lost} == {"ecg", "ppg", "resp"}
    assert all(r["priority"] == "high" for r in lost)
    assert not active(out, "apnea"), "a lost impedance lead is a technical alarm, not an apnea"
