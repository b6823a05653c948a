"""AudioSource through real PortAudio/ALSA capture, fed by ALSA's file plugin with a real
breathing recording (see docs/hardware.md and RECIPES: the file device is pulled, not paced).

PortAudio reads the ALSA configuration when it initialises, so each capture runs in a child
process whose HOME holds the ``.asoundrc`` that ``bedside replay --to alsa-raw`` prints.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RRUJO = ROOT.parent / "shared" / "data" / "rrujo" / "Database"
#: Thinklabs stethoscope, 8000 Hz, paced at 10 breaths/min
WAV = RRUJO / "Dataset ThinklabsO" / "10" / "2023022213102.wav"

needs_portaudio = pytest.mark.skipif(
    ctypes.util.find_library("portaudio") is None,
    reason="PortAudio library missing: apt-get install libportaudio2",
)

CAPTURE = textwrap.dedent(
    """
    import json, sys, threading
    import numpy as np
    from device.config import load_config
    from device.monitor import Monitor
    from device.sources.audio import AudioConfig, AudioSource
    from device.sources.base import FrameQueue

    fs, seconds, keep = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    src = AudioSource(AudioConfig(device="bedside_replay", fs_hz=fs, block_frames=1024, pace_x=10))
    q, stop = FrameQueue(), threading.Event()
    mon = Monitor.for_inputs(src.roles, load_config(None))
    src.start(q, stop)
    first, vitals = [], []
    while len(vitals) < seconds:
        f = q.get(timeout=10)
        if f is None:
            sys.exit("no audio frame in 10 s")
        if f.n_lost:  # the core fell behind and the queue dropped: the test fails below
            mon.feed_gap("audio", f.n_lost["audio"])
            continue
        x = f.samples["audio"]
        if sum(map(len, first)) < keep:
            first.append(x)
        mon.feed("audio", x)
        vitals += [m.to_record() for m in mon.step() if m.kind == "vitals"]
    stop.set()
    src.join(5)
    first = np.concatenate(first)[:keep]
    print(json.dumps({"first": first.tolist(), "vitals": vitals, "status": src.status(),
                      "dropped": q.dropped_frames, "roles": src.roles}))
    """
)


def capture(env: dict[str, str], fs: float, seconds: int, keep: int) -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, "-c", CAPTURE, str(fs), str(seconds), str(keep)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.e2e
@needs_portaudio
@pytest.mark.skipif(not WAV.exists(), reason=f"RRuJO recording not found at {WAV}")
def test_capture_from_alsa_file_device_gives_the_paced_breathing_rate(
    alsa_replay_home: Callable[[Path], tuple[dict[str, str], Path]],
) -> None:
    env, raw = alsa_replay_home(WAV)
    pcm = np.fromfile(raw, "<i2")
    seconds = int(len(pcm) / 8000)  # one pass through the file (the device then loops)
    r = capture(env, 8000.0, seconds, keep=20000)
    # what PortAudio delivered is the file, sample for sample
    np.testing.assert_array_equal(np.array(r["first"]), pcm[:20000] / 32768.0)
    assert r["roles"] == {"audio": 8000.0}
    assert r["status"]["overflows"] == 0 and r["dropped"] == 0
    assert r["status"]["samples"] >= seconds * 8000
    rr = [v["rr_bpm"] for v in r["vitals"][30:] if v["rr_bpm"] is not None]
    assert all(v["rr_source"] == "audio" for v in r["vitals"][30:] if v["rr_bpm"] is not None)
    assert len(rr) >= 0.8 * len(r["vitals"][30:])
    assert abs(float(np.median(rr)) - 10.0) < 1.0, rr


@needs_portaudio
def test_unknown_device_is_a_clear_error(tmp_path: Path) -> None:
    code = (
        "from device.errors import UserError\n"
        "from device.sources.audio import AudioConfig, AudioSource\n"
        "try:\n"
        "    AudioSource(AudioConfig(device='no such microphone'))\n"
        "except UserError as e:\n"
        "    print(e.message)\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert "no such microphone" in p.stdout and "python -m sounddevice" in p.stdout


def test_missing_portaudio_library_names_the_package(tmp_path: Path) -> None:
    # sounddevice looks the shared library up with ctypes.util.find_library; a child process in
    # which that lookup finds nothing sees what a machine without libportaudio2 sees
    code = (
        "import ctypes.util\n"
        "ctypes.util.find_library = lambda name: None\n"
        "from device.errors import UserError\n"
        "from device.sources.audio import AudioConfig, AudioSource\n"
        "try:\n"
        "    AudioSource(AudioConfig(device='default'))\n"
        "except UserError as e:\n"
        "    print(e.message)\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    if "PortAudio library" not in p.stdout:
        pytest.skip(f"this sounddevice build finds PortAudio another way: {p.stdout!r}")
    assert "apt-get install libportaudio2" in p.stdout
