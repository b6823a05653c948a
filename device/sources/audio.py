"""Audio input (a microphone or an electronic stethoscope) as a live source.

Capture runs through PortAudio (``sounddevice``) with blocking ``InputStream.read`` in the
source's own thread: on a sound card the hardware paces the reads; nothing runs in a
PortAudio callback. Each block becomes one ``Frame`` of role ``audio`` at the stream's rate
(samples scaled to [-1, 1)). Overflows (the card delivered faster than we read) are counted
and reported in the status.

``sounddevice`` is imported only here, when an audio source is configured: without the
PortAudio shared library its import fails, which becomes a clear error naming the package.

ALSA's ``file`` plugin (see ``bedside replay --to alsa-raw`` and docs/hardware.md) feeds a
recorded file to capture for tests and demos. That device is pulled, not paced: it returns
samples as fast as they are read. ``pace_x`` then caps the read rate at N x real time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.config import doc, register_section
from device.errors import UserError
from device.sources.base import Frame, FrameQueue, ThreadedSource

log = logging.getLogger(__name__)

DTYPES = {"int16": 32768.0, "int32": 2147483648.0, "float32": 1.0}
#: Breath sounds carry energy up to ~1-2 kHz; 2 kHz is the slowest useful capture rate, 48 kHz
#: the fastest a sound card commonly offers.
MIN_FS_HZ, MAX_FS_HZ = 2000.0, 48000.0


@dataclass
class AudioConfig:
    device: str = doc(
        "PortAudio input device: a name or part of one (as 'python -m sounddevice' lists "
        "them), or an index; 'default' for the system default; empty: no audio source",
        "",
    )
    fs_hz: float = doc(
        "capture sample rate in Hz, 2000-48000 (stethoscopes: 4000-8000); the device must "
        "support it",
        8000.0,
    )
    channels: int = doc("channels to open on the device", 1)
    channel: int = doc("which channel (0-based) carries the breathing sounds", 0)
    block_frames: int = doc("frames per read: 1024 at 8000 Hz is 128 ms", 1024)
    dtype: str = doc(
        "sample format: 'int16' (what 'bedside replay --to alsa-raw' writes), 'int32' or 'float32'",
        "int16",
    )
    listens: str = doc(
        "what the sound carries: 'breath' (respiratory rate from breath sounds), 'heart' "
        "(heart rate from heart sounds) or 'auto' (both, each published only when its "
        "quality measure passes; see device/estimators/audio_vitals.py)",
        "auto",
    )
    pace_x: float = doc(
        "0: the sound card paces capture (normal use). N > 0: read no faster than N x real "
        "time, for ALSA file devices (tests, demos), which are pulled, not paced",
        0.0,
    )

    def validate(self) -> tuple[str, str] | None:
        if not (MIN_FS_HZ <= self.fs_hz <= MAX_FS_HZ):
            return "fs_hz", f"{self.fs_hz:g} Hz is outside {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz"
        if self.channels < 1:
            return "channels", "must be at least 1"
        if not (0 <= self.channel < self.channels):
            return "channel", f"must be 0..{self.channels - 1} (channels = {self.channels})"
        if self.block_frames < 16:
            return "block_frames", "must be at least 16"
        if self.dtype not in DTYPES:
            return "dtype", f"'{self.dtype}' is not one of {', '.join(DTYPES)}"
        if self.listens not in ("breath", "heart", "auto"):
            return "listens", f"'{self.listens}' is not one of breath, heart, auto"
        if self.pace_x < 0:
            return "pace_x", "must be 0 (device-paced) or a positive speed factor"
        return None


register_section("audio", AudioConfig)


def import_sounddevice() -> Any:
    """``sounddevice``, or a clear error when it or the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as e:  # the package is there, the PortAudio shared library is not
        raise UserError(
            f"audio input needs the PortAudio library, which is not installed ({e})",
            "apt-get install libportaudio2",
        ) from None
    except ModuleNotFoundError:
        raise UserError(
            "audio input needs the Python package 'sounddevice'", "pip install sounddevice"
        ) from None
    return sounddevice


def _device(spec: str) -> int | str | None:
    if spec in ("", "default"):
        return None
    return int(spec) if spec.isdigit() else spec


class AudioSource(ThreadedSource):
    """Blocking reads from a PortAudio input in the source's own thread."""

    live = True
    reports_gaps = False  # while the device is away, the daemon's wall clock feeds the gaps

    def __init__(self, cfg: AudioConfig, name: str = "") -> None:
        problem = cfg.validate()
        if problem:
            raise UserError(f"[audio] {problem[0]}: {problem[1]}", "see docs/hardware.md")
        self.cfg = cfg
        self.name = name or f"audio:{cfg.device or 'default'}"
        self.roles: dict[str, float] = {"audio": float(cfg.fs_hz)}
        self._sd = import_sounddevice()
        try:
            info = self._sd.query_devices(_device(cfg.device), "input")
        except (ValueError, self._sd.PortAudioError) as e:
            raise UserError(
                f"audio device '{cfg.device}' not usable for input ({e})",
                "list devices with 'python -m sounddevice' (or 'arecord -l') and set "
                "[audio] device / --audio to a name or index from that list",
            ) from None
        self.device_name = str(info["name"])
        self.state = "starting"
        self.samples = 0
        self.blocks = 0
        self.overflows = 0
        self.errors = 0
        self.last_error = ""

    def status(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "device": self.device_name,
            "fs_hz": self.cfg.fs_hz,
            "state": self.state,
            "samples": self.samples,
            "blocks": self.blocks,
            "overflows": self.overflows,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def _open(self) -> Any:
        c = self.cfg
        stream = self._sd.InputStream(
            device=_device(c.device),
            samplerate=c.fs_hz,
            channels=c.channels,
            dtype=c.dtype,
            blocksize=c.block_frames,
        )
        stream.start()
        return stream

    def _run(self, out: FrameQueue, stop: threading.Event) -> None:
        c = self.cfg
        scale = 1.0 / DTYPES[c.dtype]
        stream: Any = None
        t0 = time.monotonic()
        paced = 0  # samples read since t0 (for pace_x)
        down_since: float | None = None
        try:
            while not stop.is_set():
                if stream is None:
                    try:
                        stream = self._open()
                    except self._sd.PortAudioError as e:
                        self.last_error = str(e)
                        if down_since is None:
                            down_since = time.monotonic()
                            self.state = "lost"
                            log.warning("%s: cannot open audio input (%s); retrying", self.name, e)
                        stop.wait(1.0)
                        continue
                    if down_since is not None:
                        log.warning(
                            "%s: audio input back after %.1f s",
                            self.name,
                            time.monotonic() - down_since,
                        )
                        down_since = None
                    self.state = "reading"
                    t0, paced = time.monotonic(), 0
                try:
                    data, overflowed = stream.read(c.block_frames)
                except self._sd.PortAudioError as e:
                    self.errors += 1
                    self.last_error = str(e)
                    down_since = time.monotonic()
                    self.state = "lost"
                    log.warning("%s: audio input lost (%s); reopening", self.name, e)
                    _close(stream)
                    stream = None
                    continue
                if overflowed:
                    self.overflows += 1
                x = np.asarray(data[:, c.channel], dtype=np.float64) * scale
                out.put(Frame(self.name, {"audio": x}, {}, time.monotonic()))
                self.samples += len(x)
                self.blocks += 1
                if c.pace_x > 0:
                    paced += len(x)
                    ahead = paced / (c.fs_hz * c.pace_x) - (time.monotonic() - t0)
                    if ahead > 0:
                        stop.wait(ahead)
        finally:
            if stream is not None:
                _close(stream)
            self.state = "stopped"


def _close(stream: Any) -> None:
    try:
        stream.stop()
        stream.close()
    except Exception as e:  # a device that vanished may refuse to close; it is gone anyway
        log.debug("closing audio stream: %s", e)
