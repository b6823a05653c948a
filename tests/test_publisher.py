"""The MQTT publisher against a real Mosquitto: the store of unsent messages across broker
outages and daemon restarts, and a refused connection that must not count as connected."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.errors import UserError
from device.sinks.mqtt import Publisher, parse_broker_url, uses_tls
from device.sinks.store import Store


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


def _vitals(t: int) -> dict[str, object]:
    return {"schema_version": 1, "bed": "b1", "type": "vitals", "t_s": float(t), "hr_bpm": 70.0}


def _wait(pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def _drained(pub: Publisher, timeout_s: float = 20) -> bool:
    return _wait(lambda: (pub.poll(), pub.store.depth)[1] == 0, timeout_s)


def test_broker_url_parsing() -> None:
    assert parse_broker_url("mqtt://10.0.0.5:1884") == ("10.0.0.5", 1884)
    assert parse_broker_url("mqtt://broker.ward") == ("broker.ward", 1883)
    assert parse_broker_url("mqtts://broker.ward") == ("broker.ward", 8883)
    assert uses_tls("mqtts://broker.ward:8884") and not uses_tls("mqtt://broker.ward")
    with pytest.raises(UserError, match="mqtt.broker"):
        parse_broker_url("http://x:1")
    with pytest.raises(UserError, match="port"):
        parse_broker_url("mqtt://x:notaport")


def test_messages_published_while_broker_down_arrive_in_order_after_it_returns(
    tmp_path: Path,
    mosquitto_factory,
    mqtt_listener,  # type: ignore[no-untyped-def]
) -> None:
    broker = mosquitto_factory(persistent=True)
    # the nurses' station has a persistent session: the broker queues messages for it while
    # it is away, so what it receives does not depend on who reconnects first
    topics = ["bedside/b1/alarms", "bedside/b1/vitals"]
    station = mqtt_listener(broker, topics, client_id="station-1", persistent=True)
    station.close()
    broker.stop()

    store = Store(tmp_path / "b1.sqlite3")
    pub = Publisher(MqttConfig(broker=broker.url, keepalive_s=5), "b1", store)
    pub.start()
    try:
        for i in range(3):
            pub.publish_vitals(_vitals(i))
            pub.publish_alarm(_alarm(i))
        assert not pub.connected
        # on disk before the broker is back: a second reader of the file sees them
        assert Store(tmp_path / "b1.sqlite3").depth == 6

        broker.start()
        station = mqtt_listener(broker, topics, client_id="station-1", persistent=True)
        assert _drained(pub), "messages not delivered after reconnect"
        assert station.wait_for(lambda ms: len(ms) >= 6, 20)
        alarms = [m.json() for m in station.on("/alarms")]
        vitals = [m.json() for m in station.on("/vitals")]
        assert [a["id"] for a in alarms] == ["b1-test-0", "b1-test-1", "b1-test-2"]
        assert [a["seq"] for a in alarms] == [1, 2, 3]
        assert [v["seq"] for v in vitals] == [1, 2, 3]
        assert all(v["historical"] is True for v in vitals)  # sent late
        assert "historical" not in alarms[0]
        assert pub.counters["alarms_acked"] == 3 and pub.counters["vitals_sent"] == 3
        assert pub.counters["vitals_historical"] == 3

        pub.publish_vitals(_vitals(3))  # connected now: sent live, without the flag
        assert station.wait_for(lambda ms: len(ms) >= 7, 10)
        live = station.on("/vitals")[-1].json()
        assert live["seq"] == 4 and "historical" not in live
    finally:
        pub.stop()
    assert Store(tmp_path / "b1.sqlite3").depth == 0  # PUBACKs removed them from the file


def test_store_survives_a_daemon_restart(tmp_path: Path, mosquitto_factory, mqtt_listener) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto_factory(start=False)
    path = tmp_path / "b1.sqlite3"
    cfg = MqttConfig(broker=broker.url, keepalive_s=5)

    first = Publisher(cfg, "b1", Store(path))
    first.start()
    first.publish_alarm(_alarm(7))
    first.publish_vitals(_vitals(1))
    first.publish_alarm(_alarm(8))
    assert first.stop(timeout_s=1.0) is False  # nobody to deliver to

    broker.start()
    station = mqtt_listener(broker, ["bedside/b1/alarms", "bedside/b1/vitals"])
    second = Publisher(cfg, "b1", Store(path))
    second.start()
    try:
        assert _drained(second)  # the daemon's main loop polls every 0.1 s
        assert station.wait_for(lambda ms: len(ms) >= 3, 20)
        # alarms first (in their order), then the vitals backlog
        got = [(m.topic.rsplit("/", 1)[1], m.json()["seq"]) for m in station.messages]
        assert got == [("alarms", 1), ("alarms", 2), ("vitals", 1)]
        second.publish_alarm(_alarm(9))
        assert station.wait_for(lambda ms: len(ms) >= 4, 10)
        assert station.messages[-1].json()["seq"] == 3  # seq continues across the restart
    finally:
        assert second.stop() is True


def test_refused_connection_is_not_online_and_is_logged_once(
    mosquitto_factory,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    broker = mosquitto_factory(anonymous=False)  # no password file: every client is refused
    pub = Publisher(MqttConfig(broker=broker.url, keepalive_s=5), "b1")
    with caplog.at_level(logging.INFO, logger="bedside.mqtt"):
        pub.start()
        try:
            assert _wait(lambda: pub.counters["connection_failures"] >= 2, 20)
            pub.publish_vitals(_vitals(1))
            assert not pub.connected
            assert pub.counters["connects"] == 0
            assert pub.store.depth == 1  # kept, not sent
        finally:
            pub.stop(timeout_s=1.0)
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
    assert "authori" in refused[0].getMessage().lower()


def test_store_bound_drops_oldest_vitals_never_alarms(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3", vitals_max=10)
    for t in range(25):
        store.add("vitals", _vitals(t))
        if t % 5 == 0:
            store.add("alarm", _alarm(t))
    assert store.depth_of("vitals") == 10 and store.depth_of("alarm") == 5
    assert store.counters["vitals_dropped"] == 15
    taken = store.take(100)
    assert [m.seq for m in taken if m.kind == "alarm"] == [1, 2, 3, 4, 5]
    assert [m.seq for m in taken if m.kind == "vitals"] == list(range(16, 26))  # the newest
    store.close()


def test_new_stores_use_small_pages_and_old_stores_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small pages write a quarter as much per message to an SD card (bench/store.py); a
    store made by an earlier version, with 4 KiB pages, opens as it is and loses nothing."""
    import sqlite3

    import device.sinks.store as store_module

    def page_size(path: Path) -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("PRAGMA page_size").fetchone()[0])

    old = tmp_path / "old.sqlite3"
    monkeypatch.setattr(store_module, "PAGE_BYTES", 4096)
    earlier = Store(old)
    for t in range(3):
        earlier.add("vitals", _vitals(t))
    earlier.add("alarm", _alarm(3))
    earlier.close()
    monkeypatch.undo()
    assert page_size(old) == 4096
    reopened = Store(old)
    assert [(m.kind, m.seq) for m in reopened.take(10)] == [
        ("alarm", 1), ("vitals", 1), ("vitals", 2), ("vitals", 3)
    ]  # fmt: skip
    assert reopened.add("vitals", _vitals(4)).seq == 4  # seq goes on
    reopened.close()
    assert page_size(old) == 4096
    new = tmp_path / "new.sqlite3"
    Store(new).close()
    assert page_size(new) == store_module.PAGE_BYTES == 1024


def test_store_in_an_unwritable_folder_keeps_messages_in_memory_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path, retry_s=0.0)
    store.add("alarm", _alarm(1))
    store.close()
    # the store file replaced by a folder: nothing can open it for writing (as a full or
    # failing disk would refuse), and it cannot be read either
    path.rename(tmp_path / "moved.sqlite3")
    path.mkdir()
    with caplog.at_level(logging.ERROR, logger="bedside.store"):
        broken = Store(path, retry_s=0.0)
        for i in range(3):
            broken.add("alarm", _alarm(i))
    assert broken.failed and "s.sqlite3" in broken.failed
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1  # one clear line
    assert [m.seq > 1000 for m in broken.take(10)] == [True] * 3  # seq from the clock: increases
    path.rmdir()
    (tmp_path / "moved.sqlite3").rename(path)
    broken.maintain()  # the disk works again: what memory holds is written to it
    assert not broken.failed and broken.counters["recovered"] == 1
    broken.add("alarm", _alarm(9))
    broken.close()
    again = Store(path)
    assert again.depth == 2  # the first run's alarm and the one added after recovery
    assert again.last_seq("alarm") > 1000


def test_alarms_in_an_old_jsonl_outbox_move_to_the_store(tmp_path: Path) -> None:
    """A deployed bed upgraded with alarms still in its JSON-lines outbox sends them."""
    import json

    from device.config import StateConfig
    from device.sinks.mqtt import MqttSink

    old = tmp_path / "ob.jsonl"
    lines = [
        json.dumps({"key": f"k{i}", "topic": "bedside/b1/alarms", "payload": json.dumps(_alarm(i))})
        for i in range(2)
    ]
    old.write_text("\n".join(lines) + '\n{"key": "cut-short')
    sink = MqttSink(
        MqttConfig(broker="mqtt://127.0.0.1:9", outbox_path=str(old)), "b1", StateConfig()
    )
    sink.start()
    try:
        assert sink.store.depth_of("alarm") == 2 and sink.directory == tmp_path
        assert [m.seq for m in sink.store.take(5)] == [1, 2]
        assert not old.exists() and (tmp_path / "ob.jsonl.imported").exists()
    finally:
        sink.stop()


@pytest.mark.parametrize("closed", [False, True], ids=["after-a-crash", "after-a-clean-stop"])
def test_store_whose_folder_went_read_only_still_sends_what_it_held(
    tmp_path: Path, closed: bool
) -> None:
    """An SD card remounted read-only after an error: what the store held is read into memory
    and sent, and seq goes on from where it was."""
    import subprocess

    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    store = Store(src / "b1.sqlite3")
    for i in range(3):
        store.add("alarm", _alarm(i))
        store.add("vitals", _vitals(i))
    if closed:
        store.close()
    mounted = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs CAP_SYS_ADMIN): {mounted.stderr!r}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        again = Store(ro / "b1.sqlite3")
        assert again.failed  # the store_failed alarm's detail
        assert again.depth == 6
        assert [m.seq for m in again.take(10) if m.kind == "alarm"] == [1, 2, 3]
        assert again.add("alarm", _alarm(9)).seq == 4
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
