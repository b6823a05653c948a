"""``bedside demo`` on a fresh machine: an embedded broker, the daemon on the bundled real
recording, and a station that prints what it receives; exits 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.broker import EmbeddedBroker, find_mosquitto

ROOT = Path(__file__).resolve().parents[1]
VITALS_LINE = re.compile(r"^t=\s*(\d+)s\s+HR\s+(\d+) bpm \(ecg\)\s+RR\s+(\d+\.\d) /min \(resp\)")


def _run_demo(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", "demo", "--seconds", "6", "--speed", "10", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check_output(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    vitals = [m for m in map(VITALS_LINE.match, lines) if m]
    assert len(vitals) >= 10, r.stdout
    # bidmc_09 here: the bedside monitor says 76-78 bpm and the annotators about 20 breaths/min
    assert all(70 <= float(m.group(2)) <= 85 for m in vitals)
    assert all(17 <= float(m.group(3)) <= 23 for m in vitals)
    assert any(ln.startswith("status: online") for ln in lines)
    assert any(ln.startswith("status: offline") for ln in lines)  # the daemon's clean stop
    assert re.search(r"received \d+ vitals", lines[-1])


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed (CI installs it)")
def test_demo_with_embedded_mosquitto() -> None:
    r = _run_demo("--embedded", "mosquitto")
    assert "embedded mosquitto broker" in r.stdout
    _check_output(r)


def test_demo_with_in_process_amqtt_broker() -> None:
    pytest.importorskip("amqtt", reason="amqtt (the [demo] extra) is not installed")
    r = _run_demo("--embedded", "amqtt")
    assert "embedded amqtt broker" in r.stdout
    _check_output(r)


def test_demo_against_a_given_broker_with_the_ppg_clip_off(mosquitto) -> None:  # type: ignore[no-untyped-def]
    r = _run_demo("--broker", mosquitto.url, "--bed", "demo-given", "--ppg-off", "20")
    assert f"broker {mosquitto.url}" in r.stdout
    _check_output(r)
    alarms = [ln for ln in r.stdout.splitlines() if " ALARM " in ln]
    assert alarms and "ACTIVE" in alarms[0] and "sensor_off [ppg]" in alarms[0], r.stdout


def test_embedded_broker_stops_cleanly() -> None:
    b = EmbeddedBroker("auto")
    url = b.start()
    assert url.startswith("mqtt://127.0.0.1:")
    b.stop()
    import socket

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", b.port), timeout=1):
        pass


def test_each_shown_value_is_printed_with_the_quality_of_that_estimate() -> None:
    from lab.commands.demo import format_vitals

    # breath sounds: RR from audio; the heart-sound HR's low quality is not the RR's
    audio = {"t_s": 50.0, "hr_bpm": None, "rr_bpm": 11.9, "hr_source": None}
    audio |= {"rr_source": "audio", "sqi": {"hr_audio": 0.08, "rr_audio": 0.91}}
    line = format_vitals(audio)
    assert "RR 11.9 /min (audio)" in line and line.endswith("quality: RR 0.91")
    ecg = {"t_s": 5.0, "hr_bpm": 77, "rr_bpm": 20.0, "hr_source": "ecg", "rr_source": "resp"}
    ecg["sqi"] = {"hr_ecg": 1.0, "hr_ppg": 0.5, "rr_resp": 0.95}
    assert format_vitals(ecg).endswith("quality: HR 1.00 RR 0.95")
    none = {"t_s": 5.0, "hr_bpm": None, "rr_bpm": None, "sqi": {}}
    assert format_vitals(none).endswith("quality: -")


def test_demo_arrhythmia_sounds_ventricular_tachycardia_through_the_broker(mosquitto) -> None:  # type: ignore[no-untyped-def]
    """MIT-BIH 205's first VT run (about 29 s of signal) travels daemon -> Mosquitto ->
    subscriber as a high-priority ventricular_tachycardia alarm naming its leads, then latches."""
    r = subprocess.run(
        [sys.executable, "-m", "device", "demo", "--arrhythmia", "--broker", mosquitto.url,
         "--bed", "demo-vt", "--seconds", "16", "--speed", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    alarms = [ln for ln in r.stdout.splitlines() if " ALARM " in ln]
    vt = [ln for ln in alarms if "ventricular_tachycardia" in ln]
    assert vt and "ACTIVE" in vt[0] and " high " in vt[0], r.stdout
    assert "ventricular beats" in vt[0] and "ecg:MLII" in vt[0], vt[0]
    assert any("LATCHED" in ln for ln in vt), r.stdout
