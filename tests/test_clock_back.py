"""The wall clock set back by an hour (simulated: an injected clock) must not break ``seq``,
the order messages are sent in, or the uniqueness of alarm ids, within a run or across a
restart. A real Mosquitto and the real daemon loop; only the clock is a stand-in."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import device.daemon
from device.config import MqttConfig, StateConfig, load_config
from device.daemon import Daemon
from device.messages import Vitals
from device.recording import read_csv
from device.sinks.mqtt import MqttSink
from device.sources.base import Frame

HOUR = 3600.0
_wall = time.time


class Clock:
    """Wall clock with an offset the test moves (``time.time`` stays untouched elsewhere)."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return _wall() + self.offset


def _until(pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def _vitals(t: float) -> Vitals:
    return Vitals(t, 72.0, 14.0, None, None, None, None)


def test_clock_set_back_between_outage_and_restart_keeps_seq_and_order(
    tmp_path: Path, mosquitto_factory, mqtt_listener
) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto_factory(start=False)
    clock = Clock()
    state = StateConfig(dir=str(tmp_path / "state"))
    cfg = MqttConfig(broker=broker.url, keepalive_s=5)

    first = MqttSink(cfg, "clk1", state, clock=clock.time)
    first.start()  # the broker is down: everything stays in the store
    for t in range(1, 11):
        first.send(_vitals(t), clock.time())
    clock.offset = -HOUR  # the wall clock is set back an hour
    for t in range(11, 21):
        first.send(_vitals(t), clock.time())
    # the oldest message was stored "an hour in the future": its age is not negative
    assert first.counters()["store"]["oldest_s"] >= 0.0
    first.stop()

    broker.start()
    station = mqtt_listener(broker, "bedside/clk1/vitals")
    second = MqttSink(cfg, "clk1", state, clock=clock.time)
    second.start()
    try:
        for t in range(21, 26):  # new seconds while the backlog drains
            second.send(_vitals(t), clock.time())
            second.poll()
        assert _until(lambda: (second.poll(), second.store.depth)[1] == 0, 20)
        assert station.wait_for(lambda ms: len(ms) >= 25, 10)
    finally:
        second.stop()
    got = [m.json() for m in station.messages]
    assert sorted(v["seq"] for v in got) == list(range(1, 26))  # no gap, no duplicate
    backlog = [v for v in got if v.get("historical")]
    # the backlog goes out in the order it was made, whatever its timestamps say
    assert [v["t_s"] for v in backlog] == sorted(v["t_s"] for v in backlog)
    assert [v["seq"] for v in backlog] == sorted(v["seq"] for v in backlog)
    assert {v["t_s"] for v in backlog} >= set(map(float, range(1, 21)))


class _BurstThenSilent:
    """A live source that delivers 20 s of a real recording at once and then nothing (a board
    whose cable was pulled): the core raises signal_lost within seconds."""

    live = True

    def __init__(self, excerpt: Path) -> None:
        rec = read_csv(excerpt)
        self.name = "burst"
        self.roles = dict.fromkeys(rec.roles, rec.fs_hz)
        self._signals = {r: x[: int(20 * rec.fs_hz)] for r, x in rec.role_signals().items()}
        self._thread: threading.Thread | None = None

    def start(self, out: Any, stop: threading.Event) -> None:
        def run() -> None:
            out.put(Frame(self.name, dict(self._signals), wall_s=time.monotonic()))
            stop.wait()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, object]:
        return {"type": "test-burst"}

    @property
    def finished(self) -> bool:
        return False


def _run_until_alarm(
    cfg: Any, state: StateConfig, clock: Clock, excerpt: Path, station: Any
) -> None:
    sink = MqttSink(cfg.mqtt, "clk2", state, clock=clock.time)
    stop = threading.Event()
    daemon = Daemon(cfg, [_BurstThenSilent(excerpt)], [sink], stop=stop, bed="clk2")
    seen = len(station.on("/alarms"))
    worker = threading.Thread(target=daemon.run)
    worker.start()
    try:
        assert station.wait_for(lambda ms: sum(m.topic.endswith("/alarms") for m in ms) > seen, 30)
    finally:
        stop.set()
        worker.join(20)


def _id_time(alarm_id: str) -> int:
    return int(alarm_id.rsplit("-", 1)[1])


def test_clock_set_back_across_a_restart_keeps_alarm_ids_unique_and_rising(
    tmp_path: Path, mosquitto, mqtt_listener, excerpt, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    monkeypatch.setattr(device.daemon, "time", clock)  # the daemon's wall clock
    cfg = load_config(None)
    cfg.mqtt.broker = mosquitto.url
    state = StateConfig(dir=str(tmp_path / "state"))
    station = mqtt_listener(mosquitto, "bedside/clk2/alarms")

    _run_until_alarm(cfg, state, clock, excerpt, station)
    first = [m.json() for m in station.on("/alarms")]
    clock.offset = -HOUR  # set back an hour before the next start
    _run_until_alarm(cfg, state, clock, excerpt, station)
    second = [m.json() for m in station.on("/alarms")][len(first) :]

    assert first and second
    # the second run's live ids would be an hour below the first's; they continue above them
    assert min(_id_time(a["id"]) for a in second) > max(_id_time(a["id"]) for a in first)
    assert not {a["id"] for a in first} & {a["id"] for a in second}
    seqs = [a["seq"] for a in first + second]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # seq rises across the restart
