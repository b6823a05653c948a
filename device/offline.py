"""Offline processing: a whole recording through the same core the daemon runs."""

from __future__ import annotations

from collections.abc import Iterator

from device.config import Config
from device.monitor import Message, Monitor
from device.recording import Recording


def process_recording(
    rec: Recording, cfg: Config, chunk: int = 1000, beats: bool = False
) -> Iterator[Message]:
    """Feed ``rec`` in chunks of ``chunk`` samples; yield vitals and alarm events in order
    (and each beat when ``beats``)."""
    signals = rec.role_signals()
    monitor = Monitor.for_inputs(dict.fromkeys(signals, rec.fs_hz), cfg)
    monitor.emit_beats = beats
    for a in range(0, rec.n_samples, chunk):
        for role, x in signals.items():
            monitor.feed(role, x[a : a + chunk])
        yield from monitor.step()
