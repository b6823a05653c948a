"""Sources: the thin I/O edge that turns a sensor (serial board, audio input, replayed file)
into frames for the core.

Each source runs in its own thread and hands ``Frame``s to the core through a bounded
``FrameQueue`` that counts what it had to drop (it never blocks a hardware reader). A source
announces the roles it delivers and their sample rates up front (``roles``); the daemon
builds the core from that. Sources are registered by a type key (``serial``, ``audio``,
``replay``) in ``SOURCES``; see ``device.sources.build_sources``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """Samples of one or more roles from one source, all covering the same span of time.

    ``samples[role]`` holds consecutive samples at that role's rate. ``lost`` frames carry
    no data: ``n_lost[role]`` samples of a role that the source could not deliver (a port
    gone, a device unplugged); the core sees them as gaps and the clock keeps going.
    ``restart``: the source starts over from here (a looping replay back at its beginning):
    what follows is not a continuation of what came before, so the core starts afresh.
    """

    source: str
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    n_lost: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0  # time.monotonic() when the frame was read
    restart: bool = False


class FrameQueue:
    """A bounded queue between a source thread and the core; drops (and counts) the oldest
    frames when the core falls behind rather than blocking the reader."""

    def __init__(self, maxsize: int = 2000) -> None:
        self._q: queue.Queue[Frame] = queue.Queue(maxsize)
        self.dropped_frames = 0
        self._lock = threading.Lock()

    def put(self, frame: Frame) -> None:
        while True:
            try:
                self._q.put_nowait(frame)
                return
            except queue.Full:
                with self._lock:
                    try:
                        self._q.get_nowait()
                        self.dropped_frames += 1
                    except queue.Empty:
                        pass

    def get(self, timeout: float | None = None) -> Frame | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._q.qsize()


class Source(Protocol):
    """What the daemon needs of a source."""

    name: str  # e.g. "serial:/dev/ttyUSB0"
    roles: dict[str, float]  # role -> sample rate (Hz) it delivers

    def start(self, out: FrameQueue, stop: threading.Event) -> None:
        """Start the source's thread; it puts frames into ``out`` until ``stop`` is set."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end after ``stop`` was set."""

    def status(self) -> dict[str, Any]:
        """Counters for the retained status message (bytes, frames, errors, reconnects...)."""

    @property
    def finished(self) -> bool:
        """True once a finite source (a replay without --loop) has delivered everything."""


class ThreadedSource:
    """Base of the sources: one daemon thread named after the source runs ``_run`` until the
    stop event is set. Subclasses set ``name`` and ``roles`` and implement ``_run`` and
    ``status``; a finite source overrides ``finished``."""

    name: str
    roles: dict[str, float]
    _thread: threading.Thread | None = None
    #: called from the source's thread each time round its loop (a frame read, a reopen tried):
    #: the daemon's watchdog counts it as progress (device.notify); None: nobody listens
    heartbeat: Callable[[], None] | None = None

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    def start(self, out: FrameQueue, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(out, stop), name=self.name, daemon=True
        )
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def finished(self) -> bool:
        return False

    def _run(self, out: FrameQueue, stop: threading.Event) -> None:
        raise NotImplementedError
