"""Serial sensor boards (HealthyPi and others) as a live source.

The port is opened by URL (``serial.serial_for_url``): a device path (``/dev/ttyACM0``,
``/dev/serial0``, a udev symlink), ``socket://host:port`` or ``loop://`` all work. Bytes go
through the configured parser (OpenView packets or text lines) and every ~0.1 s the decoded
samples go to the core as one ``Frame``.

A board does not stamp its samples, so the clock is the configured rate: ``fs_hz`` samples
are one second of signal.

When the port disappears (USB unplugged, the board reset, a pty closed) reads fail. The
source then tells the core what it is missing: ``Frame(n_lost=...)`` for the wall time since
the last sample, in steps of at most 0.5 s, so the core raises ``signal_lost`` while the
board is away; meanwhile it reopens the same path with exponential backoff and resumes when
the port is back. One log line when an outage starts and one when it ends, not one per retry.
The same lost-signal accounting applies while the port stays open but no valid sample
arrives (a board that hangs, a wrong baud rate or format).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any

from device.access import device_hint
from device.config import Config, SerialConfig
from device.errors import UserError
from device.sources.base import Frame, FrameQueue, ThreadedSource
from device.sources.formats import layout, make_parser
from device.sources.formats.openview import Decoded, ParserCounters

log = logging.getLogger(__name__)

#: Longest stretch of signal one lost-samples frame covers: keeps the core's clock (and its
#: signal_lost timer) moving in small steps while the board is away.
LOST_STEP_S = 0.5
#: How long one read waits for bytes: the latency of a frame (125 Hz -> ~12 samples a frame).
READ_INTERVAL_S = 0.1
#: The most one read asks for (about a second of HealthyPi packets).
MAX_READ = 4096


def parse_serial_arg(text: str) -> tuple[str, int | None]:
    """``PATH[@BAUD]`` (the ``--serial`` option) -> (url, baud or None)."""
    url, sep, baud = text.rpartition("@")
    if sep and baud.isdigit():
        return url, int(baud)
    return text, None


class SerialSource(ThreadedSource):
    """A serial board read in its own thread; see the module docstring."""

    live = True  # wall-clocked: the daemon's clock follows the board
    reports_gaps = True  # it sends n_lost frames itself while the board is away

    def __init__(self, cfg: SerialConfig, name: str = "") -> None:
        problem = cfg.validate()
        if problem:
            raise UserError(f"[serial] {problem[0]}: {problem[1]}", "see docs/hardware.md")
        if not cfg.url:
            raise UserError("no serial port given", "set [serial] url or pass --serial PATH")
        self.cfg = cfg
        self.name = name or f"serial:{cfg.url}"
        specs = layout(cfg.format, cfg.preset, cfg.fields)
        self.parser = make_parser(cfg.format, specs)
        self.roles: dict[str, float] = {s.role: float(cfg.fs_hz) for s in specs if s.role}
        self.state = "starting"  # reading | lost | stalled | stopped
        self.samples = 0  # samples per role delivered
        self.lost_samples = 0  # samples per role reported lost (port away or stalled)
        self.outages = 0
        self.reconnects = 0
        self.open_attempts = 0
        self.last_error = ""
        self._last_raw: dict[str, float] = {}
        self._feeding = {s.name for s in specs if s.role}

    @classmethod
    def from_config(cls, section: SerialConfig, cfg: Config) -> SerialSource:
        return cls(section)

    # -- Source protocol -----------------------------------------------------------------
    @property
    def counters(self) -> ParserCounters:
        return self.parser.counters

    def status(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "format": self.cfg.format,
            "fs_hz": self.cfg.fs_hz,
            "state": self.state,
            **self.parser.counters.as_dict(),
            "samples": self.samples,
            "lost_samples": self.lost_samples,
            "outages": self.outages,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "board": dict(self._last_raw),
        }

    # -- the thread ----------------------------------------------------------------------
    def _open(self) -> Any:
        import termios

        import serial

        self.open_attempts += 1
        try:
            return serial.serial_for_url(
                self.cfg.url, baudrate=self.cfg.baud, timeout=READ_INTERVAL_S
            )
        except termios.error as e:
            # store (issue 11, found by unplugging a board 100 times): a port that vanishes
            # while pyserial sets it up fails in tcsetattr with termios.error, which is not an
            # OSError; pyserial has closed it. A failed open, retried, not a dead thread.
            raise serial.SerialException(f"port vanished while opening: {e}") from e

    def _read_size(self) -> int:
        """Bytes the next read asks for: about as many as reach the sample that completes the
        current second of signal, so that the read returns as soon as that sample is in (the
        core completes a second, and publishes its vitals, only once its last sample has
        arrived) instead of up to READ_INTERVAL_S later. Far from the end of a second this is
        more than arrives within READ_INTERVAL_S, and reads return every READ_INTERVAL_S as
        before. Estimated from the bytes per sample so far (MAX_READ until there are some),
        less what the parser holds of a frame begun: asking for a little too much waits for a
        packet more, too little reads again at once."""
        c = self.parser.counters
        pending = int(getattr(self.parser, "pending", 0))  # (a plug-in format may not say)
        if c.good_frames <= 0 or c.bytes <= pending:
            return MAX_READ
        fs = self.cfg.fs_hz
        done = self.samples + self.lost_samples  # the core's clock, in samples
        end = math.ceil((math.floor(done / fs) + 1) * fs - 1e-9)  # where the second ends
        if end <= done:
            end = math.ceil((math.floor(done / fs) + 2) * fs - 1e-9)
        per_sample = (c.bytes - pending) / c.good_frames
        return max(1, min(MAX_READ, math.ceil((end - done) * per_sample - pending)))

    def _lost(self, out: FrameQueue, since: float, now: float) -> float:
        """Report the samples between ``since`` and ``now`` as lost, in steps of <= 0.5 s;
        returns the wall time accounted up to."""
        fs = self.cfg.fs_hz
        n = int((now - since) * fs)
        step = int(LOST_STEP_S * fs)
        left = n
        while left > 0:
            k = min(step, left)
            out.put(Frame(self.name, {}, dict.fromkeys(self.roles, k), now))
            left -= k
        self.lost_samples += n
        return since + n / fs

    def _deliver(self, out: FrameQueue, d: Decoded, now: float) -> None:
        out.put(Frame(self.name, {r: x for r, x in d.signals.items() if r in self.roles}, {}, now))
        self.samples += d.n
        for name, x in d.raw.items():
            if name not in self._feeding and len(x):
                self._last_raw[name] = float(x[-1])

    def _run(self, out: FrameQueue, stop: threading.Event) -> None:
        import serial

        port: Any = None
        accounted = time.monotonic()  # wall time up to which samples were delivered or lost
        last_sample = accounted
        outage_start: float | None = None
        backoff = self.cfg.reconnect_min_s
        next_try = 0.0
        stalled = False
        try:
            while not stop.is_set():
                self._beat()
                now = time.monotonic()
                if port is None:
                    if now >= next_try:
                        try:
                            port = self._open()
                        except (serial.SerialException, OSError, ValueError) as e:
                            self.last_error = str(e)
                            if outage_start is None:
                                outage_start = last_sample
                                self.outages += 1
                                self.state = "lost"
                                hint = device_hint(e)
                                log.warning(
                                    "%s: cannot open port (%s)%s; reporting lost signal and "
                                    "retrying every <= %g s",
                                    self.name,
                                    e,
                                    f"; {hint}" if hint else "",
                                    self.cfg.reconnect_max_s,
                                )
                            next_try = now + backoff
                            backoff = min(2 * backoff, self.cfg.reconnect_max_s)
                        else:
                            self.parser.reset()
                            backoff = self.cfg.reconnect_min_s
                            if outage_start is not None:
                                self.reconnects += 1
                                log.warning(
                                    "%s: port back after %.1f s; reading resumed",
                                    self.name,
                                    now - outage_start,
                                )
                            outage_start = None
                            stalled = False
                            last_sample = accounted = max(accounted, now - READ_INTERVAL_S)
                            self.state = "reading"
                            continue
                    if outage_start is not None and now - accounted >= LOST_STEP_S / 2:
                        accounted = self._lost(out, accounted, now)
                    stop.wait(min(0.25, max(0.0, next_try - time.monotonic())) or 0.01)
                    continue
                try:
                    data = port.read(self._read_size())
                except (serial.SerialException, OSError) as e:
                    self.last_error = str(e)
                    self.outages += 1
                    outage_start = last_sample
                    self.state = "lost"
                    log.warning(
                        "%s: port lost (%s); reporting lost signal and reopening", self.name, e
                    )
                    _close(port)
                    port = None
                    backoff = self.cfg.reconnect_min_s
                    next_try = time.monotonic() + backoff
                    accounted = self._lost(out, accounted, time.monotonic())
                    continue
                now = time.monotonic()
                d = self.parser.feed(data) if data else None
                if d is not None and d.n:
                    if stalled:
                        log.warning(
                            "%s: valid samples again after %.1f s", self.name, now - last_sample
                        )
                        stalled = False
                        self.state = "reading"
                        accounted = max(accounted, now - d.n / self.cfg.fs_hz)
                    self._deliver(out, d, now)
                    last_sample = now
                    accounted = max(accounted, now)
                elif now - last_sample >= self.cfg.stall_s:
                    if not stalled:
                        stalled = True
                        self.state = "stalled"
                        c = self.parser.counters
                        log.warning(
                            "%s: no valid sample for %.1f s (bytes %d, bad frames %d); "
                            "check format, baud and fs_hz",
                            self.name,
                            now - last_sample,
                            c.bytes,
                            c.bad_frames,
                        )
                    if now - accounted >= LOST_STEP_S / 2:
                        accounted = self._lost(out, accounted, now)
        finally:
            if port is not None:
                _close(port)
            self.state = "stopped"


def _close(port: Any) -> None:
    # a vanished device may fail to close; it is gone either way
    with contextlib.suppress(Exception):
        port.close()
