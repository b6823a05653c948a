"""Each extension seam takes a plug-in defined here, through its registry alone.

- a board format (``device.sources.formats``): bytes from a real pseudo-terminal;
- a source (``device.sources``) and a sink (``device.sinks``): the real daemon between them;
- an alarm condition (``device.alarms``): raised by the core on the bundled recording;
- an estimator (``device.estimators.registry``): serves its key and is named in the vitals.
"""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device import alarms, sinks, sources
from device.alarms import AlarmInputs, Check
from device.config import AlarmsConfig, Config, JsonlConfig, SerialConfig, load_config
from device.daemon import Daemon
from device.estimators import registry
from device.estimators.breaths import BreathIntervalRR
from device.monitor import Message
from device.offline import process_recording
from device.recording import read_csv
from device.roles import EstimateKey, Quantity, Role
from device.sinks.base import Command, Status
from device.sinks.jsonl import JsonlSink
from device.sources import formats
from device.sources.base import Frame, FrameQueue, ThreadedSource
from device.sources.formats.base import BoardFormat
from device.sources.formats.openview import Decoded, FieldSpec, ParserCounters
from device.sources.serial import SerialSource

EXCERPT = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"


@pytest.fixture(scope="module")
def excerpt_signals() -> tuple[dict[str, np.ndarray], float]:
    rec = read_csv(EXCERPT)
    return {r: np.asarray(x) for r, x in rec.role_signals().items()}, rec.fs_hz


# -- a board format: "pipe", one line "ecg|ppg" per sample --------------------------------
class PipeParser:
    def __init__(self, fields: tuple[FieldSpec, ...]) -> None:
        self.fields = fields
        self.counters = ParserCounters()
        self._buf = b""

    def reset(self) -> None:
        self._buf = b""

    def feed(self, data: bytes | bytearray | memoryview) -> Decoded:
        self.counters.bytes += len(data)
        *lines, self._buf = (self._buf + bytes(data)).split(b"\n")
        rows = []
        for ln in lines:
            try:
                rows.append([float(v) for v in ln.split(b"|")])
            except ValueError:
                self.counters.bad_frames += 1
        rows = [r for r in rows if len(r) == len(self.fields)]
        self.counters.good_frames += len(rows)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(self.fields))
        raw = {f.name: table[:, i] for i, f in enumerate(self.fields)}
        signals = {f.role: raw[f.name] for f in self.fields if f.role}
        return Decoded(len(rows), raw, signals)


def _pipe_encode(fields: tuple[FieldSpec, ...], sig: Mapping[str, np.ndarray], **_: Any) -> bytes:
    cols = [np.asarray(sig[f.role]) for f in fields]
    return b"".join(b"|".join(b"%.5f" % v for v in row) + b"\n" for row in zip(*cols, strict=True))


PIPE = BoardFormat(
    key="pipe",
    presets={"two": (FieldSpec("ecg", role="ecg"), FieldSpec("ppg", role="ppg"))},
    default_preset="two",
    check=lambda fields: None,
    parser=PipeParser,
    encode=_pipe_encode,
    sample_offsets=lambda blob: np.zeros(1, dtype=np.int64),
)


@pytest.fixture
def pipe_format(monkeypatch: pytest.MonkeyPatch) -> Iterator[BoardFormat]:
    monkeypatch.setitem(formats.FORMATS, "pipe", "")
    monkeypatch.setitem(formats._LOADED, "pipe", PIPE)
    yield PIPE


def test_board_format_plugin_reads_a_real_pty(
    pipe_format: BoardFormat, excerpt_signals: tuple[dict[str, np.ndarray], float]
) -> None:
    sig, fs = excerpt_signals
    cfg = SerialConfig(format="pipe", fs_hz=fs)
    assert cfg.validate() is None  # the config knows the format through the registry
    master, slave = os.openpty()
    tty.setraw(slave)
    n = 250
    blob = pipe_format.encode(
        formats.layout("pipe"), {"ecg": sig["ecg"][:n], "ppg": sig["ppg"][:n]}
    )
    source = SerialSource(SerialConfig(url=os.ttyname(slave), format="pipe", fs_hz=fs))
    assert source.roles == {"ecg": fs, "ppg": fs}
    out, stop = FrameQueue(), threading.Event()
    source.start(out, stop)
    try:
        deadline = time.monotonic() + 10
        while source.state != "reading" and time.monotonic() < deadline:
            time.sleep(0.02)  # opening a port flushes what was written before
        os.write(master, blob)
        got: dict[str, list[np.ndarray]] = {"ecg": [], "ppg": []}
        deadline = time.monotonic() + 10
        while sum(len(x) for x in got["ecg"]) < n and time.monotonic() < deadline:
            frame = out.get(timeout=0.2)
            if frame is not None:
                for role, x in frame.samples.items():
                    got[role].append(x)
    finally:
        stop.set()
        source.join(5)
        os.close(master)
        os.close(slave)
    ecg = np.concatenate(got["ecg"])
    assert len(ecg) == n
    assert np.allclose(ecg, sig["ecg"][:n], atol=1e-5)


# -- a source and a sink, with the real daemon between them ------------------------------
@dataclass
class LoopConfig:
    seconds: float = 40.0


class ExcerptSource(ThreadedSource):
    """Delivers the first ``seconds`` of the bundled excerpt as fast as the core takes it."""

    live = False

    def __init__(self, cfg: LoopConfig) -> None:
        rec = read_csv(EXCERPT)
        self.name = "excerpt"
        n = int(cfg.seconds * rec.fs_hz)
        self._signals = {r: np.asarray(x)[:n] for r, x in rec.role_signals().items()}
        self.roles = dict.fromkeys(self._signals, rec.fs_hz)
        self._done = threading.Event()

    @classmethod
    def from_config(cls, section: LoopConfig, cfg: Config) -> ExcerptSource:
        return cls(section)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def status(self) -> dict[str, Any]:
        return {"finished": self.finished}

    def _run(self, out: FrameQueue, stop: threading.Event) -> None:
        n = len(next(iter(self._signals.values())))
        for a in range(0, n, 125):
            while out.queued_s(self.name) > 2.0 and not stop.is_set():
                stop.wait(0.01)  # a file can wait for the core (a live board cannot)
            out.put(Frame(self.name, {r: x[a : a + 125] for r, x in self._signals.items()}))
        self._done.set()


class MemorySink:
    key = "memory"
    threaded = False
    heartbeat = None
    tried = True

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.statuses: list[Status] = []
        self.stopped = ""

    def start(self) -> None:
        pass

    def send(self, msg: Message, ts: float) -> None:
        self.messages.append(msg)

    def set_status(self, status: Status) -> None:
        self.statuses.append(status)

    def poll(self) -> list[Command]:
        return []

    def counters(self) -> dict[str, Any]:
        return {"messages": len(self.messages)}

    def stop(self, reason: str = "stopped") -> None:
        self.stopped = reason


def test_source_and_sink_plugins_run_in_the_daemon(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    memory = MemorySink()
    monkeypatch.setitem(
        sources.SOURCES,
        "excerpt",
        sources.SourceType(f"{__name__}:ExcerptSource", lambda c: LoopConfig(), lambda s: True),
    )
    monkeypatch.setitem(sinks.SINKS, "memory", lambda cfg: memory)
    cfg = load_config(None)
    cfg.mqtt.enabled = False
    cfg.jsonl = JsonlConfig(path=str(tmp_path / "record.jsonl"), append=False)
    built_sources = sources.build_sources(cfg)
    built_sinks = sinks.build_sinks(cfg)
    assert [s.name for s in built_sources] == ["excerpt"]
    assert [s.key for s in built_sinks] == ["jsonl", "memory"]
    assert isinstance(built_sinks[0], JsonlSink)
    Daemon(cfg, built_sources, built_sinks).run()
    vitals = [m for m in memory.messages if m.kind == "vitals"]
    assert len(vitals) == 40
    assert sum(v.hr_bpm is not None for v in vitals) > 25
    assert memory.stopped == "stopped" and memory.statuses[-1].t_s == 40.0
    assert memory.statuses[-1].to_payload()["memory"] == {"messages": 40}
    lines = (tmp_path / "record.jsonl").read_text().splitlines()
    assert len(lines) == 40  # the jsonl sink saw the same messages


# -- an alarm condition -------------------------------------------------------------------
@dataclass(frozen=True)
class FastForSlowBreathing:
    """HR more than ``ratio`` times RR (for the test: a condition the quiet excerpt meets)."""

    key: str = "hr_rr_ratio"
    technical: bool = False
    ratio: float = 3.5

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> list[Check]:
        if inp.hr_bpm is None or inp.rr_bpm is None:
            return [Check((self.key, None), False, False, None, self.ratio, "", "low",
                          unknown=True)]  # fmt: skip
        r = inp.hr_bpm / inp.rr_bpm
        return [
            Check((self.key, None), r > self.ratio, r > self.ratio, round(r, 2), self.ratio,
                  "", "low", delay_s=3.0)
        ]  # fmt: skip


def test_alarm_condition_plugin_is_raised_by_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(alarms.CONDITIONS, "hr_rr_ratio", FastForSlowBreathing())
    cfg = load_config(None)
    cfg.alarms.enabled = [*cfg.alarms.enabled, "hr_rr_ratio"]
    assert cfg.alarms.validate() is None
    out = [m.to_record() for m in process_recording(read_csv(EXCERPT).excerpt(0, 60), cfg)]
    (alarm,) = [r for r in out if r["type"] == "alarm"]
    assert alarm["condition"] == "hr_rr_ratio" and alarm["state"] == "active"
    assert alarm["value"] > 3.5 and alarm["priority"] == "low"


# -- an estimator -------------------------------------------------------------------------
def test_estimator_plugin_serves_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = EstimateKey(Quantity.RR, Role.RESP)

    def short_window(role: Role) -> BreathIntervalRR:
        return BreathIntervalRR(role, name="resp_20s", window_s=20.0)

    monkeypatch.setitem(
        registry.SIGNAL_ESTIMATORS, key, registry.SignalEstimator(key, build=short_window)
    )
    out = [
        m.to_record()
        for m in process_recording(read_csv(EXCERPT).excerpt(0, 60), load_config(None))
    ]
    rr = [r for r in out if r["type"] == "vitals" and r["rr_bpm"] is not None]
    assert rr and {r["rr_model"] for r in rr} == {"resp_20s"}
    # and it is the one signal-processing baseline `bedside train` would compare against
    assert registry.signal_estimator(key).name == "resp_20s"
