"""Audio vitals end to end, without ../shared: the bundled breath-sound recording through real
PortAudio capture (ALSA's file plugin, paced with ``[audio] pace_x``) into the daemon, and out
over MQTT as audio-derived vitals identical to what ``bedside process`` computes from the same
samples."""

from __future__ import annotations

import ctypes.util
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAV = ROOT / "device" / "data" / "rrujo_thinklabs_paced12.wav"  # 2000 Hz, paced 12/min
KEYS = ("t_s", "hr_bpm", "rr_bpm", "hr_source", "rr_source", "rr_model", "sqi")


@pytest.mark.e2e
@pytest.mark.skipif(
    ctypes.util.find_library("portaudio") is None,
    reason="PortAudio library missing: apt-get install libportaudio2",
)
def test_live_audio_over_mqtt_agrees_with_process(
    alsa_replay_home: Callable[[Path], tuple[dict[str, str], Path]],
    tmp_path: Path,
    mosquitto,  # type: ignore[no-untyped-def]
    mqtt_listener,  # type: ignore[no-untyped-def]
) -> None:
    env, _raw = alsa_replay_home(WAV)
    cfg = tmp_path / "bedside.toml"
    cfg.write_text(
        "[bed]\nid = 'steth'\n"
        "[audio]\ndevice = 'bedside_replay'\nfs_hz = 2000.0\npace_x = 20.0\n"
        f"[mqtt]\nbroker = '{mosquitto.url}'\n"
    )
    station = mqtt_listener(mosquitto, "bedside/steth/vitals")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        station.wait_for(lambda ms: len(ms) >= 58, 90)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    live = [m.json() for m in station.on("/vitals")][:58]
    assert len(live) == 58, err
    offline = subprocess.run(
        [sys.executable, "-m", "device", "process", str(WAV), "--jsonl", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    processed = [json.loads(line) for line in offline.splitlines()][:58]
    assert [{k: v[k] for k in KEYS} for v in live] == [{k: v[k] for k in KEYS} for v in processed]
    rr = [v["rr_bpm"] for v in live if v["rr_bpm"] is not None]
    assert len(rr) >= 20 and all(abs(r - 12.0) < 1.5 for r in rr)
    assert {v["rr_source"] for v in live if v["rr_bpm"] is not None} == {"audio"}


def test_rate_alarms_work_on_audio_and_apnea_is_not_judged_from_sound() -> None:
    from device.config import parse_config
    from device.offline import process_recording
    from device.recording import read_recording

    # paced at 12/min: below a limit of 13 the rr_low alarm sounds, from the sound
    cfg = parse_config({"alarms": {"rr_low_bpm": 13.0, "condition_delay_s": 3.0}})
    out = [m.to_record() for m in process_recording(read_recording(WAV), cfg)]
    low = [r for r in out if r["type"] == "alarm" and r["condition"] == "rr_low"]
    assert low and low[0]["state"] == "active" and low[0]["detail"] == "from audio"
    assert low[0]["unit"] == "breaths/min"
    # no breath detector is validated on sound: no apnea however long the quiet start lasts
    assert not [r for r in out if r["type"] == "alarm" and r["condition"] == "apnea"]
