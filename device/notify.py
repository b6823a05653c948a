"""Telling systemd how the daemon is doing: ``READY``, ``WATCHDOG``, ``STATUS``, ``STOPPING``.

The protocol (sd_notify(3)) is one datagram per message on the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace), with newline-separated
``KEY=VALUE`` fields. Written with the standard library; outside systemd (no ``NOTIFY_SOCKET``)
every call is a no-op, so ``bedside run`` in a terminal behaves as before.

The watchdog is what makes this more than a formality. ``Type=notify`` with ``WatchdogSec=``
gives the daemon ``$WATCHDOG_USEC``; systemd restarts the service if ``WATCHDOG=1`` does not
arrive within that time. A thread that merely pinged on a timer would keep pinging while the
core loop is deadlocked, so pings are sent (every half of ``$WATCHDOG_USEC``) only while every
*stage* has shown progress recently: each stage calls ``beat`` from its own thread whenever it
has done its work, and a stage silent for longer than its limit withholds the pings (logged
once, naming the stage). The stages and where they beat:

==============  ===========================================================  ===============
stage           beats from                                                   silent at most
==============  ===========================================================  ===============
each source     its thread, once round its loop (a frame read, a reopen      ``STAGE_S``
                tried); the name is the source's (``serial:/dev/ttyACM0``)
``core``        the daemon's main loop, once per iteration (every <= 0.5 s)  ``STAGE_S``
``sink``        paho's network thread, in each callback (a message written,  ``SINK_S``
                a connection made, refused or lost); while the broker is
                away paho retries with a backoff of up to 30 s, hence the
                longer limit
==============  ===========================================================  ===============

API (the daemon's wiring, all of it; every call is thread-safe)::

    sd = Supervisor.from_environ()           # Daemon.__init__
    source.heartbeat = sd.watch(source.name, done=lambda: source.finished)  # before it starts
    publisher.heartbeat = sd.watch("sink", SINK_S)
    beat_core = sd.watch("core")
    sd.start()                               # starts the watchdog thread (if $WATCHDOG_USEC)
    beat_core()                              # each time round the main loop
    sd.ready()                               # once: sources started, broker connection tried
    sd.status(summary_line(...))             # whenever the summary may have changed
    sd.stopping()                            # first thing on the way out

``READY=1`` is sent once the sources are started and the first broker connection has been
tried (accepted or not: a missing broker is retried in the background and is no reason to
fail the start); the daemon gives the attempt ``READY_WAIT_S`` at most. ``STATUS=`` carries
``summary_line``: bed, HR, RR, active alarms, broker state and the outbox depth (the durable
store of alarms not yet acknowledged by the broker), e.g.
``bed icu-3: HR 72 bpm, RR 14/min, alarms: none, broker connected, outbox 0``. It is sent when
it changes, at most once a second, so ``systemctl status bedside`` shows the bed at a glance.

Test hook (for tests/test_notify.py only): ``BEDSIDE_TEST_HANG_STAGE=STAGE:SECONDS`` makes
``beat`` for that stage (its name, or the part before ``:`` in a source's name, e.g.
``replay``) block for ever once SECONDS have passed since the supervisor was made. ``beat``
runs in the stage's own thread, so the stage really hangs, and the test sees the pings stop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("bedside.notify")

#: a source or the core silent this long is stuck. The core loop turns every <= 0.5 s and the
#: sources every <= 0.5 s (the serial source reports lost samples in 0.5 s steps while a board
#: is away; the audio source retries a missing device every second), so 10 s is far beyond
#: normal; a stuck stage is noticed within STAGE_S + WatchdogSec
STAGE_S = 10.0
#: the sink may be silent for a paho reconnect backoff (up to 30 s) plus a connect timeout and
#: a slow name lookup while the broker is away
SINK_S = 90.0
#: READY=1 waits at most this long for the first broker connection attempt to end
READY_WAIT_S = 15.0
#: STATUS= is sent at most this often (systemd keeps only the latest)
STATUS_MIN_INTERVAL_S = 1.0
#: the test hook's environment variable
HANG_ENV = "BEDSIDE_TEST_HANG_STAGE"


class Notifier:
    """Sends sd_notify datagrams to ``socket_path``; ``None`` makes every send a no-op."""

    def __init__(self, socket_path: str | None) -> None:
        self.address: str | bytes | None = None
        if socket_path:
            if socket_path.startswith("@"):
                self.address = b"\0" + socket_path[1:].encode()
            elif socket_path.startswith("/"):
                self.address = socket_path
            else:
                log.warning("NOTIFY_SOCKET=%r is not a path or @abstract; ignored", socket_path)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=VALUE`` lines; True when it was sent."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    self._sock = socket.socket(socket.AF_UNIX, kind)
                self._sock.sendto(data, self.address)
            except OSError as e:
                if not self._failed:
                    log.warning("cannot notify systemd on %r: %s", self.address, e)
                    self._failed = True
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) advises; None when the
    watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


class Heartbeats:
    """When each stage last made progress; which ones have been silent too long. Pure logic:
    the clock is injected, so the rules are tested without waiting."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._limit: dict[str, float] = {}
        self._done: dict[str, Callable[[], bool]] = {}

    def add(self, stage: str, limit_s: float, done: Callable[[], bool] | None = None) -> None:
        """Watch ``stage``; it counts as fresh from now. A stage whose ``done()`` is true (a
        replay that has played its recording) has finished, not hung, and is never stale."""
        with self._lock:
            self._last[stage] = self._clock()
            self._limit[stage] = limit_s
            if done is not None:
                self._done[stage] = done

    def beat(self, stage: str) -> None:
        now = self._clock()
        with self._lock:
            if stage in self._last:
                self._last[stage] = now

    def stale(self) -> list[tuple[str, float]]:
        """(stage, seconds silent) of every stage silent for longer than its limit."""
        now = self._clock()
        with self._lock:
            silent = [
                (stage, now - last)
                for stage, last in self._last.items()
                if now - last > self._limit[stage]
            ]
            done = dict(self._done)
        return [(stage, t) for stage, t in silent if not (stage in done and done[stage]())]

    @property
    def stages(self) -> list[str]:
        with self._lock:
            return list(self._last)


class Supervisor:
    """The daemon's side of the conversation with systemd (see the module docstring)."""

    def __init__(
        self,
        notifier: Notifier,
        watchdog_s: float | None = None,
        hang: tuple[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.heartbeats = Heartbeats(clock)
        self._clock = clock
        self._made = clock()
        self._hang = hang
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._stopping = False
        self._status = ""
        self._status_sent = ""
        self._status_at = float("-inf")
        self._withholding: tuple[str, ...] = ()
        self.pings = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Supervisor:
        env = os.environ if environ is None else environ
        return cls(
            Notifier(env.get("NOTIFY_SOCKET")),
            watchdog_interval_s(env),
            _parse_hang(env.get(HANG_ENV, "")),
        )

    # -- stages ------------------------------------------------------------------------------
    def watch(
        self, stage: str, limit_s: float = STAGE_S, done: Callable[[], bool] | None = None
    ) -> Callable[[], None]:
        """Watch ``stage`` (fresh from now) and return its beat, to be called from its thread;
        ``done()`` true means the stage has finished its work (never stale)."""
        self.heartbeats.add(stage, limit_s, done)

        def beat_stage() -> None:
            self.beat(stage)

        return beat_stage

    def beat(self, stage: str) -> None:
        """``stage`` made progress (call from the stage's own thread)."""
        if self._hang is not None and self._hangs(stage):
            log.warning("%s: hanging stage %s for ever (test hook)", HANG_ENV, stage)
            threading.Event().wait()
        self.heartbeats.beat(stage)

    def _hangs(self, stage: str) -> bool:
        assert self._hang is not None
        name, after_s = self._hang
        return name in (stage, stage.partition(":")[0]) and self._clock() - self._made >= after_s

    # -- messages ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watchdog thread (only when systemd asked for pings)."""
        if self.watchdog_s is None or not self.notifier.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def ready(self) -> None:
        """``READY=1`` (once), with the current status line."""
        with self._lock:
            if self._ready:
                return
            self._ready = True
            fields = ["READY=1"]
            if self._status:
                fields.append(f"STATUS={self._status}")
                self._status_sent, self._status_at = self._status, self._clock()
        self.notifier.send(*fields)
        if self.notifier.enabled:
            log.info("told systemd: ready")

    @property
    def is_ready(self) -> bool:
        return self._ready

    def status(self, line: str) -> None:
        """New one-line status; sent now if it changed and the last one is a second old, else
        by the watchdog thread (or the next call)."""
        line = " ".join(line.split())
        with self._lock:
            self._status = line
            due = (
                line != self._status_sent
                and self._clock() - self._status_at >= STATUS_MIN_INTERVAL_S
            )
            if due:
                self._status_sent, self._status_at = line, self._clock()
        if due:
            self.notifier.send(f"STATUS={line}")

    def stopping(self) -> None:
        """``STOPPING=1`` (once) and the end of the watchdog pings."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._stop.set()
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    # -- the watchdog thread -----------------------------------------------------------------
    def check(self) -> list[str]:
        """One watchdog round: ``WATCHDOG=1`` when no stage is stale (plus a pending status),
        else nothing; returns the names of the stale stages."""
        stale = self.heartbeats.stale()
        names = tuple(s for s, _ in stale)
        fields: list[str] = []
        if not stale:
            fields.append("WATCHDOG=1")
            if self._withholding:
                log.warning("every stage makes progress again; watchdog pings resumed")
        elif names != self._withholding:
            log.error(
                "no progress from %s; watchdog pings withheld so that systemd restarts the service",
                ", ".join(f"{s} for {t:.0f} s" for s, t in stale),
            )
        self._withholding = names
        with self._lock:
            if self._status != self._status_sent:
                fields.append(f"STATUS={self._status}")
                self._status_sent, self._status_at = self._status, self._clock()
        if fields:
            self.notifier.send(*fields)
            if not stale:
                self.pings += 1
        return list(names)

    def _run(self) -> None:
        assert self.watchdog_s is not None
        while not self._stop.wait(self.watchdog_s):
            self.check()


def _parse_hang(value: str) -> tuple[str, float] | None:
    if not value:
        return None
    stage, _, after = value.rpartition(":")
    try:
        return (stage, float(after)) if stage else (value, 0.0)
    except ValueError:
        return (value, 0.0)


def summary_line(bed: str, vitals: Mapping[str, Any] | None, status: Mapping[str, Any]) -> str:
    """``bed icu-3: HR 72 bpm, RR 14/min, alarms: none, broker connected, outbox 0``.

    ``vitals`` is the last vitals payload (or None before the first), ``status`` the daemon's
    retained-status body (``alarms`` list, ``mqtt`` counters). Nothing beyond the bed id
    identifies the patient.
    """

    def num(key: str) -> str:
        v = (vitals or {}).get(key)
        return "--" if v is None else f"{float(v):.0f}"

    alarms = status.get("alarms") or []
    if alarms:
        shown = [f"{a.get('condition')}({a.get('priority')},{a.get('state')})" for a in alarms[:3]]
        more = f" +{len(alarms) - 3}" if len(alarms) > 3 else ""
        alarm_text = f"{len(alarms)} {' '.join(shown)}{more}"
    else:
        alarm_text = "none"
    mqtt = status.get("mqtt") or {}
    broker = "connected" if mqtt.get("connected") else "disconnected"
    outbox = mqtt.get("outbox_pending", 0)
    return (
        f"bed {bed}: HR {num('hr_bpm')} bpm, RR {num('rr_bpm')}/min, alarms: {alarm_text}, "
        f"broker {broker}, outbox {outbox}"
    )
