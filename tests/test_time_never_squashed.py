"""When the core falls behind a live source, time is never squashed: what the queue must drop
becomes a gap of exactly its length, so the core gives a correct rate or none, never a wrong
one (issue 11, item 1)."""

from __future__ import annotations

import ctypes.util
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from device.sources.base import Frame, FrameQueue
from lab.writers import write_wav_int16

ROOT = Path(__file__).resolve().parents[1]
RATE_BPM = 15.0


def breath_sound(seconds: float, fs: int = 8000, rate_bpm: float = RATE_BPM) -> np.ndarray:
    """Noise in the breath-sound band, loud on inspiration and softer on expiration."""
    rng = np.random.default_rng(1)
    n = int(seconds * fs)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spec[(f < 200) | (f > 900)] = 0
    noise = np.fft.irfft(spec, n)
    noise /= np.std(noise)
    phase = (np.arange(n) / fs) % (60.0 / rate_bpm) / (60.0 / rate_bpm)
    inspiration = np.where(phase < 0.4, np.sin(np.pi * phase / 0.4), 0.0)
    expiration = np.where((phase >= 0.45) & (phase < 0.85), np.sin(np.pi * (phase - 0.45) / 0.4), 0)
    return np.asarray(0.3 * (0.05 + inspiration + 0.5 * expiration) * noise)


def test_a_dropped_frame_becomes_a_gap_of_exactly_its_length() -> None:
    q = FrameQueue(max_s=1.0)
    q.register("mic", {"audio": 100.0})
    sent = [Frame("mic", {"audio": np.full(25, float(i))}) for i in range(12)]  # 3 s of signal
    for frame in sent:
        q.put(frame)
    assert q.queued_s("mic") <= 1.0
    got = []
    while (frame := q.get(timeout=0)) is not None:
        got.append(frame)
    gaps = [f for f in got if f.dropped]
    assert got[: len(gaps)] == gaps, "the gap comes before the frames after it"
    assert all(not f.samples and f.n_lost["audio"] <= 100 for f in gaps)  # <= 1 s each
    assert sum(f.n_lost["audio"] for f in gaps) == 200  # exactly the 8 dropped frames
    kept = [f.samples["audio"] for f in got[len(gaps) :]]
    assert [int(x[0]) for x in kept] == [8, 9, 10, 11]  # the newest are kept, in order
    assert 200 + sum(len(x) for x in kept) == 12 * 25  # nothing added, nothing squashed
    assert q.status()["dropped_s"] == {"mic": 2.0}


def test_frames_of_sources_with_unknown_rates_stay_bounded() -> None:
    q = FrameQueue(max_s=1.0)
    for _ in range(3000):
        q.put(Frame("unregistered", {"ecg": np.zeros(10)}))
    assert q.qsize() <= 2000 and q.dropped_frames >= 1000


@pytest.mark.e2e
@pytest.mark.skipif(
    ctypes.util.find_library("portaudio") is None,
    reason="PortAudio library missing: apt-get install libportaudio2",
)
def test_unpaced_audio_faster_than_the_core_gives_correct_rates_or_none(
    alsa_replay_home: Callable[[Path], tuple[dict[str, str], Path]],
    tmp_path: Path,
    mosquitto,  # type: ignore[no-untyped-def]
    mqtt_listener,  # type: ignore[no-untyped-def]
) -> None:
    wav = tmp_path / "breathing_15.wav"
    write_wav_int16(wav, breath_sound(120.0), 8000)
    env, _raw = alsa_replay_home(wav)
    # the ALSA file device is pulled, not paced: with pace_x = 0 the source reads it as fast
    # as PortAudio gives it, many times faster than the core runs
    cfg = tmp_path / "bedside.toml"
    cfg.write_text(
        f"[bed]\nid = 'fast'\n[audio]\ndevice = 'bedside_replay'\nfs_hz = 8000.0\npace_x = 0.0\n"
        f"[mqtt]\nbroker = '{mosquitto.url}'\n[jsonl]\npath = '{tmp_path / 'out.jsonl'}'\n"
    )
    station = mqtt_listener(mosquitto, "bedside/fast/status")
    proc = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = ""
    try:
        deadline = time.monotonic() + 90
        lines: list[dict[str, object]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1.0)
            out = tmp_path / "out.jsonl"
            text = out.read_text() if out.exists() else ""
            lines = [json.loads(ln) for ln in text.splitlines() if ln.endswith("}")]
            if sum(1 for r in lines if r.get("type") == "vitals") >= 300:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    done = threading.Event()
    done.wait(0.5)
    statuses = [m.json() for m in station.on("/status")]
    dropped_s = max(sum(s["queue"]["dropped_s"].values()) for s in statuses if "queue" in s)
    assert dropped_s > 10.0, "the source was not faster than the core: nothing was dropped"
    vitals = [r for r in lines if r.get("type") == "vitals"]
    assert len(vitals) >= 300
    rates = [float(v["rr_bpm"]) for v in vitals if v["rr_bpm"] is not None]  # type: ignore[arg-type]
    wrong = [r for r in rates if abs(r - RATE_BPM) > 1.5]
    assert not wrong, f"{len(wrong)} wrong rates of {len(rates)}: {wrong[:10]}"
    lost = [
        r
        for r in lines
        if r.get("type") == "alarm"
        and r.get("condition") == "signal_lost"
        and r.get("state") == "active"
    ]
    assert lost, "long stretches of dropped signal must raise signal_lost"
