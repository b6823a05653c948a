"""SerialSource on a real pseudo-terminal, fed like a HealthyPi with a real BIDMC recording.

The far end of the pty plays the board: it writes OpenView packets (or text lines) paced at
the sample rate times a speed factor. The reader is the real SerialSource thread (pyserial
on the pty's slave path); its frames drive the real Monitor, as in the daemon.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.config import load_config
from device.monitor import Monitor
from device.recording import Recording, read_recording
from device.sources.base import FrameQueue
from device.sources.formats.openview import HEALTHYPI5, counts_for_signals, encode_packets
from device.sources.formats.text import HEALTHYPI_TEXT, encode_lines
from device.sources.serial import SerialConfig, SerialSource
from lab.reference import load_bidmc_reference

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: BIDMC record 02 from the shared data when present, else the bundled excerpt of record 09
#: (so a fresh clone runs these real-port tests too); both come with their monitor HR.
SHARED_RECORD = DATA / "bidmc" / "bidmc_csv" / "bidmc_02_Signals.csv.gz"
BUNDLED_RECORD = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"
RECORD = SHARED_RECORD if SHARED_RECORD.exists() else BUNDLED_RECORD
needs_bidmc = pytest.mark.skipif(not RECORD.exists(), reason=f"BIDMC record not found at {RECORD}")

#: BIDMC floats (normalised, 5 decimals) -> integer counts: 100000 counts per unit keeps every
#: digit (what `bedside replay --format openview` does too)
COUNTS_PER_UNIT = 1e5


class PtyBoard:
    """A real pty whose slave path is reachable through ``link`` (like a udev symlink)."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # a board's port is raw; no echo back into the master
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))

    def unplug(self) -> None:
        """The USB cable pulled: the port goes away (and so does its udev symlink)."""
        os.close(self.master)
        os.close(self.slave)
        self.link.unlink()


def encode_openview(signals: dict[str, np.ndarray]) -> list[bytes]:
    scaled = {r: x * COUNTS_PER_UNIT for r, x in signals.items()}
    data = encode_packets(HEALTHYPI5, counts_for_signals(HEALTHYPI5, scaled))
    n = 5 + HEALTHYPI5.size + 2
    return [data[i : i + n] for i in range(0, len(data), n)]


def encode_text(signals: dict[str, np.ndarray]) -> list[bytes]:
    return encode_lines(HEALTHYPI_TEXT, signals, decimals=5).splitlines(keepends=True)


def play(
    fd: int,
    samples: list[bytes],
    fs: float,
    speed: float,
    mangle: Callable[[int, bytes], bytes] | None = None,
    written: list[int] | None = None,
) -> None:
    """Write one encoded sample per 1/(fs*speed) s, in 20 ms bursts like a USB CDC board;
    the byte count goes to ``written``."""
    t0 = time.monotonic()
    i = 0
    while i < len(samples):
        due = min(len(samples), int((time.monotonic() - t0) * fs * speed) + 1)
        chunk = b"".join(mangle(k, samples[k]) if mangle else samples[k] for k in range(i, due))
        os.write(fd, chunk)
        if written is not None:
            written.append(len(chunk))
        i = due
        time.sleep(0.02)


class Reader:
    """The daemon's main loop in miniature: frames -> Monitor -> messages."""

    def __init__(self, cfg: SerialConfig) -> None:
        self.source = SerialSource(cfg)
        self.queue = FrameQueue()
        self.stop = threading.Event()
        self.monitor = Monitor.for_inputs(self.source.roles, load_config(None))
        self.messages: list[Any] = []
        self.lost_frames: list[int] = []

    def __enter__(self) -> Reader:
        self.source.start(self.queue, self.stop)
        # pyserial flushes the port's input when it opens it: start the board after that
        deadline = time.monotonic() + 5
        while self.source.state != "reading" and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.source.join(5)

    def run(self, until: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not until() and time.monotonic() < deadline:
            f = self.queue.get(timeout=0.1)
            if f is None:
                continue
            for role, x in f.samples.items():
                self.monitor.feed(role, x)
            for role, n in f.n_lost.items():
                self.monitor.feed_gap(role, n)
            if f.n_lost:
                self.lost_frames.append(max(f.n_lost.values()))
            self.messages.extend(self.monitor.step())

    @property
    def vitals(self) -> list[Any]:
        return [m for m in self.messages if m.kind == "vitals"]

    def seconds(self) -> int:
        return len(self.vitals)


def excerpt(start_s: float, stop_s: float) -> tuple[Recording, dict[str, np.ndarray]]:
    rec = read_recording(RECORD).excerpt(start_s, stop_s)
    return rec, rec.role_signals()


def hr_errors(vitals: list[Any], ref_hr: np.ndarray, from_s: int) -> np.ndarray:
    out = []
    for v in vitals:
        k = int(round(v.t_s))
        if k >= from_s and k < len(ref_hr) and v.hr_bpm is not None and np.isfinite(ref_hr[k]):
            out.append(abs(v.hr_bpm - ref_hr[k]))
    return np.array(out)


@pytest.mark.slow
@pytest.mark.e2e
@needs_bidmc
@pytest.mark.parametrize("fmt", ["openview", "text"])
def test_pty_stream_gives_reference_heart_rate(tmp_path: Path, fmt: str) -> None:
    duration = 36
    rec, sig = excerpt(0, duration)
    ref = load_bidmc_reference(RECORD, duration_s=duration)
    board = PtyBoard(tmp_path / "ttyBED")
    samples = encode_openview(sig) if fmt == "openview" else encode_text(sig)
    cfg = SerialConfig(url=str(board.link), format=fmt, fs_hz=rec.fs_hz)
    with Reader(cfg) as r:
        assert set(r.source.roles) == {"ecg", "ppg", "resp"}
        writer = threading.Thread(target=play, args=(board.master, samples, rec.fs_hz, 8.0))
        writer.start()
        r.run(lambda: r.source.samples >= len(samples) and r.seconds() >= duration, timeout_s=30)
        writer.join()
        status = r.source.status()
    assert r.seconds() >= duration
    err = hr_errors(r.vitals, ref.hr_bpm, from_s=12)
    assert len(err) >= duration - 12 - 2, "HR missing for most seconds"
    assert float(np.mean(err)) < 3.0, err
    assert all(v.hr_source == "ecg" for v in r.vitals[12:])
    assert status["good_frames"] == len(samples) and status["bad_frames"] == 0
    assert status["samples"] == len(samples)
    # (lost_samples is not asserted: a machine loaded by other work may pause the writer for
    # over stall_s, which the reader rightly reports as lost signal)
    assert status["outages"] == 0


@pytest.mark.slow
@pytest.mark.e2e
@needs_bidmc
def test_garbage_and_broken_packets_in_the_stream(tmp_path: Path) -> None:
    duration = 36
    rec, sig = excerpt(0, duration)
    ref = load_bidmc_reference(RECORD, duration_s=duration)
    board = PtyBoard(tmp_path / "ttyBED")
    samples = encode_openview(sig)
    rng = np.random.default_rng(1)
    broken = {"garbage": 0, "truncated": 0, "corrupted": 0}

    def mangle(k: int, pkt: bytes) -> bytes:
        # every ~2 s something goes wrong on the line
        if k % 250 == 100:
            broken["garbage"] += 1
            return rng.integers(0, 256, 40).astype(np.uint8).tobytes() + pkt
        if k % 250 == 180:
            broken["truncated"] += 1
            return pkt[:13]
        if k % 250 == 220:
            broken["corrupted"] += 1
            return pkt[:-1] + b"\x5a"
        return pkt

    cfg = SerialConfig(url=str(board.link), format="openview", fs_hz=rec.fs_hz)
    with Reader(cfg) as r:
        written: list[int] = []
        writer = threading.Thread(
            target=play, args=(board.master, samples, rec.fs_hz, 8.0, mangle, written)
        )
        writer.start()
        # the core reads while the board writes (as the daemon does), until the board is done
        # and nothing is left to read after what it wrote
        r.run(
            lambda: (
                not writer.is_alive()
                and r.source.status()["bytes"] >= sum(written)
                and r.seconds() >= duration - 1
            ),
            timeout_s=30,
        )
        writer.join()
        status = r.source.status()
    n_broken = broken["truncated"] + broken["corrupted"]
    assert n_broken >= 20
    # no crash, counters moved, and no sample was invented: good frames = intact packets
    # (random garbage may swallow at most the packet after it)
    assert status["bad_frames"] >= n_broken
    assert status["resyncs"] >= n_broken
    assert (
        len(samples) - n_broken - broken["garbage"]
        <= status["good_frames"]
        <= len(samples) - n_broken
    )
    assert status["samples"] == status["good_frames"]
    # vitals continue: one sample in ~125 lost shifts time by < 1 %
    err = hr_errors(r.vitals, ref.hr_bpm, from_s=12)
    assert len(err) >= duration - 12 - 4
    assert float(np.mean(err)) < 4.0, err


def _alarm_events(messages: list[Any], condition: str) -> list[Any]:
    return [m for m in messages if m.kind == "alarm" and m.condition == condition]


@pytest.mark.slow
@pytest.mark.e2e
@needs_bidmc
def test_unplug_and_replug_raises_and_clears_signal_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="device.sources.serial")
    fs = 125.0
    speed = 6.0
    _, sig = excerpt(0, 42)
    first = encode_openview({r: x[: int(20 * fs)] for r, x in sig.items()})
    second = encode_openview({r: x[int(20 * fs) :] for r, x in sig.items()})
    link = tmp_path / "ttyBED"
    board = PtyBoard(link)
    cfg = SerialConfig(
        url=str(link), format="openview", fs_hz=fs, reconnect_min_s=0.1, reconnect_max_s=0.4
    )
    with Reader(cfg) as r:
        writer = threading.Thread(target=play, args=(board.master, first, fs, speed))
        writer.start()  # the core reads while the board writes, as the daemon does
        r.run(lambda: r.seconds() >= 19, timeout_s=15)
        writer.join()
        hr_before = [v.hr_bpm for v in r.vitals[-5:]]
        t_unplug = time.monotonic()
        n_before = len(r.messages)
        board.unplug()
        # the port stays away for 3 s: the reader reports lost samples as wall time passes
        r.run(lambda: time.monotonic() - t_unplug >= 3.0, timeout_s=5)
        during = r.messages[n_before:]
        status_lost = r.source.status()
        board2 = PtyBoard(link)  # a new pty at the same path (the board plugged back in)
        n_replug = len(r.messages)
        writer = threading.Thread(target=play, args=(board2.master, second, fs, speed))
        writer.start()
        r.run(lambda: r.seconds() >= 20 + 3 + 20, timeout_s=20)
        writer.join()
        after = r.messages[n_replug:]
        status = r.source.status()
    os.close(board2.master)
    os.close(board2.slave)
    assert all(h is not None for h in hr_before)
    # lost samples cover the outage in steps of at most 0.5 s
    assert r.lost_frames and max(r.lost_frames) <= int(0.5 * fs)
    assert status_lost["state"] == "lost" and status_lost["lost_samples"] >= int(2.5 * fs)
    vit_during = [m for m in during if m.kind == "vitals"]
    assert len(vit_during) >= 2, "the clock must keep going while the port is away"
    assert vit_during[-1].t_s - vit_during[0].t_s >= 2.0
    lost = _alarm_events(during, "signal_lost")
    assert any(e.state == "active" for e in lost), [
        m.to_record() for m in during if m.kind == "alarm"
    ]
    # raised within 2 s of signal time of the unplug (plus the second it completes in)
    onset = min(e.onset_t_s for e in lost if e.state == "active")
    assert onset - vit_during[0].t_s <= 3.0
    # reading resumed: counters, state, vitals back, alarm cleared
    assert status["state"] == "reading" and status["reconnects"] == 1 and status["outages"] == 1
    assert any(v.hr_bpm is not None for v in after if v.kind == "vitals")
    assert any(e.state == "cleared" for e in _alarm_events(after, "signal_lost"))
    # one log line when the outage started and one when it ended, not one per retry
    msgs = [rec.getMessage() for rec in caplog.records]
    assert sum("port lost" in m or "cannot open" in m for m in msgs) == 1, msgs
    assert sum("port back" in m for m in msgs) == 1, msgs
    assert r.source.open_attempts >= 4  # it did retry several times


# -- the real daemon, end to end ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A real Mosquitto on a free loopback port."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (apt-get install -y mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self._add(m.topic, json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _add(self, topic: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    def of(self, leaf: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p in self.messages if t.endswith("/" + leaf)]

    def wait(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_replay(start_s: float, speed: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device",
            "replay",
            str(RECORD),
            "--to",
            "pty",
            "--format",
            "openview",
            "--speed",
            str(speed),
            "--start",
            str(start_s),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def repoint(link: Path, target: str) -> None:
    tmp = link.with_suffix(".new")
    tmp.symlink_to(target)
    tmp.replace(link)  # atomic, like udev updating its symlink


@pytest.mark.slow
@pytest.mark.e2e
@needs_bidmc
def test_daemon_reads_pty_publishes_reference_hr_and_signal_lost(
    tmp_path: Path, broker: int
) -> None:
    """bedside replay -> pty -> `python -m device run --serial` -> Mosquitto -> subscriber;
    the pty is closed (replay killed) and a new one appears at the same path."""
    speed = 4.0
    link = tmp_path / "ttyBED"
    sub = Subscriber(broker, "bedside/e2e/#")
    replay, pty = start_replay(0.0, speed)
    repoint(link, pty)
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device",
            "run",
            "--serial",
            str(link),
            "--format",
            "openview",
            "--fs",
            "125",
            "--bed",
            "e2e",
            "--broker",
            f"mqtt://127.0.0.1:{broker}",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    replay2 = None
    try:
        assert sub.wait(lambda: any(v["t_s"] >= 30 for v in sub.of("vitals")), 30), daemon.stderr
        ref = load_bidmc_reference(RECORD, duration_s=120)
        vit = [v for v in sub.of("vitals") if 12 <= v["t_s"] <= 30]
        errs = [
            abs(v["hr_bpm"] - ref.hr_bpm[int(v["t_s"])]) for v in vit if v["hr_bpm"] is not None
        ]
        assert len(errs) >= len(vit) - 2 and float(np.mean(errs)) < 4.0, errs
        # unplug: the replay dies, its pty closes, the udev-like symlink goes away
        replay.terminate()
        replay.wait(10)
        link.unlink()
        t_before = max(v["t_s"] for v in sub.of("vitals"))

        def lost(state: str) -> list[dict[str, Any]]:
            return [
                a
                for a in sub.of("alarms")
                if a["condition"] == "signal_lost" and a["state"] == state
            ]

        assert sub.wait(lambda: bool(lost("active")), 10), [a for a in sub.of("alarms")]
        assert min(a["onset_t_s"] for a in lost("active")) - t_before <= 4.0
        # plugged back: a new pty at the same path
        replay2, pty2 = start_replay(40.0, speed)
        repoint(link, pty2)
        assert sub.wait(lambda: bool(lost("cleared")), 20), [a for a in sub.of("alarms")]
        n = len(sub.of("vitals"))
        assert sub.wait(lambda: any(v["hr_bpm"] is not None for v in sub.of("vitals")[n:]), 20)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=20)
        for p in (replay, replay2):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
        sub.close()
    assert daemon.returncode == 0, err[-2000:]
    assert sum("port lost" in line for line in err.splitlines()) == 1, err[-3000:]
    assert sum("port back" in line for line in err.splitlines()) == 1, err[-3000:]


def test_socket_url_is_read_like_a_port() -> None:
    """``serial_for_url`` also opens ``socket://`` (a board behind a serial-to-network
    bridge): the same parser and counters, no BIDMC data needed."""
    n = 500
    rng = np.random.default_rng(3)
    data = encode_packets(HEALTHYPI5, {"ecg": rng.integers(-1000, 1000, n)})
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    conns: list[socket.socket] = []
    opened = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conns.append(conn)
        opened.wait(10)  # pyserial drains what is already there when it opens the URL
        conn.sendall(b"\x01\x02garbage" + data)

    t = threading.Thread(target=serve)
    t.start()
    cfg = SerialConfig(url=f"socket://127.0.0.1:{port}", format="openview", fs_hz=125.0)
    with Reader(cfg) as r:
        opened.set()
        r.run(lambda: r.source.samples >= n, timeout_s=10)
        status = r.source.status()
    t.join(5)
    for c in [*conns, server]:
        c.close()
    assert status["samples"] == n and status["good_frames"] == n
    assert status["resyncs"] == 1 and status["discarded_bytes"] == 9
    assert status["board"]["board_hr"] == 0.0  # fields without a role are shown, not fed
