"""Shared test fixtures: real parts, started by the tests themselves.

- ``shared_data``: the path of ``../shared/data`` (real recordings); tests that need it skip
  with the reason when it is absent.
- ``mosquitto``: a real Mosquitto broker on a free loopback port for the whole session;
  ``mosquitto_factory`` starts more (a test that stops and restarts its own broker).
- ``mqtt_listener``: a paho subscriber that records what a nurses' station would receive.
- ``tls_broker`` / ``tls_broker_factory``: Mosquitto with TLS (throwaway CA), a password file
  and the ACL of docs/security.md, optionally websockets and client-certificate listeners
  (tests/tls_broker.py).
- ``excerpt`` / ``excerpt_reference_hr``: the bundled BIDMC excerpt and its monitor HR.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
#: ``../shared/data``; BEDSIDE_SHARED_DATA points elsewhere (a git worktree one level deeper)
SHARED_DATA = Path(os.environ.get("BEDSIDE_SHARED_DATA") or ROOT.parent / "shared" / "data")
DATA_DIR = ROOT / "device" / "data"
EXCERPT = DATA_DIR / "bidmc_09_excerpt.csv.gz"
EXCERPT_NUMERICS = DATA_DIR / "bidmc_09_excerpt_Numerics.csv.gz"


# -- state ----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _own_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's daemons (in-process and children) keep their store of unsent messages in the
    test's own folder, as systemd's StateDirectory= would give them, never in the home folder:
    a message one test left unsent must not reach another test's subscriber."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


# -- data ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when the shared data sets are not beside the project."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data sets at {SHARED_DATA} (not present in this checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def excerpt() -> Path:
    return EXCERPT


@pytest.fixture(scope="session")
def excerpt_reference_hr() -> dict[int, float]:
    """Second -> the bedside monitor's ECG-derived HR for the bundled excerpt (``_Numerics``)."""
    with gzip.open(EXCERPT_NUMERICS, "rt", encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    names = [n.strip() for n in lines[0].split(",")]
    t_col, hr_col = names.index("Time [s]"), names.index("HR")
    out = {}
    for ln in lines[1:]:
        parts = ln.split(",")
        hr = float(parts[hr_col])
        if hr == hr:
            out[int(float(parts[t_col]))] = hr
    return out


# -- a real broker ------------------------------------------------------------------------
def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A Mosquitto process on 127.0.0.1:``port`` with its own config and log; can be stopped
    and started again on the same port (a broker outage)."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        port: int | None = None,
        persistent: bool = False,
        anonymous: bool = True,
        websockets: bool = False,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"
        # without persistence a restarted broker remembers nothing (the harshest outage); with it,
        # persistent sessions and their queued QoS 1 messages survive a restart
        store = workdir / f"store-{self.port}"
        store.mkdir(exist_ok=True)
        persistence = (
            f"persistence true\npersistence_location {store}/\n"
            if persistent
            else "persistence false\n"
        )
        # a second listener speaking MQTT over WebSocket, for the station page in a browser
        self.ws_port = free_port() if websockets else None
        ws = f"listener {self.ws_port} 127.0.0.1\nprotocol websockets\n" if websockets else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n{ws}"
            f"allow_anonymous {str(anonymous).lower()}\n{persistence}"
            f"log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        assert self.ws_port is not None, "started without websockets=True"
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self, timeout_s: float = 10.0) -> None:
        logf = open(self.log, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=logf, stderr=logf)
        logf.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


@pytest.fixture(scope="session")
def _mosquitto_binary() -> str:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    return binary


@pytest.fixture(scope="session")
def mosquitto(_mosquitto_binary: str) -> Iterator[Mosquitto]:
    """One real broker for the session, on a free loopback port."""
    with tempfile.TemporaryDirectory(prefix="bedside-mosquitto-") as d:
        broker = Mosquitto(_mosquitto_binary, Path(d))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def mosquitto_factory(_mosquitto_binary: str, tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start brokers of the test's own (stopped at the end of the test)."""
    started: list[Mosquitto] = []

    def make(
        port: int | None = None,
        persistent: bool = False,
        start: bool = True,
        anonymous: bool = True,
        websockets: bool = False,
    ) -> Mosquitto:
        b = Mosquitto(_mosquitto_binary, tmp_path, port, persistent, anonymous, websockets)
        if start:
            b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


# -- a broker with TLS, passwords and an ACL ---------------------------------------------------
@pytest.fixture
def tls_broker_factory(_mosquitto_binary: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start TLS brokers of the test's own: ``make(websockets=False, mtls=False, wss=False,
    start=True)`` returns a ``tests.tls_broker.TlsBroker`` (stopped at the end of the test)."""
    from tests.tls_broker import TlsBroker, tools_missing

    missing = tools_missing()
    if missing:
        pytest.skip(missing)
    started: list[TlsBroker] = []

    def make(
        websockets: bool = False, mtls: bool = False, wss: bool = False, start: bool = True
    ) -> TlsBroker:
        b = TlsBroker(
            _mosquitto_binary,
            tmp_path / f"tls-{len(started)}",
            websockets=websockets,
            mtls=mtls,
            wss=wss,
        )
        if start:
            b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture(scope="module")
def tls_broker(_mosquitto_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One TLS broker per test module, with every listener (TLS, client certificates,
    websockets)."""
    from tests.tls_broker import TlsBroker, tools_missing

    missing = tools_missing()
    if missing:
        pytest.skip(missing)
    b = TlsBroker(_mosquitto_binary, tmp_path_factory.mktemp("tls"), websockets=True, mtls=True)
    b.start()
    try:
        yield b
    finally:
        b.stop()


# -- a nurses' station --------------------------------------------------------------------
@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    wall_s: float

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8"))


class MqttListener:
    """A paho subscriber that keeps everything it receives, with waits on conditions."""

    def __init__(
        self,
        broker: Mosquitto,
        topics: str | list[str],
        client_id: str = "",
        persistent: bool = False,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []
        self._cv = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = [topics] if isinstance(topics, str) else topics
        # a persistent session (clean_session False) gets, on reconnect, the QoS 1 messages the
        # broker queued for it while it was away
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-listener-{id(self)}",
            clean_session=not persistent,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test listener could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        for t in self._topics:
            client.subscribe(t, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cv:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )
            self._cv.notify_all()

    def on(self, suffix: str) -> list[Received]:
        with self._cv:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def publish(self, topic: str, payload: str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_listener() -> Iterator[Callable[..., MqttListener]]:
    made: list[MqttListener] = []

    def make(
        broker: Mosquitto, topics: str | list[str], client_id: str = "", persistent: bool = False
    ) -> MqttListener:
        listener = MqttListener(broker, topics, client_id, persistent)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


# -- real PortAudio capture from a recording -------------------------------------------------
@pytest.fixture
def alsa_replay_home(tmp_path: Path) -> Callable[[Path], tuple[dict[str, str], Path]]:
    """Make a recording capturable through real PortAudio: ``bedside replay --to alsa-raw``
    writes raw PCM, and a fresh HOME gets the ``.asoundrc`` entry it prints (ALSA's ``file``
    plugin, device ``bedside_replay``). Returns (environment for the capturing child, raw file).
    PortAudio reads ALSA config when it initialises, so the capture must run in a child."""

    def make(wav: Path) -> tuple[dict[str, str], Path]:
        raw = tmp_path / "breath.raw"
        out = subprocess.run(
            [sys.executable, "-m", "device", "replay", str(wav), "--to", "alsa-raw", str(raw)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        entry = next(line for line in out.splitlines() if line.startswith("pcm.bedside_replay"))
        home = tmp_path / "home"
        home.mkdir()
        (home / ".asoundrc").write_text(entry + "\n")
        env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        return env, raw

    return make
