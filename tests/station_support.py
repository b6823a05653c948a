"""A bed that raises alarms, for the nurses'-side tests (browser page, terminal watch).

The real daemon (``python -m device run``) replays the bundled BIDMC excerpt with:
- the pleth held flat from 20 s (a pulse-oximeter clip off the finger): a ``sensor_off``
  technical alarm (low priority) about 3 s later;
- alarm limits below this patient's steady HR (~77 bpm) and RR (~20/min): ``hr_high`` at
  high priority (HR above ``hr_high_severe_bpm``, latched until acknowledged) and ``rr_high``
  at medium priority, each after the 5 s alarm-condition delay.
So all three priorities and both kinds of alarm are present within seconds of signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lab.faults import ALARM_LIMITS_TOML
from lab.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"


def alarming_recording(tmp: Path, flat_from_s: float = 20.0) -> Path:
    """The real excerpt with its pleth held at its value at ``flat_from_s`` from then on (as
    ``bedside demo --ppg-off`` does); the other channels stay real."""
    from device.recording import Recording, read_recording
    from lab.writers import write_csv

    rec = read_recording(str(EXCERPT))
    col = rec.roles["ppg"]
    x = rec.channels[col].copy()
    i = int(flat_from_s * rec.fs_hz)
    x[i:] = x[i]
    out = tmp / "excerpt_ppg_off.csv.gz"
    channels = {**rec.channels, col: x}
    write_csv(
        out, Recording(str(out), rec.fs_hz, channels, rec.roles), names=list(rec.roles.values())
    )
    return out


def start_alarming_bed(
    broker_url: str, bed: str, tmp: Path, speed: float = 4.0, keepalive_s: int = 2
) -> subprocess.Popen[bytes]:
    """``bedside run`` for ``bed`` as a subprocess; its log goes to ``tmp/daemon-<bed>.log``.
    A short keepalive makes the broker publish the last will soon after a SIGKILL."""
    config = tmp / "alarm_limits.toml"
    config.write_text(ALARM_LIMITS_TOML)
    cmd = [
        sys.executable, "-m", "device", "run",
        "--replay", str(alarming_recording(tmp)), "--speed", str(speed), "--loop",
        "--config", str(config), "--broker", broker_url, "--bed", bed,
        "--keepalive", str(keepalive_s), "--state-dir", str(tmp / "state"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    with open(tmp / f"daemon-{bed}.log", "wb") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
    stop_process(proc, sig, timeout_s)
