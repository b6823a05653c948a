"""The ward set-up of docs/deploy.md with real brokers: a bed's local Mosquitto configured by
docs/examples/mosquitto-bed-bridge.conf (addresses and paths pointed at this test, TLS lines
left commented) bridged to a ward Mosquitto.

- alarms published while the ward's broker is down are stored by the bed's broker and
  delivered when it is back, also after the bed's broker itself restarted meanwhile;
- consumers on a shared subscription ($share/GROUP/...) split the alarms between them: each
  alarm reaches exactly one member of the group;
- the bridge's notification topic says "1" while the bed is connected and "0" once it is gone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import Mosquitto, MqttListener, free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs/examples/mosquitto-bed-bridge.conf"
BED = "icu-3"


def bed_broker(binary: str, workdir: Path, ward_port: int) -> Mosquitto:
    """The example config, pointed at this test's ports and folders."""
    b = Mosquitto(binary, workdir)
    store = workdir / "bed-store"
    store.mkdir(exist_ok=True)
    text = EXAMPLE.read_text()
    text = text.replace("listener 1883 127.0.0.1", f"listener {b.port} 127.0.0.1")
    text = text.replace(
        "persistence_location /var/lib/mosquitto/", f"persistence_location {store}/"
    )
    text = re.sub(r"^address .*$", f"address 127.0.0.1:{ward_port}", text, flags=re.M)
    assert f"address 127.0.0.1:{ward_port}" in text and f"listener {b.port}" in text
    # as root Mosquitto drops to user "mosquitto", who cannot write pytest's private tmp dirs
    stay = "user root\n" if os.geteuid() == 0 else ""
    b.conf.write_text(text + f"log_dest stderr\nlog_type error\nlog_type warning\n{stay}")
    return b


def publish(broker: Mosquitto, topic: str, payload: str, retain: bool = False) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{free_port()}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def alarm_ids(messages: list) -> list[str]:  # type: ignore[type-arg]
    return [json.loads(m.payload)["id"] for m in messages if m.topic.endswith("/alarms")]


@pytest.mark.e2e
def test_store_and_forward_shared_subscriptions_and_notifications(
    _mosquitto_binary: str, tmp_path: Path, mqtt_listener
) -> None:  # type: ignore[no-untyped-def]
    ward = Mosquitto(_mosquitto_binary, tmp_path, persistent=True)
    if os.geteuid() == 0:
        ward.conf.write_text(ward.conf.read_text() + "user root\n")
    ward.start()
    bed = bed_broker(_mosquitto_binary, tmp_path, ward.port)
    bed.start()
    try:
        # a persistent consumer, and a consumer group of two on a shared subscription
        log = mqtt_listener(ward, "bedside/+/alarms", client_id="ward-log", persistent=True)
        group = [
            mqtt_listener(ward, "$share/router/bedside/+/alarms", client_id=f"router-{i}")
            for i in range(2)
        ]
        notify = mqtt_listener(ward, f"bedside/{BED}/bridge")
        assert notify.wait_for(lambda ms: any(m.payload == b"1" for m in ms), 20)

        publish(bed, f"bedside/{BED}/alarms", json.dumps({"id": "a0"}))
        assert log.wait_for(lambda ms: alarm_ids(ms) == ["a0"], 20), log.messages

        # the ward's broker goes away; the bed keeps publishing alarms, then restarts itself
        log.close()
        for g in group:
            g.close()
        ward.stop()
        for i in range(1, 4):
            publish(bed, f"bedside/{BED}/alarms", json.dumps({"id": f"a{i}"}))
        bed.stop()
        bed.start()
        ward.start()
        log = MqttListener(ward, "bedside/+/alarms", client_id="ward-log", persistent=True)
        try:
            ok = log.wait_for(lambda ms: alarm_ids(ms) == ["a1", "a2", "a3"], 60)
            assert ok, f"stored alarms not delivered: {alarm_ids(log.messages)}"
        finally:
            log.close()

        # a shared subscription: each of 10 alarms to exactly one member of the group
        group = [
            mqtt_listener(ward, "$share/router/bedside/+/alarms", client_id=f"router-{i}")
            for i in range(2)
        ]
        sent = [f"s{i}" for i in range(10)]
        for aid in sent:
            publish(bed, f"bedside/{BED}/alarms", json.dumps({"id": aid}))

        def all_in(_: object) -> bool:
            return sorted(alarm_ids(group[0].messages) + alarm_ids(group[1].messages)) == sorted(
                sent
            )

        assert group[0].wait_for(all_in, 30), [alarm_ids(g.messages) for g in group]

        # the appliance disappears: the ward learns it from the bridge's will
        bed.stop()
        assert notify.wait_for(lambda ms: ms[-1].payload == b"0", 60), notify.messages
    finally:
        bed.stop()
        ward.stop()
