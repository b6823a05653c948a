"""sd_notify: the real daemon tells a real unix datagram socket (standing in for systemd) that it
is ready, pings the watchdog only while every stage progresses, reports its status and says
when it stops. The rules of the watchdog are also tested on their own with an injected clock.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.notify import (
    HANG_ENV,
    Heartbeats,
    Notifier,
    Supervisor,
    summary_line,
    watchdog_interval_s,
)

ROOT = Path(__file__).resolve().parents[1]
BED = "notify1"


# -- a stand-in for systemd's notification socket ------------------------------------------
class NotifySocket:
    """Binds an AF_UNIX datagram socket and keeps every message with its arrival time."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cv:
                self.messages.append((time.monotonic(), data.decode().split("\n")))
                self._cv.notify_all()

    def fields(self, since: float = float("-inf")) -> list[str]:
        with self._cv:
            return [f for t, fs in self.messages if t >= since for f in fs]

    def wait_for(self, pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not pred([f for _, fs in self.messages for f in fs]):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def pings_between(self, t0: float, t1: float) -> int:
        with self._cv:
            return sum(fs.count("WATCHDOG=1") for t, fs in self.messages if t0 <= t <= t1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, NotifySocket]]:
    # a short path: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path can be longer
    d = tempfile.mkdtemp(prefix="sd-")
    path = os.path.join(d, "notify")
    ns = NotifySocket(path)
    try:
        yield path, ns
    finally:
        ns.close()
        os.unlink(path)
        os.rmdir(d)


def start_daemon(
    broker_url: str, notify_path: str, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        "NOTIFY_SOCKET": notify_path,
        # systemd's WatchdogSec=1s: a ping every 0.5 s while all is well
        "WATCHDOG_USEC": "1000000",
        **(extra_env or {}),
    }
    env.pop("WATCHDOG_PID", None)
    cmd = [
        sys.executable,
        "-m",
        "device",
        "run",
        "--replay",
        str(ROOT / "device/data/bidmc_09_excerpt.csv.gz"),
        "--speed",
        "10",
        "--loop",
        "--broker",
        broker_url,
        "--bed",
        BED,
        "--state-dir",
        str(tmp_path / "state"),
    ]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    return proc, log


def wait_log(log: Path, pattern: str, timeout_s: float) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(errors="replace"))
        if m:
            return m
        time.sleep(0.1)
    return None


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


# -- the real daemon -----------------------------------------------------------------------
@pytest.mark.e2e
def test_ready_watchdog_status_stopping(mosquitto, notify_socket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, ns = notify_socket
    proc, log = start_daemon(mosquitto.url, path, tmp_path)
    try:
        assert ns.wait_for(lambda fs: "READY=1" in fs, 60), log.read_text()
        ready_at = next(t for t, fs in ns.messages if "READY=1" in fs)
        # the broker is up: READY came after the connection was tried, and the daemon says so
        assert wait_log(log, r"connected to broker", 10)
        # periodic pings after READY
        assert ns.wait_for(lambda fs: fs.count("WATCHDOG=1") >= 4, 60), ns.messages
        assert ns.pings_between(ready_at, time.monotonic()) >= 3
        # the status line: bed, HR and RR as numbers once estimated, alarms, broker, store depth
        line = re.compile(
            rf"^STATUS=bed {BED}: HR \d+ bpm, RR \d+/min, alarms: \S.*, broker connected, "
            r"outbox \d+$"
        )
        assert ns.wait_for(lambda fs: any(line.match(f) for f in fs), 60), ns.fields()
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
        assert "STOPPING=1" in ns.fields(), ns.fields()[-5:]
        # nothing after STOPPING pings the watchdog
        stop_at = next(t for t, fs in ns.messages if "STOPPING=1" in fs)
        assert ns.pings_between(stop_at, time.monotonic()) == 0
    finally:
        kill(proc)


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["core", "replay"])
def test_a_hung_stage_stops_the_watchdog_pings(mosquitto, notify_socket, tmp_path, stage) -> None:  # type: ignore[no-untyped-def]
    """The test hook hangs the stage's own thread 3 s after start: the daemon logs which stage
    stopped, and no watchdog ping comes after that while the process lives on (systemd would
    now kill and restart it)."""
    path, ns = notify_socket
    proc, log = start_daemon(mosquitto.url, path, tmp_path, {HANG_ENV: f"{stage}:3"})
    try:
        assert ns.wait_for(lambda fs: "READY=1" in fs, 60), log.read_text()
        assert ns.wait_for(lambda fs: fs.count("WATCHDOG=1") >= 2, 60)
        m = wait_log(log, r"no progress from (\S+) for \d+ s; watchdog pings withheld", 90)
        assert m, log.read_text()
        assert m.group(1).partition(":")[0] == stage
        seen = time.monotonic()
        # pings already in flight when the line was written arrive at once; then silence, with
        # the process still alive (12 ping intervals)
        time.sleep(7.0)
        assert proc.poll() is None, log.read_text()
        assert ns.pings_between(seen + 1.0, time.monotonic()) == 0, ns.messages[-5:]
    finally:
        kill(proc)


def test_without_notify_socket_nothing_is_sent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sd = Supervisor.from_environ({})
    assert not sd.notifier.enabled and sd.watchdog_s is None
    sd.watch("core")
    sd.start()
    sd.ready()
    sd.status("x")
    sd.stopping()
    assert sd.pings == 0


# -- the rules, with an injected clock -----------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_heartbeats_report_only_silent_stages() -> None:
    clock = FakeClock()
    hb = Heartbeats(clock)
    finished = False
    hb.add("core", 10.0)
    hb.add("sink", 90.0)
    hb.add("replay:x", 10.0, done=lambda: finished)
    clock.t += 9.0
    hb.beat("core")
    assert hb.stale() == []
    clock.t += 9.0
    # replay silent 18 s (> 10), core 9 s, sink 18 s (< 90)
    assert [s for s, _ in hb.stale()] == ["replay:x"]
    finished = True  # a replay that played its recording has finished, not hung
    assert hb.stale() == []
    clock.t += 100.0
    assert sorted(s for s, _ in hb.stale()) == ["core", "sink"]
    hb.beat("unknown")  # a beat for a stage nobody watches changes nothing
    assert "unknown" not in hb.stages


def test_supervisor_pings_only_while_all_stages_progress(notify_socket) -> None:  # type: ignore[no-untyped-def]
    path, ns = notify_socket
    clock = FakeClock()
    sd = Supervisor(Notifier(path), watchdog_s=0.5, clock=clock)
    beat_core = sd.watch("core", 10.0)
    sd.watch("sink", 90.0)
    sd.status("bed b: HR 70 bpm")
    assert sd.check() == []
    clock.t += 11.0
    assert sd.check() == ["core"]  # no ping
    clock.t += 1.0
    assert sd.check() == ["core"]
    beat_core()
    assert sd.check() == []  # resumed
    assert sd.pings == 2
    sd.stopping()
    assert ns.wait_for(lambda fs: "STOPPING=1" in fs, 5)
    fields = ns.fields()
    assert fields.count("WATCHDOG=1") == 2
    assert "STATUS=bed b: HR 70 bpm" in fields


def test_abstract_namespace_socket() -> None:
    name = f"bedside-test-{os.getpid()}-{time.monotonic_ns()}"
    ns = NotifySocket(b"\0" + name.encode())
    try:
        assert Notifier("@" + name).send("READY=1", "STATUS=hello")
        assert ns.wait_for(lambda fs: fs == ["READY=1", "STATUS=hello"], 5)
    finally:
        ns.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    # meant for another process (sd_watchdog_enabled's rule)
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None


def test_status_line() -> None:
    status = {
        "alarms": [{"condition": "hr_high", "priority": "high", "state": "active"}],
        "mqtt": {"connected": False, "outbox_pending": 2},
    }
    line = summary_line("icu-3", {"hr_bpm": 131.4, "rr_bpm": None}, status)
    assert line == (
        "bed icu-3: HR 131 bpm, RR --/min, alarms: 1 hr_high(high,active), "
        "broker disconnected, outbox 2"
    )
    assert "alarms: none" in summary_line("icu-3", None, {"mqtt": {"connected": True}})
