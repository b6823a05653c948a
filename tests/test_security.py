"""Security against a real Mosquitto with TLS, a password file and an ACL (``tls_broker.py``):
strangers are refused, the daemon connects over TLS (verifying the broker) and publishes, only
the station role may acknowledge an alarm, and the password never appears in the daemon's log
or command line."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from station_support import ALARM_LIMITS_TOML, alarming_recording
from tls_broker import USERS, TlsBroker, tools_missing

from device.config import MqttConfig
from device.sinks.mqtt import Publisher

ROOT = Path(__file__).resolve().parents[1]
BED = "bed1"  # a bed of tests/tls_broker.py's ACL
PASSWORDS = USERS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing())),
]


@pytest.fixture
def tls(tls_broker: TlsBroker) -> Iterator[tuple[TlsBroker, TlsBroker]]:
    """The module's TLS broker (conftest), which also holds its CA and client certificate."""
    yield tls_broker, tls_broker


class Client:
    """A paho client over TLS; ``result`` is the CONNACK reason, or the connection error."""

    def __init__(
        self,
        port: int,
        ca: Path | None,
        user: str | None = None,
        password: str | None = None,
        use_tls: bool = True,
        wait_s: float = 10.0,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, Any]] = []
        self._cv = threading.Condition()
        self._done = threading.Event()
        self.result = ""
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{id(self)}")
        if use_tls:
            self.client.tls_set_context(ssl.create_default_context(cafile=str(ca) if ca else None))
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        try:
            self.client.connect("127.0.0.1", port, keepalive=10)
        except (OSError, ssl.SSLError) as e:
            self.result = f"error: {e}"
            self._done.set()
            return
        self.client.loop_start()
        if not self._done.wait(wait_s):
            self.result = "error: no CONNACK (connection dropped)"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.result = "accepted" if not rc.is_failure else f"refused: {rc}"
        self._done.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        import json

        with self._cv:
            self.messages.append((msg.topic, json.loads(msg.payload)))
            self._cv.notify_all()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, pred: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_strangers_are_refused_and_the_station_gets_in(tls: tuple[TlsBroker, TlsBroker]) -> None:
    broker, pki = tls
    anonymous = Client(broker.port, pki.ca)
    wrong = Client(broker.port, pki.ca, "station", "not-the-password")
    # plain MQTT on the TLS port: no CONNACK ever comes (the broker waits for a TLS handshake)
    plain = Client(broker.port, None, "station", PASSWORDS["station"], use_tls=False, wait_s=3)
    untrusting = Client(broker.port, None, "station", PASSWORDS["station"])  # system CAs
    station = Client(broker.port, pki.ca, "station", PASSWORDS["station"])
    try:
        assert anonymous.result.startswith("refused") and "authori" in anonymous.result.lower()
        assert wrong.result.startswith("refused"), wrong.result
        assert plain.result != "accepted", plain.result
        assert "certificate verify failed" in untrusting.result, untrusting.result
        assert station.result == "accepted"
    finally:
        for c in (anonymous, wrong, plain, untrusting, station):
            c.close()


def _alarms(msgs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [b for t, b in msgs if t.endswith("/alarms")]


def test_daemon_over_tls_publishes_and_only_the_station_may_acknowledge(
    tls: tuple[TlsBroker, TlsBroker], tmp_path: Path
) -> None:
    broker, pki = tls
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORDS[BED] + "\n")
    secret.chmod(0o600)
    cfg = tmp_path / "bed.toml"
    cfg.write_text(
        f'[bed]\nid = "{BED}"\n'
        f'[mqtt]\nbroker = "{broker.url}"\nca_file = "{pki.ca}"\nusername = "{BED}"\n'
        f'password_file = "{secret}"\nkeepalive_s = 5\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[replay]\npath = "{alarming_recording(tmp_path)}"\nspeed = 4.0\nloop = true\n'
        + ALARM_LIMITS_TOML
    )
    check = subprocess.run(
        [sys.executable, "-m", "device", "run", "--config", str(cfg), "--check-config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    station = Client(broker.port, pki.ca, "station", PASSWORDS["station"])
    viewer = Client(broker.port, pki.ca, "viewer", PASSWORDS["viewer"])
    assert station.result == viewer.result == "accepted"
    station.subscribe(f"bedside/{BED}/#")
    log = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "device", "-v", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        # two alarms at once: one for the viewer to try, one for the station
        assert station.wait_for(
            lambda ms: len({a["id"] for a in _alarms(ms) if a["state"] == "active"}) >= 2, 60
        ), log.read_text()[-3000:]
        assert any(t.endswith("/vitals") for t, _ in station.messages)  # it publishes
        first, second = sorted({a["id"] for a in _alarms(station.messages)})[:2]

        # the viewer may not write on cmd/: the broker drops its acknowledgement, so the bed
        # never confirms and `bedside ack` says so (exit 1)
        def bedside_ack(user: str, alarm_id: str, timeout_s: float) -> Any:
            secret = tmp_path / f"{user}-password"
            secret.write_text(PASSWORDS[user] + "\n")
            return subprocess.run(
                [sys.executable, "-m", "device", "ack", BED, alarm_id, "--broker", broker.url,
                 "--ca-file", str(pki.ca), "--username", user, "--password-file", str(secret),
                 "--timeout", str(timeout_s)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        denied = bedside_ack("viewer", first, 5.0)
        assert denied.returncode == 1, denied.stdout + denied.stderr
        assert "not confirmed" in denied.stdout
        # the station may: `bedside ack` as the station user, over TLS, with its password in
        # a file, acknowledges the other alarm and sees the bed confirm it
        ack = bedside_ack("station", second, 30.0)
        assert ack.returncode == 0, ack.stdout + ack.stderr
        assert f"{second}: acknowledged by bed {BED}" in ack.stdout
        assert station.wait_for(
            lambda ms: any(a["id"] == second and a["state"] == "acknowledged" for a in _alarms(ms)),
            30,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert station.wait_for(
            lambda ms: any(t.endswith("/status") and b["state"] == "offline" for t, b in ms), 10
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        station.close()
        viewer.close()
    final = [b for t, b in station.messages if t.endswith("/status")][-1]
    # at the daemon: only the station's command arrived, and the viewer's alarm is still active
    assert final["mqtt"]["commands_received"] == 1 and final["mqtt"]["tls"] is True
    assert final["counters"]["commands_applied"] == 1
    states = {a["id"]: a["state"] for a in final["alarms"]}
    assert states.get(first) == "active", final["alarms"]
    assert not any(a["id"] == first and a["state"] != "active" for a in _alarms(station.messages))
    text = log.read_text()
    assert "over TLS" in text
    for password in PASSWORDS.values():  # secrets never in the log or on the command line
        assert password not in text and password not in cmdline


def _connects(cfg: MqttConfig) -> Publisher:
    pub = Publisher(cfg, BED)
    pub.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (
        pub.connected or pub.counters["connection_failures"]
    ):
        time.sleep(0.05)
    return pub


def test_client_certificate_is_presented_where_the_broker_requires_one(
    tls: tuple[TlsBroker, TlsBroker], tmp_path: Path
) -> None:
    broker, pki = tls
    secret = tmp_path / "pw"
    secret.write_text(PASSWORDS[BED])
    base = MqttConfig(
        broker=f"mqtts://localhost:{broker.mtls_port}",
        ca_file=str(pki.ca),
        username=BED,
        password_file=str(secret),
    )
    with_cert = _connects(
        MqttConfig(
            **{**base.__dict__, "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        )
    )
    without = _connects(base)
    try:
        assert with_cert.connected
        assert not without.connected and without.counters["connection_failures"] >= 1
    finally:
        with_cert.stop(timeout_s=2)
        without.stop(timeout_s=1)
