"""``bedside station``'s HTTP side: the static page, /config.json, its headers; and the
vendored MQTT.js bundle is the pinned one."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from device.cli import main
from station.commands.serve import WEB_DIR, make_server


@pytest.fixture
def served() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, "ws://broker.ward:9001", "ward2", "station")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_page_config_and_headers(served: str) -> None:
    with urllib.request.urlopen(f"{served}/config.json", timeout=10) as r:
        assert json.load(r) == {
            "broker_ws": "ws://broker.ward:9001",
            "prefix": "ward2",
            "username": "station",
        }
    with urllib.request.urlopen(f"{served}/", timeout=10) as r:
        page = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
    # every file the page loads is served from the package, nothing from elsewhere
    for src in re.findall(r'(?:src|href)="([^"]+)"', page):
        if src.startswith("data:"):
            continue
        assert "://" not in src, src
        with urllib.request.urlopen(f"{served}/{src}", timeout=10) as r:
            assert r.status == 200 and len(r.read()) > 100, src
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{served}/vendor/", timeout=10)  # no directory listings
    assert e.value.code == 404


def test_vendored_mqtt_bundle_is_the_pinned_one() -> None:
    script = (WEB_DIR / "vendor" / "fetch.sh").read_text()
    pinned = re.search(r"^BUNDLE_SHA256=([0-9a-f]{64})$", script, re.M)
    version = re.search(r"^VERSION=(\S+)$", script, re.M)
    assert pinned and version
    bundle = (WEB_DIR / "vendor" / "mqtt.min.js").read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == pinned.group(1)
    assert (WEB_DIR / "vendor" / "mqtt.VERSION").read_text().strip() == version.group(1)
    assert "MIT License" in (WEB_DIR / "vendor" / "LICENSE.mqtt.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--broker-ws", "mqtt://x:1883"], "is not a websocket URL"),
        (["--prefix", "a/+"], "is not a topic prefix"),
    ],
)
def test_bad_arguments_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["station", "--port", "0", *args]) == 2
    assert message in capsys.readouterr().err
