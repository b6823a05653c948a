"""The MQTT publisher against a real Mosquitto: the durable alarm outbox across broker outages
and daemon restarts, and a refused connection that must not count as connected."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.errors import UserError
from device.sinks.mqtt import Outbox, Publisher, parse_broker_url


def _alarm(i: int) -> dict[str, object]:
    return {
        "schema_version": 1,
        "bed": "b1",
        "ts": "2026-01-01T00:00:00.000Z",
        "type": "alarm",
        "id": f"b1-test-{i}",
        "condition": "hr_high",
        "state": "active",
    }


def _wait(pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def test_outbox_file_keeps_entries_and_tolerates_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    a = box.add("t/alarms", '{"n":1}')
    box.add("t/alarms", '{"n":2}')
    box.remove(a.key)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"key": "cut-short-by-a-cra')  # a crash while appending
    again = Outbox(path)
    assert [e.payload for e in again.pending()] == ['{"n":2}']
    assert again.corrupt_lines == 1


def test_broker_url_parsing() -> None:
    assert parse_broker_url("mqtt://10.0.0.5:1884") == ("10.0.0.5", 1884)
    assert parse_broker_url("mqtt://broker.ward") == ("broker.ward", 1883)
    with pytest.raises(UserError, match="mqtt.broker"):
        parse_broker_url("http://x:1")
    with pytest.raises(UserError, match="port"):
        parse_broker_url("mqtt://x:notaport")


def test_alarms_published_while_broker_down_arrive_after_it_returns(
    tmp_path: Path,
    mosquitto_factory,
    mqtt_listener,  # type: ignore[no-untyped-def]
) -> None:
    broker = mosquitto_factory(persistent=True)
    # the nurses' station has a persistent session: the broker queues alarms for it while
    # it is away, so what it receives does not depend on who reconnects first
    station = mqtt_listener(broker, "bedside/b1/alarms", client_id="station-1", persistent=True)
    station.close()
    broker.stop()

    outbox_path = tmp_path / "outbox.jsonl"
    pub = Publisher(MqttConfig(broker=broker.url, keepalive_s=5), "b1", Outbox(outbox_path))
    pub.start()
    try:
        for i in range(3):
            pub.publish_alarm(_alarm(i))
        assert not pub.connected
        assert len(outbox_path.read_text().splitlines()) == 3  # on disk before the broker is back

        broker.start()
        station = mqtt_listener(broker, "bedside/b1/alarms", client_id="station-1", persistent=True)
        assert station.wait_for(lambda ms: len(ms) >= 3, 45), "alarms not delivered after reconnect"
        ids = [m.json()["id"] for m in station.on("/alarms")]
        assert ids[:3] == ["b1-test-0", "b1-test-1", "b1-test-2"]
        # PUBACKs remove them from the outbox file
        assert _wait(lambda: (pub.poll(), len(pub.outbox))[1] == 0, 10)
        assert outbox_path.read_text() == ""
        assert pub.counters["alarms_acked"] == 3
    finally:
        pub.stop()


def test_outbox_survives_a_daemon_restart(tmp_path: Path, mosquitto_factory, mqtt_listener) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto_factory(start=False)
    outbox_path = tmp_path / "outbox.jsonl"
    cfg = MqttConfig(broker=broker.url, keepalive_s=5)

    first = Publisher(cfg, "b1", Outbox(outbox_path))
    first.start()
    first.publish_alarm(_alarm(7))
    first.publish_alarm(_alarm(8))
    assert first.stop(timeout_s=1.0) is False  # nobody to deliver to
    kept = [
        json.loads(json.loads(line)["payload"])["id"]
        for line in outbox_path.read_text().splitlines()
    ]
    assert kept == ["b1-test-7", "b1-test-8"]

    broker.start()
    station = mqtt_listener(broker, "bedside/b1/alarms")
    second = Publisher(cfg, "b1", Outbox(outbox_path))
    second.start()
    try:
        assert station.wait_for(lambda ms: len(ms) >= 2, 20)
        assert [m.json()["id"] for m in station.messages] == ["b1-test-7", "b1-test-8"]
        assert _wait(lambda: (second.poll(), len(second.outbox))[1] == 0, 10)
        assert outbox_path.read_text() == ""
    finally:
        assert second.stop() is True


def test_refused_connection_is_not_online_and_is_logged_once(
    mosquitto_factory,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    broker = mosquitto_factory(anonymous=False)  # no password file: every client is refused
    pub = Publisher(MqttConfig(broker=broker.url, keepalive_s=5), "b1", Outbox(None))
    with caplog.at_level(logging.INFO, logger="bedside.mqtt"):
        pub.start()
        try:
            assert _wait(lambda: pub.counters["connection_failures"] >= 2, 20)
            pub.publish_vitals({"t_s": 1.0})
            assert not pub.connected
            assert pub.counters["connects"] == 0
            assert pub.counters["vitals_dropped_offline"] == 1
        finally:
            pub.stop(timeout_s=1.0)
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
    assert "authori" in refused[0].getMessage().lower()


def test_outbox_that_cannot_be_written_keeps_alarms_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    path.mkdir()  # the file cannot be opened for writing any more (as a full disk would fail)
    entry = box.add("t/alarms", '{"n":1}')
    assert box.write_errors == 1
    assert box.pending() == [entry]  # still sent from memory
    box.remove(entry.key)
    assert len(box) == 0 and box.write_errors == 2
