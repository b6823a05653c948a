"""Sources: the thin I/O edge that turns a sensor (serial board, audio input, replayed file)
into frames for the core.

Each source runs in its own thread and hands ``Frame``s to the core through a bounded
``FrameQueue`` that counts what it had to drop (it never blocks a hardware reader). A source
announces the roles it delivers and their sample rates up front (``roles``); the daemon
builds the core from that. Sources are registered by a type key (``serial``, ``audio``,
``replay``) in ``SOURCES``; see ``device.sources.build_sources``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
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
    ``dropped``: the ``n_lost`` samples arrived but the queue dropped them (the core fell
    behind), as opposed to samples the source itself could not deliver.
    """

    source: str
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    n_lost: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0  # time.monotonic() when the frame was read
    restart: bool = False
    dropped: bool = False


#: Most signal time one source may have waiting for the core. A core that falls further
#: behind (a loaded CPU, a slow delegate) loses the oldest samples rather than delaying every
#: alarm by more than this; what it loses becomes a gap of the same length, never squashed time.
MAX_QUEUED_S = 5.0
#: A source whose rates are unknown to the queue is bounded by frame count instead.
MAX_FRAMES_UNKNOWN_RATE = 2000


class FrameQueue:
    """The bounded queue between source threads and the core.

    Bounded by signal time: each source may have at most ``max_s`` seconds of signal waiting.
    Past that, the source's oldest waiting frame is dropped, never the newest (a hardware
    reader must not block), and what it carried becomes a *gap* of exactly its length on each
    of its roles: the next frame of that source the core takes is a lost-samples frame
    (``Frame.n_lost``), so the core sees missing samples and never joins the samples on either
    side. Drops are counted per source, in frames and seconds of signal.
    """

    def __init__(self, max_s: float = MAX_QUEUED_S) -> None:
        self.max_s = max_s
        self._frames: deque[tuple[Frame, float]] = deque()
        self._rates: dict[str, dict[str, float]] = {}
        self._queued_s: dict[str, float] = {}
        self._lost: dict[str, dict[str, int]] = {}  # dropped samples not yet given to the core
        self._cond = threading.Condition()
        self.dropped_frames = 0
        self.dropped_s: dict[str, float] = {}

    def register(self, source: str, roles: Mapping[str, float]) -> None:
        """The sample rate of each role ``source`` delivers (what a frame's length means)."""
        with self._cond:
            self._rates[source] = dict(roles)

    def _span_s(self, frame: Frame) -> float:
        rates = self._rates.get(frame.source, {})
        spans = [len(x) / rates[r] for r, x in frame.samples.items() if r in rates]
        spans += [n / rates[r] for r, n in frame.n_lost.items() if r in rates]
        return max(spans, default=0.0)

    def put(self, frame: Frame) -> None:
        with self._cond:
            span = self._span_s(frame)
            self._frames.append((frame, span))
            src = frame.source
            self._queued_s[src] = self._queued_s.get(src, 0.0) + span
            if src in self._rates:
                # the frame just read is never dropped, however long: only the backlog is
                while self._queued_s[src] > self.max_s and self._drop_oldest(src, frame):
                    pass
            elif len(self._frames) > MAX_FRAMES_UNKNOWN_RATE:
                self._frames.popleft()
                self.dropped_frames += 1
            self._cond.notify()

    def _drop_oldest(self, source: str, newest: Frame) -> bool:
        """Turn the oldest waiting frame of ``source`` (not ``newest``) into lost samples;
        False if there is none."""
        for i, (frame, span) in enumerate(self._frames):
            if frame is newest:
                return False
            if frame.source == source and span > 0 and not frame.restart:
                del self._frames[i]
                self._queued_s[source] -= span
                lost = self._lost.setdefault(source, {})
                for role, x in frame.samples.items():
                    lost[role] = lost.get(role, 0) + len(x)
                for role, n in frame.n_lost.items():
                    lost[role] = lost.get(role, 0) + n
                self.dropped_frames += 1
                self.dropped_s[source] = self.dropped_s.get(source, 0.0) + span
                return True
        return False

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None after ``timeout`` s; a source's dropped samples come back
        first, as one lost-samples frame, before any later frame of that source."""
        with self._cond:
            if not self._lost and not self._frames:
                self._cond.wait(timeout)
            if self._lost:
                # at most one second of each role at a time, so the core never allocates one
                # huge gap however far behind it fell
                source, lost = next(iter(self._lost.items()))
                rates = self._rates.get(source, {})
                part = {r: min(n, max(1, int(rates.get(r, n)))) for r, n in lost.items()}
                for r, n in part.items():
                    lost[r] -= n
                    if lost[r] <= 0:
                        del lost[r]
                if not lost:
                    del self._lost[source]
                return Frame(source, {}, part, time.monotonic(), dropped=True)
            if not self._frames:
                return None
            frame, span = self._frames.popleft()
            self._queued_s[frame.source] -= span
            return frame

    def qsize(self) -> int:
        with self._cond:
            return len(self._frames) + len(self._lost)

    def queued_s(self, source: str) -> float:
        """Seconds of signal from ``source`` waiting for the core."""
        with self._cond:
            return self._queued_s.get(source, 0.0)

    def status(self) -> dict[str, object]:
        with self._cond:
            return {
                "depth_frames": len(self._frames),
                "depth_s": round(sum(self._queued_s.values()), 3),
                "dropped_frames": self.dropped_frames,
                "dropped_s": {k: round(v, 3) for k, v in self.dropped_s.items()},
            }


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
        out.register(self.name, self.roles)
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
