"""BreathSoundRR: respiratory rate from breathing sounds (real RRuJO recordings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.estimators.audio import AUDIO_FS_HZ, BreathSoundRR, breath_rate
from device.pipeline import Pipeline
from device.recording import read_wav
from device.roles import EstimateKey

RRUJO = Path(__file__).resolve().parents[2] / "shared" / "data" / "rrujo" / "Database"
#: a 4500 Hz ESP32/INMP441 recording paced at 12 breaths/min and a Thinklabs one at 8000 Hz
#: paced at 10/min, picked among files the bench scores well (clean recordings: a regression
#: check); bench/audio_rr.py measures the whole set
FILES = {
    "RRinervasO/12": RRUJO / "Dataset RRinervasO" / "12" / "2023030118491.wav",
    "ThinklabsO/10": RRUJO / "Dataset ThinklabsO" / "10" / "2023022213102.wav",
}
needs_rrujo = pytest.mark.skipif(
    not all(p.exists() for p in FILES.values()), reason=f"RRuJO recordings not found under {RRUJO}"
)


RR_AUDIO = EstimateKey.parse("rr_audio")


def run(x: np.ndarray, fs: float, chunk: int) -> list[tuple[float | None, float]]:
    core = Pipeline({"audio": fs}, [BreathSoundRR("audio")])
    out = []
    for a in range(0, len(x), chunk):
        core.feed("audio", x[a : a + chunk])
        out.extend((s.vitals.rr_bpm, s.vitals.sqi[RR_AUDIO]) for s in core.drain())
    return out


@pytest.mark.slow
@needs_rrujo
@pytest.mark.parametrize("key", list(FILES))
def test_paced_rate_is_found(key: str) -> None:
    rec = read_wav(FILES[key])
    paced = float(key.split("/")[1])
    out = run(rec.role("audio"), rec.fs_hz, 4096)
    assert len(out) == int(rec.duration_s)
    values = [v for v, _ in out[30:] if v is not None]
    assert len(values) >= 0.9 * len(out[30:])
    assert abs(float(np.median(values)) - paced) < 1.0, values
    assert all(v is None for v, _ in out[:19])  # less than 20 s of sound: no answer


@pytest.mark.slow
@needs_rrujo
def test_chunk_size_does_not_change_the_output() -> None:
    rec = read_wav(FILES["RRinervasO/12"]).excerpt(0, 34)
    x = rec.role("audio")
    ref = run(x, rec.fs_hz, 1000)
    assert run(x, rec.fs_hz, 7) == ref
    assert run(x, rec.fs_hz, len(x)) == ref
    assert any(v is not None for v, _ in ref)


@pytest.mark.slow
@needs_rrujo
def test_gaps_and_silence_give_no_rate() -> None:
    rec = read_wav(FILES["RRinervasO/12"])
    x = rec.role("audio").copy()
    x[int(20 * rec.fs_hz) : int(30 * rec.fs_hz)] = np.nan  # 10 s of a 30 s window lost
    out = run(x, rec.fs_hz, 4096)
    assert all(v is None for v, _ in out[29:40])
    est = BreathSoundRR()
    est.push(np.zeros(int(40 * AUDIO_FS_HZ)))
    assert est.estimate(40.0).value is None


def test_harmonic_sum_finds_the_fundamental_of_a_two_bump_breath() -> None:
    # inspiration and expiration both loud: two bumps per 5 s breath (12/min); the envelope's
    # strongest line is at 24/min, the harmonic sum must still say 12
    fs = 10.0
    t = np.arange(300) / fs
    phase = (t % 5.0) / 5.0
    env = np.exp(-(((phase - 0.2) / 0.08) ** 2)) + 0.7 * np.exp(-(((phase - 0.65) / 0.1) ** 2))
    rr, q = breath_rate(env, fs)
    assert rr is not None and abs(rr - 12.0) < 0.3 and q > 0.7
