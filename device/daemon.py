"""The daemon: the imperative shell around the monitor.

Threads and who owns what::

    source threads --Frame--> FrameQueue --> main loop (owns the Monitor) --> Publisher
                                                ^                              (paho thread)
                                                +---- commands (cmd/ack) <---------+

- One thread per source puts frames on one bounded queue that counts what it drops.
- The main loop is the only user of the Monitor: it feeds samples and gaps, steps the core once
  per frame, publishes each message on the topic its ``kind`` names, and applies commands that
  arrive from MQTT on their own queue (an acknowledge never travels back through estimators).
- For live sources the main loop also feeds *gaps* when a source has delivered nothing for a
  while, so the signal clock keeps going with the wall clock and the core raises
  ``signal_lost``; a replay is never gapped (its clock is the recording's), nor is a source
  that reports its own lost samples (``reports_gaps = True``, or once it has sent a frame with
  ``n_lost``), so no stretch of time is counted twice.
- One stop event (set by SIGTERM or SIGINT in ``bedside run``): sources are joined in reverse
  start order, what they delivered is processed and published, then the retained ``offline``
  status is published and the connection closed.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from typing import Any

from device.config import Config
from device.messages import SCHEMA_VERSION, iso_utc
from device.monitor import Monitor
from device.notify import READY_WAIT_S, SINK_S, Supervisor, summary_line
from device.publisher import Publisher
from device.sources.base import Frame, FrameQueue, Source, ThreadedSource

log = logging.getLogger("bedside.daemon")

#: a live source silent for this long is treated as delivering gaps: well inside the 2 s after
#: which the alarm engine must raise signal_lost, and longer than the 0.1-0.2 s a USB serial
#: adapter or an audio driver may hold data back in normal operation
SILENCE_GAP_S = 0.5
#: until a source's rhythm is known (two frames), a longer silence is tolerated: opening a
#: device or the first large audio block may take up to a second
SILENCE_UNKNOWN_RHYTHM_S = 1.0
#: the retained status is republished this often (and whenever the alarms change) so that a
#: nurses' station sees the counters move and knows the status is current
STATUS_PERIOD_S = 10.0
#: how long the main loop waits for a frame before looking at commands and silence again
POLL_S = 0.1


class _SourceClock:
    """Wall-clock bookkeeping of one live source, for feeding gaps while it is silent."""

    def __init__(self, source: Source, now: float) -> None:
        self.roles = dict(source.roles)
        self.last_frame = now  # monotonic time of the last frame
        self.gapped_until = now  # wall time up to which gaps have been fed
        self.debt: dict[str, float] = dict.fromkeys(self.roles, 0.0)  # fractional samples owed
        self.gap_samples: dict[str, int] = dict.fromkeys(self.roles, 0)
        self.read_at = 0.0  # Frame.wall_s of the last frame (when the source read it)
        self.interval_s = 0.0  # typical time between the source's frames (moving average)

    @property
    def silence_s(self) -> float:
        """Silence longer than this is a gap: SILENCE_GAP_S, or twice the source's own frame
        interval for a source that delivers large blocks (audio read 1024 frames at a time at
        2 kHz arrives every 0.5 s) so that its normal rhythm is never mistaken for a gap."""
        if self.interval_s == 0.0:
            return SILENCE_UNKNOWN_RHYTHM_S
        return max(SILENCE_GAP_S, 2.0 * self.interval_s)


def _finished(source: Source) -> bool:
    return source.finished


class Daemon:
    """Runs ``sources`` through a Monitor and publishes what it says, until stopped or done."""

    def __init__(
        self,
        cfg: Config,
        sources: list[Source],
        publisher: Publisher,
        stop: threading.Event | None = None,
        bed: str | None = None,
        status_period_s: float = STATUS_PERIOD_S,
    ) -> None:
        if not sources:
            raise ValueError("the daemon needs at least one source")
        self.cfg = cfg
        self.sources = sources
        self.publisher = publisher
        self.stop = stop or threading.Event()
        self.bed = bed or cfg.bed.id
        self.status_period_s = status_period_s
        #: a replay's clock is its recording's; every other source is live and wall-clocked
        self.live = any(getattr(s, "live", True) for s in sources)
        self.queue = FrameQueue()
        fs: dict[str, float] = {}
        for s in sources:
            fs.update(s.roles)
        self.started_wall = time.time()
        self.monitor = Monitor.for_inputs(
            fs, cfg, bed=self.bed, epoch_s=self.started_wall if self.live else 0.0
        )
        self.counters = {
            "frames": 0,
            "vitals": 0,
            "alarm_events": 0,
            "commands_applied": 0,
            "commands_rejected": 0,
        }
        self._clocks: dict[str, _SourceClock] = {}
        self._last_status = 0.0
        self._connects_seen = 0
        #: sd_notify: READY, watchdog pings while every stage progresses, STATUS, STOPPING
        self.sd = Supervisor.from_environ()

    # -- the main loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Run until the stop event is set or every (finite) source has finished; exit code 0."""
        self.publisher.set_status(self._status())
        self.publisher.heartbeat = self.sd.watch("sink", SINK_S)
        beat_core = self.sd.watch("core")
        for s in self.sources:
            if isinstance(s, ThreadedSource):
                s.heartbeat = self.sd.watch(s.name, done=functools.partial(_finished, s))
        self.sd.start()
        self.publisher.start()
        started: list[Source] = []
        failed = False
        try:
            now = started_at = time.monotonic()
            for s in self.sources:
                if getattr(s, "live", True) and not getattr(s, "reports_gaps", False):
                    self._clocks[s.name] = _SourceClock(s, now)
                s.start(self.queue, self.stop)
                started.append(s)
                log.info(
                    "source %s started: %s",
                    s.name,
                    ", ".join(f"{r} at {fs:g} Hz" for r, fs in s.roles.items()),
                )
            self._last_status = time.monotonic()
            while not self.stop.is_set():
                beat_core()
                tried = (
                    self.publisher.counters["connects"]
                    or self.publisher.counters["connection_failures"]
                )
                if not self.sd.is_ready and (tried or time.monotonic() - started_at > READY_WAIT_S):
                    self.sd.ready()  # sources started, first broker connection tried
                frame = self.queue.get(timeout=POLL_S)
                if frame is not None:
                    self._take(frame)
                self._apply_commands()
                if self._clocks:
                    self._feed_silence(time.monotonic())
                self._publish(self.monitor.step())
                self.publisher.poll()
                connects = self.publisher.counters["connects"]
                if connects != self._connects_seen:
                    # (re)connected: the "online" status paho sent from its thread carried the
                    # counters of the moment before; bring it up to date at once
                    self._connects_seen = connects
                    self._send_status()
                elif time.monotonic() - self._last_status >= self.status_period_s:
                    self._send_status()
                if (
                    frame is None
                    and self.queue.qsize() == 0
                    and all(s.finished for s in self.sources)
                ):
                    log.info("replay finished at t=%.0f s of signal", self.monitor.t_s)
                    break
        except BaseException:
            failed = True
            raise
        finally:
            self.sd.stopping()
            self.stop.set()
            for s in reversed(started):
                s.join(timeout=5.0)
            try:
                if not failed:
                    # what the sources delivered before they stopped is still processed and
                    # published
                    while (frame := self.queue.get(timeout=0)) is not None:
                        self._take(frame)
                    self._publish(self.monitor.step())
                    self._apply_commands()
                self.publisher.set_status(self._status())
            finally:
                # even after a crash of the core the ward learns at once that the bed is offline
                self.publisher.stop(reason="error" if failed else "stopped")
        return 0

    # -- frames, gaps, messages ------------------------------------------------------------
    def _take(self, frame: Frame) -> None:
        self.counters["frames"] += 1
        for role, x in frame.samples.items():
            self.monitor.feed(role, x)
        for role, n in frame.n_lost.items():
            if n > 0:
                self.monitor.feed_gap(role, n)
        if frame.n_lost and frame.source in self._clocks:
            log.debug("%s reports its own lost samples; the daemon stops gapping it", frame.source)
            del self._clocks[frame.source]
        clock = self._clocks.get(frame.source)
        if clock is not None:
            now = time.monotonic()
            read_at = frame.wall_s or now
            gapped = any(clock.debt.values()) or clock.gapped_until > clock.last_frame
            if clock.read_at and not gapped:
                # the rhythm of normal delivery, not of outages
                gap = read_at - clock.read_at
                clock.interval_s = (
                    gap if clock.interval_s == 0.0 else 0.8 * clock.interval_s + 0.2 * gap
                )
            clock.read_at = read_at
            clock.last_frame = clock.gapped_until = now
            clock.debt = dict.fromkeys(clock.debt, 0.0)

    def _feed_silence(self, now: float) -> None:
        for clock in self._clocks.values():
            if now - clock.last_frame < clock.silence_s:
                continue
            dt = now - clock.gapped_until
            clock.gapped_until = now
            for role, fs in clock.roles.items():
                owed = clock.debt[role] + dt * fs
                n = int(owed)
                clock.debt[role] = owed - n
                if n > 0:
                    self.monitor.feed_gap(role, n)
                    clock.gap_samples[role] += n

    def _publish(self, messages: list[Any]) -> None:
        alarms_changed = False
        for msg in messages:
            if msg.kind == "vitals":
                self.counters["vitals"] += 1
                payload = msg.to_payload(self.bed, self._ts(msg))
                self.publisher.publish_vitals(payload)
                mqtt = self.publisher.status_counters()
                alarms = self.monitor.alarm_summary()
                self.sd.status(summary_line(self.bed, payload, {"alarms": alarms, "mqtt": mqtt}))
            elif msg.kind == "alarm":
                self.counters["alarm_events"] += 1
                alarms_changed = True
                rec = msg.to_record()
                log.info(
                    "alarm %s %s %s (%s) at t=%.0f s",
                    rec.get("id"),
                    rec.get("condition"),
                    rec.get("state"),
                    rec.get("priority"),
                    rec.get("t_s", 0.0),
                )
                self.publisher.publish_alarm(msg.to_payload(self.bed, self._ts(msg)))
            else:
                log.error("the core emitted a message of unknown kind %r; not published", msg.kind)
        if alarms_changed:
            self._send_status()

    def _ts(self, msg: Any) -> float:
        """Wall-clock time of a message: for live sources the moment its signal time was
        sampled; for a replay (whose signal clock is the recording's) the moment it is sent."""
        if self.live:
            return self.monitor.epoch_s + float(getattr(msg, "t_s", self.monitor.t_s))
        return time.time()

    # -- commands --------------------------------------------------------------------------
    def _apply_commands(self) -> None:
        while True:
            try:
                leaf, raw = self.publisher.commands.get_nowait()
            except queue.Empty:
                return
            if leaf == "ack":
                self._ack(raw)
            else:
                self.counters["commands_rejected"] += 1
                log.warning("ignored unknown command topic cmd/%s (known: cmd/ack)", leaf)

    def _ack(self, raw: bytes) -> None:
        try:
            body = json.loads(raw.decode("utf-8"))
            alarm_id = body["id"]
            if not isinstance(alarm_id, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.counters["commands_rejected"] += 1
            log.warning('ignored cmd/ack %r: expected JSON {"id": "<alarm id>"}', raw[:200])
            return
        events = self.monitor.acknowledge(alarm_id)
        if not events:
            self.counters["commands_rejected"] += 1
            log.warning(
                "cmd/ack for alarm %r: no such active alarm (already cleared or acknowledged?)",
                alarm_id,
            )
            return
        self.counters["commands_applied"] += 1
        log.info("alarm %s acknowledged", alarm_id)
        self._publish(list(events))

    # -- status ----------------------------------------------------------------------------
    def _send_status(self) -> None:
        self._last_status = time.monotonic()
        self.publisher.set_status(self._status())

    def _status(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "bed": self.bed,
            "started": iso_utc(self.started_wall),
            "mode": "live" if self.live else "replay",
            "t_s": self.monitor.t_s,
            "sources": {s.name: s.status() for s in self.sources},
            "gap_samples": {name: dict(c.gap_samples) for name, c in self._clocks.items()},
            "queue": {"dropped_frames": self.queue.dropped_frames, "depth": self.queue.qsize()},
            "mqtt": self.publisher.status_counters(),
            "counters": dict(self.counters),
            "alarms": self.monitor.alarm_summary(),
        }
