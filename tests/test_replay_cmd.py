"""``bedside replay``: a real subprocess writing a recording into a pty (read back by the real
SerialSource and Monitor) or into raw PCM for ALSA's file plugin."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.config import load_config
from device.monitor import Monitor
from device.sources.base import FrameQueue
from device.sources.serial import SerialConfig, SerialSource
from lab.reference import load_bidmc_reference

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: BIDMC record 02 from the shared data when present, else the bundled excerpt of record 09
#: (so a fresh clone runs these real-port tests too); both come with their monitor HR.
SHARED_RECORD = DATA / "bidmc" / "bidmc_csv" / "bidmc_02_Signals.csv.gz"
BUNDLED_RECORD = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"
RECORD = SHARED_RECORD if SHARED_RECORD.exists() else BUNDLED_RECORD
needs_bidmc = pytest.mark.skipif(not RECORD.exists(), reason=f"BIDMC record not found at {RECORD}")


def bedside(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "device", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def read_vitals(
    cfg: SerialConfig, seconds: int, timeout_s: float
) -> tuple[list[Any], dict[str, Any]]:
    source = SerialSource(cfg)
    q = FrameQueue()
    stop = threading.Event()
    mon = Monitor.for_inputs(source.roles, load_config(None))
    vitals: list[Any] = []
    source.start(q, stop)
    deadline = time.monotonic() + timeout_s
    try:
        while len(vitals) < seconds and time.monotonic() < deadline:
            f = q.get(timeout=0.1)
            if f is None:
                continue
            for role, x in f.samples.items():
                mon.feed(role, x)
            for role, n in f.n_lost.items():
                mon.feed_gap(role, n)
            vitals.extend(m for m in mon.step() if m.kind == "vitals")
    finally:
        stop.set()
        source.join(5)
    return vitals, source.status()


@pytest.mark.slow
@pytest.mark.e2e
@needs_bidmc
@pytest.mark.parametrize(("fmt", "rate"), [("openview", None), ("text", 250)])
def test_replay_into_pty_is_read_back_with_reference_hr(fmt: str, rate: int | None) -> None:
    duration = 30
    args = [
        "replay",
        str(RECORD),
        "--to",
        "pty",
        "--format",
        fmt,
        "--speed",
        "6",
        "--duration",
        str(duration),
    ]
    if rate:
        args += ["--rate", str(rate)]
    proc = bedside(*args)
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/pts/"), path
        cfg = SerialConfig(url=path, format=fmt, fs_hz=float(rate or 125))
        vitals, status = read_vitals(cfg, seconds=duration - 2, timeout_s=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "done:" in err
    assert status["bad_frames"] == 0 and status["good_frames"] > 0
    ref = load_bidmc_reference(RECORD, duration_s=duration)
    errs = [abs(v.hr_bpm - ref.hr_bpm[int(v.t_s)]) for v in vitals[12:] if v.hr_bpm is not None]
    assert len(errs) >= len(vitals[12:]) - 2
    assert float(np.mean(errs)) < 3.0, errs


def test_alsa_raw_is_the_wavs_pcm_and_prints_the_asoundrc_entry(tmp_path: Path) -> None:
    fs = 4000
    t = np.arange(fs * 2) / fs
    x = 0.5 * np.sin(2 * np.pi * 300 * t)
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(fs)
        w.writeframes(np.round(x * 32767).astype("<i2").tobytes())
    raw = tmp_path / "tone.raw"
    proc = bedside("replay", str(wav), "--to", "alsa-raw", str(raw))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    np.testing.assert_array_equal(np.fromfile(raw, "<i2"), np.round(x * 32767).astype("<i2"))
    assert f'infile "{raw.resolve()}"' in out and "pcm.bedside_replay" in out and "4000 Hz" in out
    # resampled for a capture rate of 8000 Hz
    raw2 = tmp_path / "tone8k.raw"
    proc = bedside("replay", str(wav), "--to", "alsa-raw", str(raw2), "--rate", "8000")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    y = np.fromfile(raw2, "<i2").astype(np.float64) / 32767
    assert len(y) == 2 * len(x)
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 8000 / len(y) - 300) < 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "alsa-raw"], "needs the output file"),
        (["--to", "pty", "--speed", "0"], "--speed"),
        (["--to", "pty", "--rate", "1000"], "not a sensor-board rate"),
        (["--to", "/nonexistent/ttyX"], "cannot open serial port"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], message: str) -> None:
    rec = RECORD if RECORD.exists() else ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
    if not rec.exists():
        pytest.skip("no BIDMC recording available")
    proc = bedside("replay", str(rec), *args, "--duration", "5")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
