"""The daemon: the imperative shell around the monitor.

Threads and who owns what::

    source threads --Frame--> FrameQueue --> main loop (owns the Monitor) --> sinks (MQTT:
                                                ^                              paho thread,
                                                +---- commands (Ack) <---------+ JSON lines)

- One thread per source puts frames on one bounded queue that counts what it drops.
- The main loop is the only user of the Monitor: it feeds samples and gaps, steps the core once
  per frame, hands each message to every sink (``device.sinks``), and applies the commands the
  sinks return (an acknowledge never travels back through estimators).
- For live sources the main loop also feeds *gaps* when a source has delivered nothing for a
  while, so the signal clock keeps going with the wall clock and the core raises
  ``signal_lost``; a replay is never gapped (its clock is the recording's), nor is a source
  that reports its own lost samples (``reports_gaps = True``, or once it has sent a frame with
  ``n_lost``), so no stretch of time is counted twice.
- One stop event (set by SIGTERM or SIGINT in ``bedside run``): sources are joined in reverse
  start order, what they delivered is processed and published, then the sinks are stopped
  (MQTT publishes the retained ``offline`` status and closes the connection).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Sequence

from device.alarms import AlarmEvent
from device.clock import RateEstimate
from device.config import Config
from device.delegates import Degraded
from device.estimators.registry import describe
from device.messages import iso_utc
from device.monitor import Message, Monitor
from device.notify import READY_WAIT_S, SINK_S, Supervisor, summary_line
from device.sinks import Ack, Command, Sink, Status
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
#: on stop, what the sources delivered is still processed for at most this long
STOP_DRAIN_S = 2.0
#: the same when nothing but a frame needs the loop: no live source to gap (replays are never
#: gapped; a source that reports its own lost samples is not either) and no open alarm
#: (commands are acknowledgements, which matter only while an alarm is open). Frames wake
#: the loop at once whatever the wait, so the vitals are not delayed; fewer idle wake-ups
#: are a third less CPU for a replayed bed (bench/daemon_replay.py).
IDLE_POLL_S = 0.5


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
    """Runs ``sources`` through a Monitor into ``sinks``, until stopped or done."""

    def __init__(
        self,
        cfg: Config,
        sources: list[Source],
        sinks: Sequence[Sink],
        stop: threading.Event | None = None,
        bed: str | None = None,
        status_period_s: float = STATUS_PERIOD_S,
        monitor: Monitor | None = None,
        degraded: Degraded | None = None,
    ) -> None:
        """``monitor``: the core to drive (``device.preflight`` builds it, so a model that
        fails its checks stops the start before any thread runs); default: built here.
        ``degraded``: what the bed runs without (``preflight``), for the retained status."""
        if not sources:
            raise ValueError("the daemon needs at least one source")
        self.cfg = cfg
        self.sources = sources
        self.sinks = list(sinks)
        self.stop = stop or threading.Event()
        self.bed = bed or cfg.bed.id
        self.status_period_s = status_period_s
        self.degraded = degraded
        #: a replay's clock is its recording's; every other source is live and wall-clocked
        self.live = any(getattr(s, "live", True) for s in sources)
        self.queue = FrameQueue()
        fs: dict[str, float] = {}
        for s in sources:
            fs.update(s.roles)
        self.started_wall = time.time()
        self._started_mono = time.monotonic()
        self.monitor = monitor or Monitor.for_inputs(fs, cfg, bed=self.bed)
        # live alarm ids carry the wall-clock start, so they are unique across restarts
        self.monitor.epoch_s = self.started_wall if self.live else 0.0
        self.monitor.alarms.epoch_s = self.monitor.epoch_s
        self.counters = {
            "frames": 0,
            "vitals": 0,
            "alarm_events": 0,
            "commands_applied": 0,
            "commands_rejected": 0,
        }
        self._clocks: dict[str, _SourceClock] = {}
        #: each live source's rate against the monotonic clock (device/clock.py)
        self._rates = {
            s.name: RateEstimate(max(s.roles.values()))
            for s in sources
            if getattr(s, "live", True) and s.roles
        }
        self._fed_s: dict[str, float] = {}  # signal time fed to the core, per role
        self._read_at: dict[str, float] = {}  # monotonic time that input was read, per role
        self._last_status = 0.0
        self._connects_seen = 0
        #: sd_notify: READY, watchdog pings while every stage progresses, STATUS, STOPPING
        self.sd = Supervisor.from_environ()
        self._last_vitals: dict[str, object] | None = None
        #: an alarm is active, latched or acknowledged (kept up to date with each alarm event)
        self._alarms_open = False

    # -- the main loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Run until the stop event is set or every (finite) source has finished; exit code 0."""
        for line in describe(self.monitor.pipeline.estimators):
            log.info("estimator: %s", line)
        status = self._status()
        for sink in self.sinks:
            if sink.threaded:  # a sink with a thread of its own is a stage of the watchdog
                sink.heartbeat = self.sd.watch(f"sink:{sink.key}", SINK_S)
        beat_core = self.sd.watch("core")
        for s in self.sources:
            if isinstance(s, ThreadedSource):
                s.heartbeat = self.sd.watch(s.name, done=functools.partial(_finished, s))
        self.sd.start()
        for sink in self.sinks:
            sink.set_status(status)
            sink.start()
        self._keep_ids_above_store()  # store (issue 11)
        started: list[Source] = []
        failed = False
        try:
            now = started_at = time.monotonic()
            for s in self.sources:
                self.queue.register(s.name, s.roles)
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
                if not self.sd.is_ready and (
                    all(sink.tried for sink in self.sinks)
                    or time.monotonic() - started_at > READY_WAIT_S
                ):
                    self.sd.ready()  # sources started, first broker connection tried
                busy = bool(self._clocks) or self._alarms_open
                frame = self.queue.get(timeout=POLL_S if busy else IDLE_POLL_S)
                if frame is not None:
                    self._take(frame)
                self._apply(self._poll_sinks())
                if self._clocks:
                    self._feed_silence(time.monotonic())
                self._publish(self.monitor.step())
                connects = sum(int(getattr(sink, "connects", 0)) for sink in self.sinks)
                if connects != self._connects_seen:
                    # (re)connected: the "online" status MQTT sent from its thread carried the
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
                    # (bounded: a core far behind a fast source must still stop promptly)
                    budget = time.monotonic() + STOP_DRAIN_S
                    while time.monotonic() < budget and (frame := self.queue.get(0)) is not None:
                        self._take(frame)
                        self._publish(self.monitor.step())
                    self._publish(self.monitor.step())
                    self._apply(self._poll_sinks())
                status = self._status()
                for sink in self.sinks:
                    sink.set_status(status)
            finally:
                # even after a crash of the core the ward learns at once that the bed is offline
                for sink in self.sinks:
                    sink.stop(reason="error" if failed else "stopped")
        return 0

    # -- frames, gaps, messages ------------------------------------------------------------
    def _take(self, frame: Frame) -> None:
        self.counters["frames"] += 1
        if frame.restart:
            self._restart_core(frame.source)
        read_at = frame.wall_s or time.monotonic()
        for role, x in frame.samples.items():
            self.monitor.feed(role, x)
            self._fed(role, len(x), read_at)
        for role, n in frame.n_lost.items():
            if n > 0:
                self.monitor.feed_gap(role, n)
                self._fed(role, n, read_at)
        rate = self._rates.get(frame.source)
        if rate is not None:
            if frame.n_lost or frame.restart:
                rate.restart()  # not the board's own rhythm
            elif frame.samples:
                rate.add(read_at, len(next(iter(frame.samples.values()))))
            for role in frame.samples:
                self.monitor.rate_errors[role] = rate.error
        if frame.n_lost and not frame.dropped and frame.source in self._clocks:
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

    def _fed(self, role: str, n: int, read_at: float) -> None:
        """Book-keeping for timestamps: signal time fed per role, and when it was read."""
        fs = self.monitor.pipeline.fs_hz.get(role)  # type: ignore[call-overload]
        if fs:
            self._fed_s[role] = self._fed_s.get(role, 0.0) + n / fs
            self._read_at[role] = read_at

    def _restart_core(self, source: str) -> None:
        """A looping replay went back to its beginning: that is not the same patient a
        moment later, so a new core (estimators, alarm engine, signal clock) starts there.
        Alarms still open are ended with that reason, not as if their condition had gone."""
        self._publish(self.monitor.step())
        t_s = self.monitor.t_s
        log.warning(
            "%s looped after %.0f s of signal: monitoring restarts there with a new signal clock",
            source,
            t_s,
        )
        ended = self.monitor.alarms.end_all(t_s, "the recording looped; monitoring restarted")
        self._publish(ended)
        epoch = self.monitor.epoch_s + t_s  # alarm ids stay unique across passes
        fs = {str(r): f for r, f in self.monitor.pipeline.fs_hz.items()}
        self.monitor = Monitor.for_inputs(fs, self.cfg, bed=self.bed)
        self.monitor.epoch_s = self.monitor.alarms.epoch_s = epoch
        self.counters["restarts"] = self.counters.get("restarts", 0) + 1

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
                    self._fed(role, n, now)

    def _publish(self, messages: Sequence[Message]) -> None:
        alarms_changed = False
        for msg in messages:
            ts = self._ts(msg)
            if not isinstance(msg, AlarmEvent):
                self.counters["vitals"] += 1
                self._last_vitals = msg.to_record()
            else:
                self.counters["alarm_events"] += 1
                alarms_changed = True
                log.info(
                    "alarm %s %s %s (%s) at t=%.0f s",
                    msg.id,
                    msg.condition,
                    msg.state,
                    msg.priority,
                    msg.t_s,
                )
            for sink in self.sinks:
                sink.send(msg, ts)
        if alarms_changed:
            self._alarms_open = bool(self.monitor.alarm_summary())
            self._send_status()
        if messages and self.sd.notifier.enabled:  # (outside systemd nobody reads it)
            status = self._status().to_payload()
            self.sd.status(summary_line(self.bed, self._last_vitals, status))

    def _ts(self, msg: Message) -> float:
        """Wall-clock time of a message: for live sources the moment the sample at its signal
        time was read (from the role that completed that second: the read time of its last
        frame, less the signal after ``t_s`` that frame carried), so ``ts`` follows the wall
        clock whatever the board's crystal does (``device/clock.py``); for a replay (whose
        signal clock is the recording's) the moment it is sent."""
        now = time.time()
        if not self.live or not self._fed_s:
            return now
        role = min(self._fed_s, key=lambda r: self._fed_s[r])
        since_read = time.monotonic() - self._read_at[role]
        return now - since_read - max(0.0, self._fed_s[role] - msg.t_s)

    # -- commands --------------------------------------------------------------------------
    def _poll_sinks(self) -> list[Command]:
        commands = [cmd for sink in self.sinks for cmd in sink.poll()]
        # store (issue 11): faults a sink reports (the MQTT store cannot write: store_failed)
        # reach the alarm engine with the next second
        faults: dict[str, str] = {}
        for sink in self.sinks:
            report = getattr(sink, "faults", None)
            if report is not None:
                faults.update(report())
        self.monitor.faults = faults
        return commands

    def _keep_ids_above_store(self) -> None:
        """store (issue 11): a live start whose wall clock is behind the latest ``ts`` the
        bed's store has issued (the clock was set back) keeps its alarm ids above every id
        already issued; ``ts`` itself stays the wall clock."""
        if not self.live:
            return
        floor = max((float(getattr(s, "wall_floor", 0.0)) for s in self.sinks), default=0.0)
        if floor > self.monitor.alarms.epoch_s:
            log.warning(
                "the wall clock (%s) is behind the last message this bed sent (%s): alarm ids "
                "continue from there",
                iso_utc(self.monitor.alarms.epoch_s),
                iso_utc(floor),
            )
            self.monitor.alarms.epoch_s = float(math.ceil(floor) + 1)

    def _apply(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Ack):
                self._ack(cmd.alarm_id)

    def _ack(self, alarm_id: str) -> None:
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
    def _clock_status(self, source: Source) -> dict[str, object]:
        """A live source's measured rate and how far its signal clock is from the wall."""
        rate = self._rates.get(source.name)
        if rate is None:
            return {}
        err = rate.error
        fed = [self._fed_s.get(r, 0.0) for r in source.roles]
        elapsed = time.monotonic() - self._started_mono
        return {
            "clock": {
                "nominal_hz": rate.nominal_hz,
                "rate_hz": None if rate.rate_hz is None else round(rate.rate_hz, 4),
                "rate_error_percent": None if err is None else round(100.0 * err, 3),
                "measured_over_s": round(rate.span_s, 1),
                "signal_ahead_s": round(min(fed, default=0.0) - elapsed, 3),
            }
        }

    def _send_status(self) -> None:
        self._last_status = time.monotonic()
        status = self._status()
        for sink in self.sinks:
            sink.set_status(status)

    def _status(self) -> Status:
        return Status(
            bed=self.bed,
            started=iso_utc(self.started_wall),
            mode="live" if self.live else "replay",
            t_s=self.monitor.t_s,
            estimators={f"{e.quantity}_{e.role}": e.name for e in self.monitor.pipeline.estimators},
            sources={s.name: {**s.status(), **self._clock_status(s)} for s in self.sources},
            gap_samples={name: dict(c.gap_samples) for name, c in self._clocks.items()},
            queue=self.queue.status(),
            sinks={sink.key: sink.counters() for sink in self.sinks},
            counters=dict(self.counters),
            alarms=tuple(self.monitor.alarm_summary()),
            degraded=self.degraded,
        )
