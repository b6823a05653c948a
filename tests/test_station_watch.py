"""``bedside watch`` in a real pseudo-terminal (tmux) and ``bedside ack`` from the shell,
against a real Mosquitto and the real daemon replaying a real record that raises alarms;
and the station's bed model (``station.ward``) on its own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from station_support import ROOT, start_alarming_bed, stop

from station.ward import Ward

BED = "icu-9"
WAIT_S = 45  # an upper bound for each wait, never a measured time


class Tmux:
    """A private tmux server (its own socket) running one command in a 140x30 terminal."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.sock = f"bedside-test-{os.getpid()}-{time.monotonic_ns()}"
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        line = f"env {exports} " + " ".join(command)
        subprocess.run(
            [
                "tmux",
                "-L",
                self.sock,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "140",
                "-y",
                "30",
                line,
            ],
            check=True,
            timeout=20,
        )

    def screen(self) -> str:
        r = subprocess.run(
            ["tmux", "-L", self.sock, "capture-pane", "-p", "-t", "t"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return r.stdout

    def wait_for(self, pred: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            text = self.screen()
            if pred(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"the terminal never showed {what}:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def tmux() -> Iterator[Callable[..., Tmux]]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the terminal test: tmux is missing (apt-get install tmux)")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    made: list[Tmux] = []

    def make(command: list[str], env: dict[str, str]) -> Tmux:
        made.append(Tmux(command, env))
        return made[-1]

    yield make
    for t in made:
        t.close()


def _row(screen: str) -> str:
    """The table's lines about BED (its first line and the continuation lines below it)."""
    lines = screen.splitlines()
    start = next(i for i, ln in enumerate(lines) if f"│ {BED}" in ln)
    out = [lines[start]]
    for ln in lines[start + 1 :]:
        cells = ln.split("│")
        if len(cells) < 3 or cells[1].strip():  # the table's end, or the next bed
            break
        out.append(ln)
    return "\n".join(out)


@pytest.mark.e2e
def test_watch_shows_bed_and_alarms_ack_from_shell_reconnect_and_last_will(
    mosquitto_factory, mqtt_listener, tmux, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("rich")
    broker = mosquitto_factory()
    alarms = mqtt_listener(broker, f"bedside/{BED}/alarms")
    daemon = start_alarming_bed(broker.url, BED, tmp_path)
    try:
        term = tmux(
            [sys.executable, "-m", "device", "watch", "--broker", broker.url],
            {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "140"},
        )
        term.wait_for(lambda s: f"│ {BED}" in s and "online" in _row(s), "the bed online")
        screen = term.wait_for(
            lambda s: f"│ {BED}" in s and "HIGH HR HIGH" in _row(s) and "SENSOR OFF" in _row(s),
            "the alarms",
        )
        row = _row(screen)
        assert " ecg " in row.split("\n")[0], row  # HR with its source
        assert row.index("HIGH HR HIGH") < row.index("MEDIUM RR HIGH") < row.index("LOW SENSOR")

        # acknowledge the high-priority alarm from the shell, by the id the table shows
        assert alarms.wait_for(lambda ms: any("hr_high" in m.json()["id"] for m in ms), WAIT_S)
        high_id = next(m.json()["id"] for m in alarms.messages if "hr_high" in m.json()["id"])
        assert high_id in row
        r = subprocess.run(
            [sys.executable, "-m", "device", "ack", BED, high_id, "--broker", broker.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip() == f"{high_id}: acknowledged by bed {BED}"
        term.wait_for(lambda s: "HR HIGH" in _row(s) and "(ack)" in _row(s), "the acknowledgement")
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "device",
                "ack",
                BED,
                f"{BED}-no-such-alarm",
                "--broker",
                broker.url,
                "--timeout",
                "3",
            ],  # fmt: skip
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert r.returncode == 1 and "no current alarm with that id" in r.stdout, r.stdout

        # the broker goes away and comes back: watch says so and reconnects by itself
        broker.stop()
        term.wait_for(lambda s: "NO CONNECTION" in s, "the lost connection")
        broker.start()
        term.wait_for(lambda s: "connected to" in s.splitlines()[0], "the reconnection")
        # (the restarted broker kept nothing: the bed's state comes from the daemon again)
        term.wait_for(lambda s: f"│ {BED}" in s and "online" in _row(s), "the bed online again")

        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        screen = term.wait_for(lambda s: "OFFLINE" in _row(s), "the last will")
        assert "NO CONNECTION TO BED" in _row(screen)
        assert "--" in _row(screen).split("\n")[0]  # no current HR from a dead bed
    finally:
        stop(daemon, signal.SIGKILL)


# -- the bed model, on its own ---------------------------------------------------------------
def _msg(ward: Ward, leaf: str, body: dict, now: float = 0.0, bed: str = "b1") -> None:  # type: ignore[type-arg]
    ward.apply(f"bedside/{bed}/{leaf}", json.dumps(body).encode(), now)


def test_ward_keeps_historical_vitals_out_of_the_current_value_and_drops_repeats() -> None:
    w = Ward()
    _msg(w, "vitals", {"seq": 10, "hr_bpm": 70.0, "rr_bpm": 15.0}, now=1.0)
    _msg(w, "vitals", {"seq": 3, "hr_bpm": 150.0, "historical": True}, now=2.0)
    _msg(w, "vitals", {"seq": 3, "hr_bpm": 150.0, "historical": True}, now=2.1)
    b = w.beds["b1"]
    assert b.vitals is not None and b.vitals["hr_bpm"] == 70.0 and b.vitals_at_s == 1.0
    assert b.historical_received == 1
    _msg(w, "vitals", {"seq": 10, "hr_bpm": 99.0}, now=3.0)  # a repeated live second
    assert b.vitals["hr_bpm"] == 70.0


def test_ward_alarms_follow_events_and_the_status_list() -> None:
    w = Ward()
    a = {"id": "b1-hr_high-3", "condition": "hr_high", "priority": "high", "state": "active"}
    t = {"id": "b1-sensor_off-ppg-9", "condition": "sensor_off", "priority": "low",
         "state": "active", "role": "ppg"}  # fmt: skip
    m = {"id": "b1-rr_high-5", "condition": "rr_high", "priority": "medium", "state": "active"}
    for x in (t, m, a):
        _msg(w, "alarms", x)
    b = w.beds["b1"]
    assert [x["priority"] for x in b.sorted_alarms()] == ["high", "medium", "low"]
    _msg(w, "alarms", {**m, "state": "cleared"})
    assert set(b.alarms) == {a["id"], t["id"]}
    # an online status is the truth after a reconnect: the acknowledged high one only
    _msg(w, "status", {"state": "online", "alarms": [{**a, "state": "acknowledged"}]})
    assert list(b.alarms) == [a["id"]] and b.alarms[a["id"]]["state"] == "acknowledged"
    assert b.online is True
    # the last will: offline, last known alarms kept
    _msg(w, "status", {"state": "offline", "reason": "connection lost (last will)"})
    assert b.online is False and list(b.alarms) == [a["id"]]


def test_ward_ignores_other_prefixes_beds_and_non_json() -> None:
    w = Ward(prefix="ward2", bed="b1")
    assert w.topics() == ["ward2/b1/status", "ward2/b1/vitals", "ward2/b1/alarms"]
    assert w.apply("bedside/b1/vitals", b"{}", 0.0) is None
    assert w.apply("ward2/b2/vitals", b"{}", 0.0) is None
    assert w.apply("ward2/b1/vitals", b"not json", 0.0) is None
    assert w.apply("ward2/b1/cmd/ack", b"{}", 0.0) is None
    assert w.apply("ward2/b1/vitals", b'{"hr_bpm": 60}', 0.0) is not None
