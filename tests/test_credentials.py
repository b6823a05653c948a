"""The broker password from systemd's credentials directory (LoadCredential=), checked against
a real Mosquitto that refuses anonymous clients and knows one user."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.credentials import credential, state_directory
from device.sinks.mqtt import Publisher


def test_credential_lookup(tmp_path: Path) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    (tmp_path / "empty").write_text("\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert credential("mqtt-password", env) == "s3cret"
    assert credential("empty", env) is None
    assert credential("missing", env) is None
    assert credential("mqtt-password", {}) is None


def test_state_directory() -> None:
    assert state_directory(Path("/d"), {"STATE_DIRECTORY": "/var/lib/bedside:/x"}) == Path(
        "/var/lib/bedside"
    )
    assert state_directory(Path("/d"), {}) == Path("/d")


def connects(broker_url: str, username: str) -> bool:
    pub = Publisher(MqttConfig(broker=broker_url, username=username), "cred1")
    pub.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pub.connected:
                return True
            if pub.counters["connection_failures"]:
                return False
            time.sleep(0.05)
        return False
    finally:
        pub.stop(timeout_s=2)


@pytest.mark.e2e
def test_publisher_logs_in_with_the_systemd_credential(
    mosquitto_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(passwd).exists():
        pytest.skip("mosquitto_passwd not installed (package mosquitto)")
    pwfile = tmp_path / "passwd"
    subprocess.run([passwd, "-c", "-b", str(pwfile), "bed1", "s3cret"], check=True, timeout=30)
    pwfile.chmod(0o600)
    broker = mosquitto_factory(anonymous=False, start=False)
    # as root Mosquitto drops to user "mosquitto", who cannot read pytest's private tmp dirs
    stay = "user root\n" if os.geteuid() == 0 else ""
    broker.conf.write_text(broker.conf.read_text() + f"password_file {pwfile}\n{stay}")
    broker.start()
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    # no credential: refused
    assert not connects(broker.url, "bed1")
    (creds / "mqtt-password").write_text("s3cret\n")
    assert connects(broker.url, "bed1")
    (creds / "mqtt-password").write_text("wrong\n")
    assert not connects(broker.url, "bed1")
