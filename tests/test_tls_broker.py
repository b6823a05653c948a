"""The broker side of security, with plain paho clients: TLS, passwords and the ACL of
docs/security.md on a real Mosquitto (tests/tls_broker.py).

Mosquitto drops a publish the ACL denies without telling the sender (an MQTT 3.1.1 PUBACK
still comes back), so every "cannot" is checked at a receiver: the denied messages are sent
and acknowledged first, then an allowed one; once the allowed one has arrived, a denied one
that got through would have arrived before it.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.tls_broker import USERS, TlsBroker, acl_text

pytestmark = pytest.mark.e2e

TIMEOUT_S = 10.0


class Probe:
    """One paho client: connects, subscribes, keeps what it receives."""

    def __init__(
        self,
        broker: TlsBroker,
        user: str | None,
        password: str | None = None,
        *,
        port: int | None = None,
        ca: Path | None = None,
        cert: tuple[Path, Path] | None = None,
        transport: str = "tcp",
        host: str = "localhost",
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.reason: Any = None
        self._cv = threading.Condition()
        self._connack = threading.Event()
        self._ended = threading.Event()  # disconnected, or the connection attempt failed
        self._subscribed = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{user}-{uuid.uuid4().hex[:8]}",
            transport=transport,  # type: ignore[arg-type]
        )
        if transport == "tcp":
            c.tls_set(
                ca_certs=str(ca or broker.ca),
                certfile=str(cert[0]) if cert else None,
                keyfile=str(cert[1]) if cert else None,
            )
        if user is not None:
            c.username_pw_set(user, USERS.get(user, "") if password is None else password)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self._ended.set()
        c.on_connect_fail = lambda *a: self._ended.set()
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect(host, port or broker.port, keepalive=30)
        c.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.reason = reason
        self._connack.set()
        self._ended.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cv:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cv.notify_all()

    def accepted(self) -> bool:
        """Whether the broker accepted the connection (CONNACK success)."""
        assert self._connack.wait(TIMEOUT_S), "no CONNACK"
        return not self.reason.is_failure

    def dropped_before_connack(self) -> bool:
        """The connection ended (TLS alert, closed socket) without the broker accepting it."""
        assert self._ended.wait(TIMEOUT_S), "neither a CONNACK nor a disconnect"
        return not self._connack.is_set() or self.reason.is_failure

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(TIMEOUT_S)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (also sent for a denied one)."""
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()

    def wait_for(self, topic: str, payload: dict[str, Any]) -> bool:
        want = (topic, json.dumps(payload).encode())
        with self._cv:
            return self._cv.wait_for(lambda: want in self.messages, TIMEOUT_S)

    def payloads(self, suffix: str = "") -> list[Any]:
        with self._cv:
            return [json.loads(p) for t, p in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes() -> Any:
    made: list[Probe] = []

    def make(*args: Any, **kwargs: Any) -> Probe:
        p = Probe(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_anonymous_and_wrong_passwords_are_refused(tls_broker: TlsBroker, probes: Any) -> None:
    assert not probes(tls_broker, None).accepted()
    assert not probes(tls_broker, "station", "not-the-password").accepted()
    assert not probes(tls_broker, "nobody", "station-secret").accepted()
    assert not probes(tls_broker, "bed1", "station-secret").accepted()  # another user's
    assert probes(tls_broker, "station").accepted()  # the right one is let in


def test_bed_publishes_its_vitals_and_station_and_viewer_receive_them(
    tls_broker: TlsBroker, probes: Any
) -> None:
    station, viewer, bed1 = probes(tls_broker, "station"), probes(tls_broker, "viewer"), None
    station.subscribe("bedside/#")
    viewer.subscribe("bedside/#")
    bed1 = probes(tls_broker, "bed1")
    assert bed1.accepted()
    vitals = {"t_s": 1.0, "hr_bpm": 72}
    bed1.publish("bedside/bed1/vitals", vitals)
    bed1.publish("bedside/bed1/alarms", {"id": "a1", "state": "active"})
    assert station.wait_for("bedside/bed1/vitals", vitals)
    assert viewer.wait_for("bedside/bed1/alarms", {"id": "a1", "state": "active"})


def test_only_the_station_gets_an_ack_through(tls_broker: TlsBroker, probes: Any) -> None:
    """The bed itself, another bed and a viewer publish acks for bed1's alarm; only the
    station's reaches bed1 (or anyone else reading cmd/)."""
    bed1 = probes(tls_broker, "bed1")
    bed1.subscribe("bedside/bed1/cmd/#")
    station_reader = probes(tls_broker, "station")
    station_reader.subscribe("bedside/+/cmd/#")
    for user in ("bed1", "bed2", "viewer"):
        sender = probes(tls_broker, user)
        assert sender.accepted()
        sender.publish("bedside/bed1/cmd/ack", {"id": f"from-{user}"})
    probes(tls_broker, "station").publish("bedside/bed1/cmd/ack", {"id": "from-station"})
    assert bed1.wait_for("bedside/bed1/cmd/ack", {"id": "from-station"})
    assert station_reader.wait_for("bedside/bed1/cmd/ack", {"id": "from-station"})
    assert bed1.payloads("cmd/ack") == [{"id": "from-station"}]
    assert station_reader.payloads("cmd/ack") == [{"id": "from-station"}]


def test_a_bed_cannot_speak_for_another_bed(tls_broker: TlsBroker, probes: Any) -> None:
    station = probes(tls_broker, "station")
    station.subscribe("bedside/#")
    bed1 = probes(tls_broker, "bed1")
    bed1.publish("bedside/bed2/vitals", {"from": "bed1"})
    bed1.publish("bedside/bed2/alarms", {"from": "bed1"})
    bed1.publish("bedside/elsewhere", {"from": "bed1"})
    bed2 = probes(tls_broker, "bed2")
    bed2.publish("bedside/bed2/vitals", {"from": "bed2"})
    assert station.wait_for("bedside/bed2/vitals", {"from": "bed2"})
    assert station.payloads() == [{"from": "bed2"}]


def test_a_bed_reads_only_its_own_commands(tls_broker: TlsBroker, probes: Any) -> None:
    bed1 = probes(tls_broker, "bed1")
    bed1.subscribe("bedside/#")  # asks for everything; the ACL delivers its own cmd/ only
    bed2 = probes(tls_broker, "bed2")
    bed2.publish("bedside/bed2/vitals", {"hr_bpm": 90})
    station = probes(tls_broker, "station")
    station.publish("bedside/bed2/cmd/ack", {"id": "bed2-alarm"})
    station.publish("bedside/bed1/cmd/ack", {"id": "bed1-alarm"})
    assert bed1.wait_for("bedside/bed1/cmd/ack", {"id": "bed1-alarm"})
    assert bed1.payloads() == [{"id": "bed1-alarm"}]


def test_server_certificate_is_verified(tls_broker: TlsBroker, probes: Any) -> None:
    # a client that trusts another CA refuses the broker during the TLS handshake
    with pytest.raises(ssl.SSLError):
        probes(tls_broker, "station", ca=tls_broker.other_ca)
    # the certificate names 127.0.0.1 and localhost: both verify
    assert probes(tls_broker, "station", host="127.0.0.1").accepted()


def test_client_certificate_listener(tls_broker: TlsBroker, probes: Any) -> None:
    port = tls_broker.mtls_port
    ok = probes(tls_broker, "bed1", port=port, cert=(tls_broker.client_cert, tls_broker.client_key))
    assert ok.accepted()
    try:
        p = probes(tls_broker, "bed1", port=port)  # a password but no client certificate
    except (ssl.SSLError, OSError):
        return  # refused during the handshake
    assert p.dropped_before_connack()  # or right after it


def test_websockets_listener_uses_the_same_passwords_and_acl(
    tls_broker: TlsBroker, probes: Any
) -> None:
    ws = tls_broker.ws_port
    assert not probes(tls_broker, None, port=ws, transport="websockets").accepted()
    station = probes(tls_broker, "station", port=ws, transport="websockets")
    assert station.accepted()
    station.subscribe("bedside/#")
    viewer = probes(tls_broker, "viewer", port=ws, transport="websockets")
    viewer.publish("bedside/bed1/cmd/ack", {"id": "from-viewer-ws"})
    bed1 = probes(tls_broker, "bed1")
    bed1.publish("bedside/bed1/vitals", {"via": "tls"})
    assert station.wait_for("bedside/bed1/vitals", {"via": "tls"})
    assert station.payloads("cmd/ack") == []


def test_acl_text_grants_each_role_only_its_topics() -> None:
    acl = acl_text(("icu-3",))
    assert "user icu-3\ntopic write bedside/icu-3/vitals\n" in acl
    assert "topic read bedside/icu-3/cmd/#" in acl
    assert "topic write bedside/icu-3/cmd" not in acl
    station = acl.split("user station\n")[1].split("\n\n")[0]
    assert station.splitlines() == ["topic read bedside/#", "topic write bedside/+/cmd/#"]


def test_docs_show_the_tested_acl() -> None:
    """docs/security.md shows the ACL these tests run, word for word."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    assert acl_text().strip() in doc


def test_factory_broker_comes_back_on_its_port(tls_broker_factory: Any, probes: Any) -> None:
    """``tls_broker_factory`` gives a test its own broker, which it may stop and start (an
    outage) on the same port with the same certificates and passwords."""
    broker = tls_broker_factory()
    assert probes(broker, "station").accepted()
    broker.stop()
    broker.start()
    assert probes(broker, "station").accepted()
    assert not probes(broker, None).accepted()
