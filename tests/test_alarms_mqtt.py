"""Alarms over MQTT against a real Mosquitto: the acknowledge round trip, the retained
status summary, and determinism (``bedside run --replay`` publishes the same alarm events as
``bedside process`` on the same recording)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BED = "ack1"

pytestmark = pytest.mark.e2e

#: The bundled excerpt (BIDMC 09) has HR ~77 bpm: with hr_high at 70 the daemon must raise a
#: medium-priority hr_high alarm 5 s in; with hr_high_severe at 72 it is high priority and so
#: latches, and it cannot clear by itself.
CONFIG = """
[bed]
id = "{bed}"

[alarms]
hr_high_bpm = 70.0
hr_high_severe_bpm = 72.0
"""

KEYS = (
    "t_s",
    "condition",
    "priority",
    "state",
    "value",
    "limit",
    "role",
    "onset_t_s",
    "latched",
    "id",
)


def alarm_view(rec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(rec[k] for k in KEYS)


def test_ack_round_trip_status_summary_and_determinism(
    mosquitto: Any, mqtt_listener: Any, excerpt: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "bed.toml"
    cfg.write_text(CONFIG.format(bed=BED))
    station = mqtt_listener(mosquitto, [f"bedside/{BED}/alarms", f"bedside/{BED}/status"])
    log = tmp_path / "daemon.log"
    with open(log, "wb") as f:
        # slow enough (x10: 21 s) that the acknowledge lands while the replay is still running
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device",
                "run",
                "--config",
                str(cfg),
                "--replay",
                str(excerpt),
                "--speed",
                "10",
                "--broker",
                mosquitto.url,
            ],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:

        def alarms() -> list[dict[str, Any]]:
            return [m.json() for m in station.on("/alarms")]

        assert station.wait_for(lambda _: any(a["condition"] == "hr_high" for a in alarms()), 60), (
            log.read_text()
        )
        first = next(a for a in alarms() if a["condition"] == "hr_high")
        assert first["state"] == "active" and first["bed"] == BED and first["schema_version"] == 1
        assert first["id"].startswith(f"{BED}-hr_high-")

        # the retained status lists the alarm
        assert station.wait_for(
            lambda _: any(
                a["id"] == first["id"]
                for m in station.on("/status")
                for a in m.json().get("alarms", [])
            ),
            30,
        ), "status never listed the active alarm"

        station.publish(f"bedside/{BED}/cmd/ack", json.dumps({"id": first["id"]}))
        assert station.wait_for(
            lambda _: any(
                a["id"] == first["id"] and a["state"] in ("acknowledged", "cleared")
                for a in alarms()
            ),
            30,
        ), log.read_text()
        acked = [a["state"] for a in alarms() if a["id"] == first["id"]]
        assert "acknowledged" in acked

        # an unknown id is ignored (and logged), not a crash
        station.publish(f"bedside/{BED}/cmd/ack", json.dumps({"id": "no-such-alarm"}))
        station.publish(f"bedside/{BED}/cmd/ack", "not json")
        assert proc.wait(120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)

    # Determinism: without acknowledgements, the same recording gives the same alarm events
    # from `bedside process` and from `bedside run --replay`.
    out = tmp_path / "offline.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "device",
            "process",
            str(excerpt),
            "--config",
            str(cfg),
            "--jsonl",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    offline = [json.loads(ln) for ln in out.read_text().splitlines()]
    offline_alarms = [alarm_view(x) for x in offline if x["type"] == "alarm"]
    assert offline_alarms, "the offline run raised no alarm"

    station2 = mqtt_listener(mosquitto, f"bedside/{BED}/alarms")
    with open(tmp_path / "daemon2.log", "wb") as f:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "device",
                "run",
                "--config",
                str(cfg),
                "--replay",
                str(excerpt),
                "--speed",
                "50",
                "--broker",
                mosquitto.url,
            ],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    assert proc.returncode == 0, (tmp_path / "daemon2.log").read_text()
    assert station2.wait_for(lambda ms: len(ms) >= len(offline_alarms), 20)
    online_alarms = [alarm_view(m.json()) for m in station2.messages]
    assert online_alarms == offline_alarms
