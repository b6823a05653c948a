"""A looping replay restarts the core at its loop point: a new signal clock, and alarms still
open are ended saying so, not cleared as if their condition had gone away."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from device.config import JsonlConfig, load_config
from device.daemon import Daemon
from device.monitor import Message
from device.recording import Recording, read_csv
from device.sinks.jsonl import JsonlSink
from device.sources.replay import ReplaySource
from lab import splice

EXCERPT = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"


class StopInSecondPass(JsonlSink):
    """The JSON-lines sink, stopping the daemon 30 s into the second pass."""

    def __init__(self, path: Path, stop: threading.Event) -> None:
        super().__init__(JsonlConfig(path=str(path), append=False))
        self.stop_event, self.last_t = stop, 0.0
        self.passes = 1

    def send(self, msg: Message, ts: float) -> None:
        super().send(msg, ts)
        if msg.kind == "vitals":
            self.passes += msg.t_s < self.last_t
            self.last_t = msg.t_s
            if self.passes == 2 and msg.t_s >= 30:
                self.stop_event.set()


def test_loop_restarts_the_signal_clock_and_ends_open_alarms(tmp_path: Path) -> None:
    import json

    rec = read_csv(EXCERPT).excerpt(0, 40)
    sig = {r: np.asarray(x) for r, x in rec.role_signals().items()}
    flat, _ = splice.flat(sig, rec.fs_hz, role="ppg", start_s=20.0)  # the clip falls off at 20 s
    source = ReplaySource(Recording("<ppg off>", rec.fs_hz, flat, {r: r for r in flat}), 100, True)
    cfg = load_config(None)
    cfg.mqtt.enabled = False
    stop = threading.Event()
    Daemon(cfg, [source], [StopInSecondPass(tmp_path / "out.jsonl", stop)], stop=stop).run()
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    times = [r["t_s"] for r in out if r["type"] == "vitals"]
    assert times[:40] == [float(t) for t in range(1, 41)]
    assert times[40:70] == [float(t) for t in range(1, 31)], "the second pass has a new clock"
    alarms = [r for r in out if r["type"] == "alarm" and r["condition"] == "sensor_off"]
    active, ended = alarms[:2]
    assert active["state"] == "active" and active["role"] == "ppg" and 20 < active["t_s"] < 30
    assert ended["state"] == "cleared" and ended["id"] == active["id"] and ended["t_s"] == 40
    assert "looped" in ended["detail"]
    # the clip falls off again in the second pass: its own alarm, with a new id
    again = [a for a in alarms[2:] if a["state"] == "active"]
    assert len(again) == 1 and again[0]["id"] != active["id"]
