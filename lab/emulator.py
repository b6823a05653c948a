"""Play a recording into a real port the way a sensor board would.

  bedside replay REC.csv.gz --to /dev/ttyUSB1 --format openview      # a serial port
  bedside replay REC.csv.gz --to pty --format text --speed 10   # a new pty; prints its path
  bedside replay REC.csv.gz --to pty --rate 250 --loop          # resampled for a 250 Hz board
  bedside replay BREATH.wav --to alsa-raw /tmp/breath.raw       # raw PCM for ALSA's file plugin

Serial targets receive one sample per 1/(rate x speed) s, in bursts of about 20 ms as a USB
CDC board sends them:

- ``openview``: HealthyPi 5 packets (22-byte payload). Recordings hold floats (BIDMC channels
  are normalised to about 0..1 with five decimals), boards send integer counts: each value is
  multiplied by ``--counts-per-unit`` (default 100000, which keeps every BIDMC digit) and
  rounded. PPG is sent negated, as the HealthyPi's optical front end reports it (more blood,
  less light); the ``healthypi5`` preset inverts it back. Respiration is sent in every packet
  (skip flag 0).
- ``text``: ``ecg<TAB>resp<TAB>ppg\\r\\n`` lines like the HealthyPi text mode, values in the
  recording's units with ``--decimals`` decimals (HealthyPi prints 3; default 5 keeps BIDMC's
  resolution), PPG negated likewise.

A gap (NaN) in the recording is sent as 0: a board has no way to send a gap.

``--to pty`` creates a pseudo-terminal, prints its path on stdout, and keeps serving it until
interrupted (after the end of the recording the port stays open and silent, like a board
that stopped streaming). Nobody reading the pty is like nobody listening on a UART: bytes that
do not fit are dropped and counted, the replay keeps time.

``--to alsa-raw FILE`` writes the WAV's samples as raw 16-bit little-endian PCM (S16_LE), the
format the ALSA ``file`` plugin feeds to capture, and prints the ``~/.asoundrc`` entry to
use; capture at the same rate and channel count, dtype int16 (``[audio] dtype = "int16"``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
import time
import tty
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from device.errors import UserError

#: BIDMC floats -> integer counts (see the module docstring)
COUNTS_PER_UNIT = 100_000.0
#: a serial board writes its samples in bursts of about this long (USB CDC frames, UART FIFOs)
BURST_S = 0.02
MIN_BOARD_HZ, MAX_BOARD_HZ = 125.0, 500.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="recording: BIDMC-format .csv/.csv.gz (serial targets) or .wav (alsa-raw)"
    )
    p.add_argument(
        "--to",
        nargs="+",
        required=True,
        metavar="TARGET",
        help="a serial port path or pyserial URL, 'pty' (create one and print its path), "
        "or 'alsa-raw FILE' (write raw PCM for ALSA's file plugin)",
    )
    p.add_argument(
        "--format",
        choices=("openview", "text"),
        default="openview",
        help="what a board sends: HealthyPi OpenView packets or text lines (default openview)",
    )
    p.add_argument(
        "--preset",
        default="",
        help="the board's payload layout (openview: healthypi5, the default, or icu4: two ECG "
        "leads, pleth and arterial pressure); the daemon's [serial] preset must "
        "match",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="pace at X times real time (default 1)",
    )
    p.add_argument(
        "--rate",
        type=float,
        metavar="HZ",
        help="resample to this board rate first (serial: 125-500 Hz; alsa-raw: any audio rate)",
    )
    p.add_argument("--loop", action="store_true", help="start again at the end, forever")
    p.add_argument(
        "--baud", type=int, default=115200, help="baud rate for a real serial port (default 115200)"
    )
    p.add_argument(
        "--fs", type=float, metavar="HZ", help="sample rate of a CSV without a 'Time [s]' column"
    )
    p.add_argument(
        "--start", type=float, default=0.0, metavar="S", help="start this far into the recording"
    )
    p.add_argument("--duration", type=float, metavar="S", help="play only this many seconds")
    p.add_argument(
        "--counts-per-unit",
        type=float,
        default=COUNTS_PER_UNIT,
        metavar="K",
        help="openview: integer counts per unit of the recording's values (default 100000)",
    )
    p.add_argument(
        "--decimals", type=int, default=5, metavar="N", help="text: decimals per value (default 5)"
    )


# -- encoding ------------------------------------------------------------------------------------


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    """Hold the last finite value over NaN runs (0 before the first), before resampling."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    idx = np.where(~bad, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, x[np.maximum(idx, 0)], 0.0)


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Offline polyphase resampling (a tool, not the streaming core: it may look ahead)."""
    from scipy.signal import resample_poly

    if fs_in == fs_out:
        return x
    r = Fraction(fs_out / fs_in).limit_denominator(1000)
    return np.asarray(resample_poly(_fill_gaps(x), r.numerator, r.denominator))


def signals_for_fields(signals: dict[str, np.ndarray], roles: list[str]) -> dict[str, np.ndarray]:
    """The recording's inputs a board layout sends, keyed by its fields' roles: the input of
    the same name, else the next unused one of the same role (a record's first ECG lead goes
    out as the board's first lead whatever its name), else nothing (the field reads 0)."""
    used: set[str] = set()
    out: dict[str, np.ndarray] = {}
    for role in roles:
        if role in signals and role not in used:
            out[role], _ = signals[role], used.add(role)
            continue
        base = role.partition(":")[0]
        for name, x in signals.items():
            if name not in used and name.partition(":")[0] == base:
                out[role] = x
                used.add(name)
                break
    return out


def encode_stream(
    signals: dict[str, np.ndarray],
    fmt: str,
    counts_per_unit: float = COUNTS_PER_UNIT,
    decimals: int = 5,
    preset: str = "",
) -> tuple[bytes, np.ndarray]:
    """The byte stream a board sends for ``signals`` in board format ``fmt`` (its default
    layout), and the byte offset of each sample (``offsets[i]`` is where sample i starts;
    ``offsets[-1]`` is the length)."""
    from device.sources.formats import board_format, layout

    board = board_format(fmt)
    blob = board.encode(
        layout(fmt, preset), signals, counts_per_unit=counts_per_unit, decimals=decimals
    )
    return blob, board.sample_offsets(blob)


def serve(
    write: Callable[[bytes], int],
    blob: bytes,
    offsets: np.ndarray,
    fs_hz: float,
    speed: float,
    loop: bool,
    stop: threading.Event,
) -> dict[str, int]:
    """Write the stream paced at ``fs_hz * speed`` samples/s until done or ``stop``.

    ``write`` returns the bytes it took; what it could not take is dropped and counted.
    """
    n = len(offsets) - 1
    sent = dropped = samples = 0
    t0 = time.monotonic()
    base = 0  # samples played before the current pass (loops)
    i = 0
    while not stop.is_set():
        due = int((time.monotonic() - t0) * fs_hz * speed) - base
        if due > i:
            j = min(due, n)
            chunk = blob[offsets[i] : offsets[j]]
            took = write(chunk)
            sent += took
            dropped += len(chunk) - took
            samples += j - i
            i = j
        if i >= n:
            if not loop:
                break
            base += n
            i = 0
            continue
        stop.wait(BURST_S)
    return {"samples": samples, "bytes_sent": sent, "bytes_dropped": dropped}


# -- targets -------------------------------------------------------------------------------------


def _nonblocking_writer(fd: int) -> Callable[[bytes], int]:
    os.set_blocking(fd, False)

    def write(data: bytes) -> int:
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as e:
            if e.errno == errno.EIO:
                return 0
            raise

    return write


def _serial_writer(url: str, baud: int) -> tuple[Callable[[bytes], int], Callable[[], None]]:
    import serial

    try:
        port = serial.serial_for_url(url, baudrate=baud, write_timeout=0.5)
    except (serial.SerialException, OSError, ValueError) as e:
        raise UserError(
            f"{url}: cannot open serial port ({e})",
            "check the path, that it exists and that you are in the dialout group",
        ) from None

    def write(data: bytes) -> int:
        try:
            return int(port.write(data) or 0)
        except serial.SerialTimeoutException:
            return 0
        except (serial.SerialException, OSError) as e:
            raise UserError(
                f"{url}: write failed ({e})", "the port went away; plug it back and rerun"
            ) from None

    return write, port.close


def _write_alsa_raw(args: argparse.Namespace, out: Path) -> int:
    from device.recording import read_wav

    rec = read_wav(args.input)
    fs = rec.fs_hz
    chans = [np.asarray(rec.channels[c], dtype=np.float64) for c in rec.channels]
    a = int(round(args.start * fs))
    b = len(chans[0]) if args.duration is None else a + int(round(args.duration * fs))
    chans = [c[a:b] for c in chans]
    if args.rate:
        chans = [resample(c, fs, args.rate) for c in chans]
        fs = args.rate
    if int(fs) != fs:
        raise UserError(
            f"audio rate {fs:g} Hz is not a whole number", "give --rate with an integer rate"
        )
    pcm = np.clip(np.round(np.column_stack(chans) * 32767.0), -32768, 32767).astype("<i2")
    try:
        out.write_bytes(pcm.tobytes())
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror})", "choose a writable path") from None
    n_ch = len(chans)
    print(
        f"wrote {out}: {len(pcm)} frames, {int(fs)} Hz, {n_ch} channel(s), S16_LE "
        f"({len(pcm) / fs:.1f} s)"
    )
    print(
        "add this to ~/.asoundrc (ALSA reads it when PortAudio starts), then capture from "
        f"device 'bedside_replay' at {int(fs)} Hz, {n_ch} channel(s), dtype int16; "
        "the file loops at its end:"
    )
    print(
        f'pcm.bedside_replay {{ type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{out.resolve()}"; format "raw" }}'
    )
    return 0


def run(args: argparse.Namespace) -> int:
    target = args.to
    if not (args.speed > 0 and np.isfinite(args.speed)):
        raise UserError(
            f"--speed {args.speed} is not a positive number", "give e.g. --speed 1 or --speed 10"
        )
    if target[0] == "alsa-raw":
        if len(target) != 2:
            raise UserError(
                "--to alsa-raw needs the output file", "write --to alsa-raw /tmp/replay.raw"
            )
        return _write_alsa_raw(args, Path(target[1]))
    if len(target) != 1:
        raise UserError(
            f"--to takes one port path (got {' '.join(target)})", "give --to PATH or --to pty"
        )

    from device.recording import read_recording

    rec = read_recording(args.input, fs_hz=args.fs)
    from device.sources.formats import layout as board_layout

    try:
        fields = board_layout(args.format, args.preset or "")
    except ValueError as e:
        raise UserError(str(e), "choose one of the presets named") from None
    signals = signals_for_fields(rec.role_signals(), [f.role for f in fields if f.role])
    if not signals:
        raise UserError(
            f"{args.input}: no channel the board layout sends (it sends "
            f"{', '.join(f.role for f in fields if f.role)})",
            "a serial board sends ECG/PPG/ABP/respiration; use --to alsa-raw for audio, or "
            "another --preset",
        )
    fs = rec.fs_hz
    a = int(round(args.start * fs))
    b = rec.n_samples if args.duration is None else a + int(round(args.duration * fs))
    signals = {r: np.asarray(x[a:b], dtype=np.float64) for r, x in signals.items()}
    if args.rate:
        signals = {r: resample(x, fs, args.rate) for r, x in signals.items()}
        fs = float(args.rate)
    if not (MIN_BOARD_HZ <= fs <= MAX_BOARD_HZ):
        raise UserError(
            f"{args.input}: {fs:g} Hz is not a sensor-board rate "
            f"({MIN_BOARD_HZ:g}-{MAX_BOARD_HZ:g} Hz)",
            "resample it with --rate HZ",
        )
    if not len(next(iter(signals.values()))):
        raise UserError(
            f"{args.input}: nothing to play between --start and --duration", "check them"
        )
    blob, offsets = encode_stream(
        signals, args.format, args.counts_per_unit, args.decimals, args.preset or ""
    )

    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread (tests): Ctrl-C only
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    closers: list[Callable[[], None]] = []
    if target[0] == "pty":
        master, slave = os.openpty()
        tty.setraw(slave)  # a board's port is raw: no echo, no newline translation
        write = _nonblocking_writer(master)
        closers += [lambda: os.close(master), lambda: os.close(slave)]
        print(os.ttyname(slave), flush=True)
    else:
        write, close = _serial_writer(target[0], args.baud)
        closers.append(close)
    print(
        f"bedside replay: {args.input}: {len(offsets) - 1} samples at {fs:g} Hz x {args.speed:g} "
        f"as {args.format}{' (looping)' if args.loop else ''}",
        file=sys.stderr,
    )
    try:
        stats = serve(write, blob, offsets, fs, args.speed, args.loop, stop)
        print(
            f"bedside replay: done: {stats['samples']} samples, {stats['bytes_sent']} bytes sent, "
            f"{stats['bytes_dropped']} dropped (no reader)",
            file=sys.stderr,
            flush=True,
        )
        if target[0] == "pty":
            # keep the port open (a board that stopped streaming) until interrupted
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for close in closers:
            with contextlib.suppress(OSError):
                close()
    return 0
