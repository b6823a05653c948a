"""The serial source's reads end where seconds of signal end, so the sample that completes a
second reaches the core as soon as it has arrived (not up to a read interval later): on a
real pseudo-terminal, with a real HealthyPi packet stream."""

from __future__ import annotations

import os
import threading
import time
import tty
from pathlib import Path

from device.recording import read_csv
from device.sources.base import FrameQueue
from device.sources.formats.openview import HEALTHYPI5, counts_for_signals, encode_packets
from device.sources.serial import SerialConfig, SerialSource

EXCERPT = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"


def test_frames_end_at_the_ends_of_seconds() -> None:
    rec = read_csv(EXCERPT)
    n = int(4 * rec.fs_hz)
    counts = counts_for_signals(HEALTHYPI5, {r: x[:n] * 1e5 for r, x in rec.role_signals().items()})
    stream = encode_packets(HEALTHYPI5, counts)
    master, slave = os.openpty()
    tty.setraw(slave)
    source = SerialSource(SerialConfig(url=os.ttyname(slave), format="openview", fs_hz=rec.fs_hz))
    queue, stop = FrameQueue(), threading.Event()
    source.start(queue, stop)
    try:
        deadline = time.monotonic() + 10
        while source.state != "reading" and time.monotonic() < deadline:
            time.sleep(0.01)  # pyserial flushes the input when it opens the port
        # the board writes 4 s of packets at once, from a thread (the pty buffer is small)
        writer = threading.Thread(target=os.write, args=(master, stream), daemon=True)
        writer.start()
        ends, total = [], 0
        deadline = time.monotonic() + 20
        while total < n and time.monotonic() < deadline:
            frame = queue.get(timeout=0.5)
            if frame is not None and frame.samples:
                total += len(next(iter(frame.samples.values())))
                ends.append(total)
    finally:
        stop.set()
        source.join(5)
        os.close(master)
        os.close(slave)
    assert total == n
    # the first read asks for as much as is there; from then on each read stops where the
    # current second of signal ends (it may stop earlier, never later)
    fs = int(rec.fs_hz)
    assert {fs * k for k in range(2, 5)} <= set(ends), ends
