"""Replay: a recording played as if it were a live sensor, in real time times a speed factor.

Every role of the recording is delivered in lock-step frames of the same span of signal time,
paced against ``time.monotonic`` so that the signal clock tracks the wall clock (times
``speed``). At high speeds frames grow instead of the thread sleeping for less than a few
milliseconds at a time, which the OS scheduler cannot honour anyway.

Unlike a hardware reader a replay can wait: when the core falls behind (the queue fills up), it
holds back instead of letting frames be dropped, so a replay delivers every sample exactly once.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from device.config import Config, ReplayConfig
from device.errors import UserError
from device.recording import Recording
from device.sources.base import Frame, FrameQueue, ThreadedSource

#: signal time per frame at real-time speed. Frame ends fall on whole multiples of it (at
#: 125 Hz: 31 or 32 samples), so a frame ends exactly where a second of signal ends and the
#: sample that completes a second is released on time: the vitals of that second are not
#: delayed by the framing, whatever its length. Four frames a second rather than ten: each
#: frame wakes two threads, and a wake-up costs 60-100 us of CPU on a virtual machine
#: (measured here; bench/daemon_replay.py), a third of the daemon's whole cost at 0.1 s.
FRAME_S = 0.25
#: shortest wall-clock interval between frames; below ~5 ms sleeps are dominated by scheduler
#: jitter, so faster replays deliver longer frames instead
MIN_FRAME_WALL_S = 0.005
#: signal waiting in the queue beyond which the replay waits for the core to catch up (well
#: below the queue's bound, so a replay is never dropped)
BACKLOG_S = 2.0
#: longest frame: a fast replay sends more frames, not longer ones than this
MAX_FRAME_S = 1.0


class ReplaySource(ThreadedSource):
    """Plays ``rec`` at ``speed`` x real time; ``loop`` starts again at the end, forever."""

    #: the signal clock is the recording's, not the wall clock: the daemon never feeds gaps
    #: for a replay, and alarm ids are deterministic (epoch 0), as in ``bedside process``
    live = False

    def __init__(self, rec: Recording, speed: float = 1.0, loop: bool = False) -> None:
        if not (speed > 0 and np.isfinite(speed)):
            raise UserError(
                f"replay speed {speed!r} is not a positive number",
                "give --speed X with X > 0, e.g. 10",
            )
        if rec.n_samples == 0:
            raise UserError(
                f"{rec.path}: the recording holds no samples", "give a recording with data"
            )
        self.rec = rec
        self.speed = float(speed)
        self.loop = loop
        self.name = f"replay:{rec.path}"
        self.roles: dict[str, float] = dict.fromkeys(rec.roles, rec.fs_hz)
        self._signals = rec.role_signals()
        #: samples per frame (fractional: frame ends are rounded down from multiples of it)
        self._span = min(MAX_FRAME_S, max(FRAME_S, MIN_FRAME_WALL_S * self.speed)) * rec.fs_hz
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._frames = 0
        self._samples = 0  # per role, since start (all roles advance together)
        self._loops = 0
        self._waits = 0  # times the replay held back because the core was behind

    @classmethod
    def from_config(cls, section: ReplayConfig, cfg: Config) -> ReplaySource:
        """The recording ``[replay] path`` names, read with ``[recording]``'s column roles."""
        from device.recording import read_recording

        rec = read_recording(
            section.path, fs_hz=cfg.recording.fs_hz, role_map=cfg.recording.roles or None
        )
        if section.use:
            rec = rec.restricted(section.use)
        return cls(rec, speed=section.speed, loop=section.loop)

    # -- Source protocol -------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            pos = (self._samples % self.rec.n_samples) / self.rec.fs_hz
            return {
                "type": "replay",
                "path": self.rec.path,
                "speed": self.speed,
                "loop": self.loop,
                "frames": self._frames,
                "signal_s": round(self._samples / self.rec.fs_hz, 3),
                "position_s": round(pos if not self.finished else self.rec.duration_s, 3),
                "loops": self._loops,
                "backlog_waits": self._waits,
                "finished": self.finished,
            }

    # -- thread ----------------------------------------------------------------------------
    def _run(self, out: FrameQueue, stop: threading.Event) -> None:
        n, fs = self.rec.n_samples, self.rec.fs_hz
        t0 = time.monotonic()
        pos = 0  # position in the recording
        delivered = 0  # samples per role since start, across loops: the signal clock
        frame_no = 0  # frames since start, across loops
        while not stop.is_set():
            self._beat()
            if pos >= n:
                if not self.loop:
                    break
                pos = 0
                with self._lock:
                    self._loops += 1
                # the start of the recording does not follow on from its end
                out.put(Frame(source=self.name, restart=True, wall_s=time.monotonic()))
            while out.queued_s(self.name) > BACKLOG_S and not stop.is_set():
                self._beat()  # waiting for the core is this thread's work, not a hang
                with self._lock:
                    self._waits += 1
                stop.wait(MIN_FRAME_WALL_S)
            frame_no += 1
            # the frame ends at the next multiple of the span (exact for spans that divide a
            # second), never empty; a loop's last frame stops at the recording's end
            end = int(math.floor(frame_no * self._span + 1e-9))
            b = min(n, pos + max(1, end - delivered))
            # a frame is released once the wall clock has reached the signal time of its end
            due = t0 + (delivered + (b - pos)) / fs / self.speed
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            frame = Frame(
                source=self.name,
                samples={r: x[pos:b] for r, x in self._signals.items()},
                wall_s=time.monotonic(),
            )
            out.put(frame)
            with self._lock:
                self._frames += 1
                self._samples += b - pos
            delivered += b - pos
            pos = b
        if pos >= n and not self.loop:
            self._finished.set()
