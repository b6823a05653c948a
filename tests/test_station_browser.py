"""The central-station page in a real headless Chromium, against a real Mosquitto (with a
websocket listener) and a real daemon replaying a real record that raises alarms.

The page shows the bed's HR and the alarms (physiological apart from technical, ordered by
priority); clicking Acknowledge reaches the daemon, which acknowledges the alarm and says so
over MQTT, and the page shows the new state; a SIGKILLed daemon's tile goes offline through
the broker's last will. Screenshots are saved in the test's tmp dir and, when
``BEDSIDE_ARTIFACTS`` is set, there too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from station_support import ROOT, start_alarming_bed, stop

BED = "icu-7"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 45  # an upper bound for each wait, never a measured time


def _need_browser() -> None:
    why = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        why = "selenium is not installed (pip install -e '.[station]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            why = f"{path} is missing (apt-get install chromium chromium-driver)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {why}")
        pytest.skip(why)


@contextlib.contextmanager
def chromium(*extra_flags: str) -> Iterator[Any]:
    """Headless Chromium driven by Selenium (Debian's chromium and chromium-driver)."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-background-networking",  # no calls home: this machine has no network
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,760",
        *extra_flags,
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bedside station exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("bedside station did not listen")


@pytest.fixture
def station_server(tmp_path: Path) -> Iterator[Any]:
    """``bedside station`` as a subprocess; call with the broker's websocket URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(broker_ws: str) -> str:
        port = free_port()
        log = tmp_path / "station.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "device",
                    "station",
                    "--port",
                    str(port),
                    "--broker-ws",
                    broker_ws,
                ],  # fmt: skip
                cwd=ROOT,
                stdout=f,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        procs.append(proc)
        _wait_port(port, proc, log)
        return f"http://127.0.0.1:{port}/"

    yield start
    for p in procs:
        stop(p)


def _save(driver: Any, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    assert driver.save_screenshot(str(out)), "screenshot failed"
    if os.environ.get("BEDSIDE_ARTIFACTS"):
        dest = Path(os.environ["BEDSIDE_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, dest / name)
    return out


@pytest.mark.e2e
def test_station_page_shows_bed_alarms_acknowledge_and_last_will(
    mosquitto_factory, mqtt_listener, station_server, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    broker = mosquitto_factory(websockets=True)
    station_url = station_server(broker.ws_url)
    bed_events = mqtt_listener(broker, [f"bedside/{BED}/alarms", f"bedside/{BED}/status"])
    daemon = start_alarming_bed(broker.url, BED, tmp_path)
    try:
        browser.get(station_url)
        wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2)
        tile = f'.tile[data-bed="{BED}"]'

        # the bed's tile, online, with a current HR from the replay (this patient: ~77 bpm)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'{tile}[data-online="true"]'))
        hr = wait.until(
            lambda d: (
                (t := d.find_element(By.CSS_SELECTOR, f"{tile} .hr-value").text).isdigit() and t
            )
        )
        assert 60 <= int(hr) <= 100, f"HR on the page: {hr}"
        assert browser.find_element(By.CSS_SELECTOR, f"{tile} .hr-meta").text.startswith("ecg")

        # the alarms: hr_high (high) and rr_high (medium) among the physiological ones, high
        # first; sensor_off (low) among the technical ones
        phys = "#alarms-physiological li.alarm"
        tech = "#alarms-technical li.alarm"

        def shown(d: Any) -> list[tuple[str, str, str]] | bool:
            rows = [
                (e.get_attribute("data-alarm-id"), e.get_attribute("data-priority"), kind)
                for kind, sel in (("phys", phys), ("tech", tech))
                for e in d.find_elements(By.CSS_SELECTOR, sel)
            ]
            ids = {r[0] for r in rows}
            want = (f"{BED}-hr_high", f"{BED}-rr_high", f"{BED}-sensor_off-ppg")
            return rows if all(any(i.startswith(w) for i in ids) for w in want) else False

        rows = wait.until(shown)
        kinds = {r[0].split("-")[2]: (r[1], r[2]) for r in rows}
        assert kinds["hr_high"] == ("high", "phys")
        assert kinds["rr_high"] == ("medium", "phys")
        assert kinds["sensor_off"] == ("low", "tech")
        phys_order = [
            e.get_attribute("data-priority") for e in browser.find_elements(By.CSS_SELECTOR, phys)
        ]
        assert phys_order.index("high") < phys_order.index("medium"), phys_order
        high = browser.find_element(By.CSS_SELECTOR, f'{phys}[data-priority="high"]')
        high_id = high.get_attribute("data-alarm-id")
        assert high.get_attribute("data-state") == "active"
        # IEC 60601-1-8 colours: high red (and flashing), low cyan
        assert high.value_of_css_property("animation-name") == "flash-high"
        assert high.value_of_css_property("background-color") == "rgba(224, 32, 27, 1)"
        low = browser.find_element(By.CSS_SELECTOR, f'{tech}[data-priority="low"]')
        assert low.value_of_css_property("background-color") == "rgba(25, 200, 230, 1)"
        assert low.value_of_css_property("animation-name") == "none"
        _save(browser, tmp_path, "station_alarm.png")

        # acknowledge the high-priority alarm on the page: the daemon applies it
        high.find_element(By.TAG_NAME, "button").click()
        acked = f'{phys}[data-alarm-id="{high_id}"][data-state="acknowledged"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, acked))
        assert bed_events.wait_for(
            lambda ms: any(
                m.topic.endswith("/alarms")
                and m.json()["id"] == high_id
                and m.json()["state"] == "acknowledged"
                for m in ms
            ),
            WAIT_S,
        ), "the daemon did not publish the acknowledgement"
        assert bed_events.wait_for(
            lambda ms: any(
                m.topic.endswith("/status")
                and m.json().get("counters", {}).get("commands_applied", 0) >= 1
                for m in ms
            ),
            WAIT_S,
        ), "the daemon's status does not count the applied command"
        acked_el = browser.find_element(By.CSS_SELECTOR, acked)
        assert acked_el.value_of_css_property("animation-name") == "none"  # stops flashing
        assert not acked_el.find_element(By.TAG_NAME, "button").is_displayed()
        _save(browser, tmp_path, "station_acknowledged.png")

        # a station that opens now learns the alarms from the bed's retained status
        browser.refresh()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, acked))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'{tech}[data-priority="low"]'))

        # SIGKILL: no clean offline from the daemon; the broker's last will greys the tile
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'{tile}[data-online="false"]'))
        state = browser.find_element(By.CSS_SELECTOR, f"{tile} .online").text
        assert "last will" in state, state
        lost = browser.find_element(
            By.CSS_SELECTOR, f'{tech}[data-alarm-id="station:{BED}:offline"]'
        )
        assert lost.get_attribute("data-priority") == "medium" and "last will" in lost.text
        assert browser.find_element(By.CSS_SELECTOR, f"{tile} .hr-value").text == "--"
        assert "grayscale" in browser.find_element(By.CSS_SELECTOR, tile).value_of_css_property(
            "filter"
        )
        _save(browser, tmp_path, "station_offline.png")
        console = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not console, f"errors in the page: {console}"
    finally:
        stop(daemon, signal.SIGKILL)


@pytest.mark.e2e
def test_station_page_puts_historical_vitals_in_the_trend_never_as_current(
    mosquitto_factory, mqtt_listener, station_server, browser
) -> None:  # type: ignore[no-untyped-def]
    """Store-and-forward seconds (``"historical": true``, late, with their own ``ts``) go into
    the trend only; a second delivered twice (same ``seq``) is counted once."""
    import json
    from datetime import datetime, timedelta

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from device.compat import UTC

    broker = mosquitto_factory(websockets=True)
    browser.get(station_server(broker.ws_url))
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2)
    wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "connected")
    pub = mqtt_listener(broker, "bedside/none")
    now = datetime.now(UTC)

    def vitals(seq: int, hr: float, age_s: float, historical: bool) -> str:
        ts = (now - timedelta(seconds=age_s)).isoformat(timespec="milliseconds")
        body = {
            "schema_version": 1, "bed": "b1", "ts": ts.replace("+00:00", "Z"), "type": "vitals",
            "t_s": float(seq), "seq": seq, "hr_bpm": hr, "rr_bpm": 16.0, "hr_source": "ppg",
            "rr_source": "ppg", "hr_model": "dsp", "rr_model": "dsp",
            "sqi": {"hr_ppg": 0.9, "rr_ppg": 0.8},
        }  # fmt: skip
        if historical:
            body["historical"] = True
        return json.dumps(body)

    tile = '.tile[data-bed="b1"]'
    points = f"{tile} canvas.trend"
    pub.publish("bedside/b1/vitals", vitals(100, 72.0, 0, False), qos=0)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{tile} .hr-value").text == "72")
    wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, points).get_attribute("data-points") == "1"
    )
    # 40 stored seconds from a minute ago arrive after the live one, one of them twice
    for k in range(40):
        pub.publish("bedside/b1/vitals", vitals(50 + k, 140.0, 60 - k, True), qos=0)
    pub.publish("bedside/b1/vitals", vitals(50, 140.0, 60, True), qos=0)
    wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, points).get_attribute("data-points") == "41"
    )
    # the current value is still the live 72 (or '--' once it is 5 s old), never the stored 140
    assert browser.find_element(By.CSS_SELECTOR, f"{tile} .hr-value").text in ("72", "--")
    pub.publish("bedside/b1/vitals", vitals(101, 73.0, -1, False), qos=0)
    wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, points).get_attribute("data-points") == "42"
    )
    assert browser.find_element(By.CSS_SELECTOR, f"{tile} .hr-value").text == "73"
    assert browser.find_element(By.CSS_SELECTOR, f"{tile} .hr-meta").text == "ppg · quality 0.90"


@pytest.mark.e2e
def test_station_page_signs_in_where_the_broker_refuses_anonymous_clients(
    tls_broker_factory, station_server, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """On a ward broker set up as docs/security.md describes (passwords and the ACL on every
    listener, websockets included), the page is refused as anonymous, asks for a user, is
    refused again on a wrong password, and shows the bed once the station user signs in. The
    bed is a real daemon over TLS with its password in a file."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.tls_broker import USERS

    broker = tls_broker_factory(websockets=True)
    secret = tmp_path / "bed1-password"
    secret.write_text(USERS["bed1"] + "\n")
    secret.chmod(0o600)
    excerpt = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
    log = tmp_path / "bed1.log"
    with open(log, "wb") as f:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "device", "run", "--bed", "bed1", "--replay", str(excerpt),
             "--loop", "--broker", broker.url, "--state-dir", str(tmp_path / "state")]
            + ["--config", str(_mqtt_toml(tmp_path, broker.ca, secret))],
            cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        browser.get(station_server(f"ws://127.0.0.1:{broker.ws_port}"))
        wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2)
        form = browser.find_element(By.ID, "signin")
        wait.until(lambda d: form.is_displayed())
        assert browser.find_element(By.ID, "conn").get_attribute("data-state") == "offline"
        assert "needs a user" in browser.find_element(By.ID, "signin-why").text

        def sign_in(user: str, password: str) -> None:
            name = browser.find_element(By.ID, "signin-user")
            name.clear()
            name.send_keys(user)
            browser.find_element(By.ID, "signin-password").send_keys(password)
            browser.find_element(By.ID, "signin-submit").click()

        sign_in("station", "not-the-password")
        wait.until(lambda d: "wrong user or password" in d.find_element(By.ID, "signin-why").text)
        wait.until(lambda d: form.is_displayed())
        sign_in("station", USERS["station"])
        wait.until(
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "connected"
        )
        assert not form.is_displayed()
        tile = '.tile[data-bed="bed1"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'{tile}[data-online="true"]'))
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{tile} .hr-value").text.isdigit())
        _save(browser, tmp_path, "station_signed_in.png")
    finally:
        stop(daemon, signal.SIGTERM)


def _mqtt_toml(tmp_path: Path, ca: Path, secret: Path) -> Path:
    cfg = tmp_path / "bed1.toml"
    cfg.write_text(
        f'[mqtt]\nca_file = "{ca}"\nusername = "bed1"\npassword_file = "{secret}"\n'
        "keepalive_s = 5\n"
    )
    return cfg


def _spki_sha256(cert: Path) -> str:
    """Base64 SHA-256 of a certificate's public key (what Chromium pins by)."""
    pem = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"],
        input=pem, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.mark.e2e
def test_station_page_over_wss_trusts_only_the_wards_broker(
    tls_broker_factory, station_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A page served over https may only open wss://. The broker's websocket listener over
    TLS, with passwords and the ACL: a browser that trusts the broker's key (pinned here, as a
    ward's managed browsers would trust the ward CA) connects and signs in; one that does not
    never reaches the sign-in, because the TLS handshake fails first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.tls_broker import USERS

    broker = tls_broker_factory(wss=True)
    page = station_server(f"wss://localhost:{broker.wss_port}")
    pin = _spki_sha256(broker.server_cert)
    with chromium(f"--ignore-certificate-errors-spki-list={pin}") as trusting:
        trusting.get(page)
        wait = WebDriverWait(trusting, WAIT_S, poll_frequency=0.2)
        wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
        trusting.find_element(By.ID, "signin-user").send_keys("station")
        trusting.find_element(By.ID, "signin-password").send_keys(USERS["station"])
        trusting.find_element(By.ID, "signin-submit").click()
        wait.until(
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "connected"
        )
        _save(trusting, tmp_path, "station_wss.png")
    with chromium() as untrusting:
        untrusting.get(page)
        conn = untrusting.find_element(By.ID, "conn")
        # the handshake fails: MQTT.js reports the connection closed and retries, never in
        seen = set()

        def failed(d: Any) -> bool:
            seen.add(conn.get_attribute("data-state"))
            return bool(seen & {"offline", "reconnecting"})

        WebDriverWait(untrusting, WAIT_S, poll_frequency=0.2).until(failed)
        assert "connected" not in seen, seen
        assert not untrusting.find_element(By.ID, "signin").is_displayed()
