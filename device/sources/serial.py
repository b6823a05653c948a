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
import threading
import time
from dataclasses import dataclass
from typing import Any

from device.config import doc, register_section
from device.errors import UserError
from device.sources.base import Frame, FrameQueue, ThreadedSource
from device.sources.openview import (
    OPENVIEW_PRESETS,
    Decoded,
    FieldSpec,
    OpenViewParser,
    ParserCounters,
    PayloadLayout,
    field_from_table,
)
from device.sources.text_format import TEXT_PRESETS, TextLineParser

log = logging.getLogger(__name__)

FORMATS = ("openview", "text")
DEFAULT_PRESET = {"openview": "healthypi5", "text": "healthypi-text"}
#: Sensor boards stream ECG/PPG at 125-500 samples/s (HealthyPi: 125).
MIN_FS_HZ, MAX_FS_HZ = 125.0, 500.0
#: Longest stretch of signal one lost-samples frame covers: keeps the core's clock (and its
#: signal_lost timer) moving in small steps while the board is away.
LOST_STEP_S = 0.5
#: How long one read waits for bytes: the latency of a frame (125 Hz -> ~12 samples a frame).
READ_INTERVAL_S = 0.1


@dataclass
class SerialConfig:
    url: str = doc(
        "serial port: a device path (/dev/ttyACM0, /dev/serial0, a udev symlink such as "
        "/dev/healthypi) or a pyserial URL (socket://HOST:PORT, loop://); empty: no serial source",
        "",
    )
    baud: int = doc("baud rate (HealthyPi: 115200); USB CDC boards and ptys ignore it", 115200)
    format: str = doc(
        "'openview' (HealthyPi binary packets) or 'text' (one line of comma/tab separated "
        "numbers per sample)",
        "openview",
    )
    fs_hz: float = doc(
        "the board's sample rate, 125-500 Hz; boards do not stamp samples, so this is the clock",
        125.0,
    )
    preset: str = doc(
        "payload/column layout: 'healthypi5' (openview) or 'healthypi-text' (text: ecg, resp, "
        "ppg red); empty: the format's default; ignored when 'fields' is given",
        "",
    )
    fields: list[dict[str, Any]] = doc(
        "custom layout, in order: [[serial.fields]] tables with name, type (int8/uint8/int16/"
        "uint16/int32/uint32, little-endian; openview only), role (ecg, ppg, resp; omit for a "
        "field that feeds nothing), scale (signal = counts x scale), invert (true for raw "
        "optical PPG), skip_if (name of a flag field) and skip_value (hold the last value "
        "when the flag has this value)",
        factory=list,
    )
    reconnect_min_s: float = doc(
        "first wait before reopening a lost port, doubled per failed try", 0.25
    )
    reconnect_max_s: float = doc("longest wait between tries to reopen a lost port", 5.0)
    stall_s: float = doc(
        "no valid sample for this long while the port is open counts as lost signal", 1.0
    )

    def validate(self) -> tuple[str, str] | None:
        if self.format not in FORMATS:
            return "format", f"'{self.format}' is not one of {', '.join(FORMATS)}"
        if not (MIN_FS_HZ <= self.fs_hz <= MAX_FS_HZ):
            return "fs_hz", f"{self.fs_hz:g} Hz is outside {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz"
        if self.baud <= 0:
            return "baud", "must be a positive number of bits/s, e.g. 115200"
        if not (0 < self.reconnect_min_s <= self.reconnect_max_s):
            return "reconnect_min_s", "must be > 0 and <= reconnect_max_s"
        if self.stall_s <= 0:
            return "stall_s", "must be > 0"
        try:
            self.columns()
        except ValueError as e:
            key = "fields" if self.fields else "preset"
            return key, str(e)
        return None

    def columns(self) -> tuple[FieldSpec, ...]:
        """The field specs in use (preset or custom); raises ValueError when invalid."""
        if self.fields:
            specs = tuple(field_from_table(t) for t in self.fields)
            if self.format == "openview":
                PayloadLayout(specs)  # checks names, types, skip flags, roles
        else:
            name = self.preset or DEFAULT_PRESET[self.format]
            presets: dict[str, Any] = (
                OPENVIEW_PRESETS if self.format == "openview" else TEXT_PRESETS
            )
            if name not in presets:
                raise ValueError(
                    f"'{name}' is not a {self.format} preset (have: {', '.join(presets)})"
                )
            p = presets[name]
            specs = p.fields if isinstance(p, PayloadLayout) else tuple(p)
        if not any(s.role for s in specs):
            raise ValueError("no field has a role (ecg, ppg or resp): nothing would reach the core")
        return specs

    def make_parser(self) -> OpenViewParser | TextLineParser:
        specs = self.columns()
        if self.format == "openview":
            return OpenViewParser(PayloadLayout(specs))
        return TextLineParser(specs)


register_section("serial", SerialConfig)


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
        self.parser = cfg.make_parser()
        self.roles: dict[str, float] = {s.role: float(cfg.fs_hz) for s in cfg.columns() if s.role}
        self.state = "starting"  # reading | lost | stalled | stopped
        self.samples = 0  # samples per role delivered
        self.lost_samples = 0  # samples per role reported lost (port away or stalled)
        self.outages = 0
        self.reconnects = 0
        self.open_attempts = 0
        self.last_error = ""
        self._last_raw: dict[str, float] = {}
        self._feeding = {s.name for s in cfg.columns() if s.role}

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
        import serial

        self.open_attempts += 1
        return serial.serial_for_url(self.cfg.url, baudrate=self.cfg.baud, timeout=READ_INTERVAL_S)

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
                                log.warning(
                                    "%s: cannot open port (%s); reporting lost signal and "
                                    "retrying every <= %g s",
                                    self.name,
                                    e,
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
                    data = port.read(4096)
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
