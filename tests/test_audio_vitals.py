"""Audio vitals: polyphase decimation, breath-sound RR, heart-sound HR, what the channel
listens to, and the audio path through the streaming core and ``bedside process``.

Real recordings: the bundled RRuJO excerpt (``device/data/rrujo_thinklabs_paced12.wav``, a
Thinklabs stethoscope, paced at 12 breaths/min, 2000 Hz) always; the RRuJO set and the
phonocardiogram ``pcg/pcg_1.wav`` (with its ECG R-peak times) from ``../shared/data`` when
present (the phonocardiogram is GPL-licensed and is never copied into the project).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from device.dsp.audio_features import AUDIO_FS_HZ, BreathBands, HeartEnvelope
from device.dsp.polyphase import AudioStream, GapDecimator, PolyphaseResampler, plan_stages
from device.estimators.audio_vitals import audio_estimators
from device.estimators.breath_sounds import BreathSoundsRR, load_octave_model
from device.estimators.heart_sounds import HeartSoundsHR, heart_rate
from device.pipeline import Pipeline
from device.recording import read_wav
from device.sources.audio import AudioConfig

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "device" / "data"
#: ``../shared/data`` beside the checkout, or BEDSIDE_SHARED_DATA (as in conftest.py)
SHARED_DATA = Path(os.environ.get("BEDSIDE_SHARED_DATA") or ROOT.parent / "shared" / "data")
EXCERPT = DATA_DIR / "rrujo_thinklabs_paced12.wav"
PACED = 12.0
RRUJO = SHARED_DATA / "rrujo" / "Database"
PCG = SHARED_DATA / "pcg"
needs_rrujo = pytest.mark.skipif(not RRUJO.is_dir(), reason=f"no RRuJO set at {RRUJO}")
needs_pcg = pytest.mark.skipif(not (PCG / "pcg_1.wav").exists(), reason=f"no pcg_1 at {PCG}")


def resampled(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    r = Fraction(fs_out / fs_in).limit_denominator(1000)
    return np.asarray(resample_poly(x, r.numerator, r.denominator))


def vitals(x: np.ndarray, fs: float, chunk: int, listens: str = "auto") -> list[tuple]:
    core = Pipeline({"audio": fs}, audio_estimators(listens))
    out = []
    for a in range(0, len(x), chunk):
        core.feed("audio", x[a : a + chunk])
        out.extend(
            (v.t_s, v.rr_bpm, v.hr_bpm, v.rr_source, v.hr_source, tuple(sorted(v.sqi.items())))
            for v in (s.vitals for s in core.drain())
        )
    return out


# -- polyphase decimation -----------------------------------------------------------------
RATES = (1000.0, 3000.0, 4500.0, 8000.0, 11025.0, 44100.0, 48000.0)


@pytest.mark.parametrize("fs", RATES)
def test_decimator_is_chunk_size_invariant_and_gaps_stay_aligned(fs: float) -> None:
    rng = np.random.default_rng(int(fs))
    x = rng.standard_normal(min(int(fs * 1.5), 12000))
    bad = rng.random(len(x)) < 0.002
    ref = PolyphaseResampler(fs, AUDIO_FS_HZ)(x)
    assert abs(len(ref) - len(x) * AUDIO_FS_HZ / fs) <= 1
    for chunk in (1, 7, 1000, 4096):
        d, g = PolyphaseResampler(fs, AUDIO_FS_HZ), GapDecimator(fs, AUDIO_FS_HZ)
        ys, gs = [], []
        for a in range(0, len(x), chunk):
            ys.append(d(x[a : a + chunk]))
            gs.append(g(bad[a : a + chunk]))
            assert len(ys[-1]) == len(gs[-1])
        assert np.array_equal(np.concatenate(ys), ref)
    assert np.concatenate(gs).sum() > 0


@pytest.mark.parametrize("fs", (4500.0, 8000.0, 44100.0, 48000.0))
def test_decimator_keeps_the_band_and_rejects_what_would_alias_into_it(fs: float) -> None:
    t = np.arange(int(fs * 1.0)) / fs
    for f in (100.0, 450.0, 880.0):  # pass band: flat
        y = PolyphaseResampler(fs, AUDIO_FS_HZ)(np.sin(2 * np.pi * f * t))[200:]
        assert abs(np.sqrt(2) * y.std() - 1.0) < 0.005, f
    # tones that fold into 0-900 Hz at 2 kHz: 1100-2900 Hz and around multiples of 2 kHz
    for f in (1150.0, 1600.0, 2900.0, 4100.0, fs / 2 - 150):
        if f >= fs / 2:
            continue
        y = PolyphaseResampler(fs, AUDIO_FS_HZ)(np.sin(2 * np.pi * f * t))[200:]
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) / (np.hanning(len(y)).sum() / 2)
        band = np.fft.rfftfreq(len(y), 1 / AUDIO_FS_HZ) <= 900
        assert 20 * np.log10(spec[band].max() + 1e-15) < -65, f


def test_stage_plans() -> None:
    assert plan_stages(2000, 2000) == []
    assert plan_stages(48000, 2000) == [(48000.0, 1, 6), (8000.0, 1, 4)]
    assert plan_stages(4500, 2000) == [(4500.0, 4, 9)]
    assert plan_stages(1000, 2000) == [(1000.0, 2, 1)]


def test_audio_stream_marks_gaps() -> None:
    s = AudioStream("audio", 8000.0, AUDIO_FS_HZ)
    x = np.random.default_rng(0).standard_normal(16000)
    x[4000:6000] = np.nan  # 0.25 s lost
    y = s(x)
    assert len(y) == 4000
    assert 480 <= np.isnan(y).sum() <= 520
    assert np.isfinite(y[:900]).all() and np.isfinite(y[1600:]).all()


# -- features -----------------------------------------------------------------------------
def test_features_are_chunk_size_invariant() -> None:
    x = read_wav(EXCERPT).role("audio")[: int(5 * AUDIO_FS_HZ)]
    ref_b, ref_h = BreathBands().push(x)[0], HeartEnvelope().push(x)[0]
    for chunk in (1, 7, 1000):
        b, h = BreathBands(), HeartEnvelope()
        bs = [b.push(x[a : a + chunk])[0] for a in range(0, len(x), chunk)]
        hs = [h.push(x[a : a + chunk])[0] for a in range(0, len(x), chunk)]
        assert np.array_equal(np.concatenate(bs), ref_b)
        assert np.array_equal(np.concatenate(hs), ref_h)


# -- the audio path through the core --------------------------------------------------------
def test_audio_path_is_chunk_size_invariant() -> None:
    rec = read_wav(EXCERPT).excerpt(0, 33)
    x = resampled(rec.role("audio"), rec.fs_hz, 4500.0)  # the rational polyphase path
    ref = vitals(x, 4500.0, 4096)
    assert len(ref) == 33
    assert any(v[1] is not None for v in ref)
    for chunk in (1, 7, 1000):
        assert vitals(x, 4500.0, chunk) == ref, chunk


@pytest.mark.parametrize("fs", (2000.0, 8000.0, 48000.0))
def test_bundled_excerpt_gives_its_paced_rate(fs: float) -> None:
    rec = read_wav(EXCERPT)
    x = rec.role("audio") if fs == rec.fs_hz else resampled(rec.role("audio"), rec.fs_hz, fs)
    out = vitals(x, fs, 1024)
    assert len(out) == 60
    assert all(v[1] is None for v in out[:29])  # less than a 30 s window: no answer
    rr = [v[1] for v in out[31:]]
    values = [r for r in rr if r is not None]
    assert len(values) >= 0.9 * len(rr)
    assert all(abs(r - PACED) < 1.0 for r in values), values
    assert all(v[3] == "audio" for v in out[31:] if v[1] is not None)


def test_a_looped_recording_does_not_invent_a_rate() -> None:
    # live capture from an ALSA file device loops the file: the jump at each loop point must
    # not create a rhythm (the issue saw RR 43.7 from a Thinklabs recording paced at 12)
    rec = read_wav(EXCERPT)
    looped = np.tile(rec.role("audio"), 4)  # 240 s, three loop points
    out = vitals(looped, rec.fs_hz, 1024)
    rr = [v[1] for v in out[31:]]
    values = [r for r in rr if r is not None]
    assert len(values) >= 0.8 * len(rr)
    assert all(abs(r - PACED) < 1.5 for r in values), sorted(values)
    assert all(v[2] is None for v in out)  # no heart rate from breath sounds either


def test_noise_and_silence_give_no_vitals() -> None:
    rng = np.random.default_rng(3)
    fs = 8000.0
    n = int(45 * fs)
    white = 0.05 * rng.standard_normal(n)
    # noise whose loudness swells like breathing (two bursts per 5 s) but carries no heart
    t = np.arange(n) / fs
    swell = 0.2 + np.abs(np.sin(np.pi * t / 2.5)) ** 2
    breath_like = swell * resampled(rng.standard_normal(int(45 * 4000)), 4000, fs)[:n] * 0.05
    for x in (white, np.zeros(n), breath_like):
        out = vitals(x, fs, 4096)
        assert all(v[2] is None for v in out), "a heart rate from noise"
        if x is not breath_like:
            assert all(v[1] is None for v in out), "a breathing rate from noise or silence"


def test_gaps_give_no_rate() -> None:
    rec = read_wav(EXCERPT)
    x = rec.role("audio").copy()
    x[int(35 * rec.fs_hz) : int(45 * rec.fs_hz)] = np.nan  # 10 s lost
    out = vitals(x, rec.fs_hz, 1024)
    assert out[34][1] is not None  # t = 35 s: before the gap
    # from 4 s into the gap on, more than 10 % of the 30 s window is missing
    assert [v[0] for v in out if v[1] is not None and v[0] >= 39] == []


def test_listens_selects_the_estimators() -> None:
    assert [e.quantity for e in audio_estimators("breath")] == ["rr"]
    assert [e.quantity for e in audio_estimators("heart")] == ["hr"]
    both = audio_estimators("auto")
    assert [e.quantity for e in both] == ["hr", "rr"]  # heart first: breath checks against it
    assert isinstance(both[1], BreathSoundsRR) and both[1].heart is both[0]
    with pytest.raises(ValueError):
        audio_estimators("lungs")
    assert AudioConfig(listens="heart").validate() is None
    assert AudioConfig(listens="both").validate() == (
        "listens",
        "'both' is not one of breath, heart, auto",
    )


def test_breath_estimator_refuses_the_heart_rhythm() -> None:
    class Heart:
        def __init__(self, hr: float | None) -> None:
            self.hr = hr

        def recent_hr(self) -> float | None:
            return self.hr

    x = read_wav(EXCERPT).role("audio")
    got = {}
    for hr in (None, 2 * PACED, 70.0):
        est = BreathSoundsRR(heart=Heart(hr))
        est.push(x[: int(45 * AUDIO_FS_HZ)])
        got[hr] = est.estimate(45.0).value
    assert got[None] is not None and abs(got[None] - PACED) < 1
    assert got[2 * PACED] is None  # the "breathing" rate would be half the heart rate
    assert got[70.0] == got[None]


def test_shipped_octave_classifier_matches_the_estimator() -> None:
    model = load_octave_model()
    assert len(model["weights"]) == 3 and len(model["weights"][0]) == len(model["features"])
    assert model["trained_on"]["subjects"] >= 20


def test_bedside_process_gives_audio_rr_from_the_bundled_excerpt(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "device", "process", str(EXCERPT), "--jsonl", "-"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    ).stdout
    recs = [json.loads(line) for line in out.splitlines() if line.strip()]
    vit = [r for r in recs if r.get("type") == "vitals"]
    assert len(vit) == 60
    scored = [r for r in vit if r["t_s"] >= 32]
    rr = [r["rr_bpm"] for r in scored if r["rr_bpm"] is not None]
    assert len(rr) >= 0.9 * len(scored)
    assert all(r["rr_source"] == "audio" for r in scored if r["rr_bpm"] is not None)
    assert abs(float(np.median(rr)) - PACED) < 0.5
    assert all("rr_audio" in r["sqi"] for r in scored)


# -- heart sounds: the one real phonocardiogram ----------------------------------------------
def _pcg() -> tuple[np.ndarray, float, np.ndarray]:
    rec = read_wav(PCG / "pcg_1.wav")
    lines = (PCG / "annotations.csv").read_text().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    peaks = np.array([float(v) for v in row[header.index("rpeak_times_s")].split()])
    return rec.role("audio"), rec.fs_hz, peaks


def _reference_hr(peaks: np.ndarray, t0: float, t1: float) -> float | None:
    p = peaks[(peaks >= t0) & (peaks <= t1)]
    return 60.0 / float(np.mean(np.diff(p))) if len(p) >= 3 else None


@needs_pcg
def test_heart_rate_from_a_phonocardiogram_matches_the_ecg() -> None:
    x, fs, peaks = _pcg()
    out = vitals(x, fs, 1000, listens="heart")  # 1 kHz: interpolated to the 2 kHz core
    errs, n = [], 0
    for t, _, hr, *_ in out:
        ref = _reference_hr(peaks, t - 8.0, t)
        if t < 8 or ref is None:
            continue
        n += 1
        if hr is not None:
            errs.append(abs(hr - ref))
    assert n >= 20
    assert len(errs) >= 0.9 * n
    assert float(np.mean(errs)) <= 2.0, errs


@needs_pcg
@pytest.mark.parametrize("window_s", (4.0, 6.0))
def test_heart_rate_on_windows_shorter_than_10_s(window_s: float) -> None:
    x, fs, peaks = _pcg()
    env, _ = HeartEnvelope().push(PolyphaseResampler(fs, AUDIO_FS_HZ)(x))
    errs, n = [], 0
    for t in range(int(window_s), 29):
        ref = _reference_hr(peaks, t - window_s, t)
        if ref is None:
            continue
        n += 1
        hr, q = heart_rate(env[int((t - window_s) * 100) : t * 100])
        if hr is not None and q >= HeartSoundsHR().min_quality:
            errs.append(abs(hr - ref))
    assert len(errs) >= 0.85 * n
    assert float(np.mean(errs)) <= 2.0
    assert max(errs) < 5.0  # never double or half


@needs_pcg
def test_a_short_phonocardiogram_gives_a_heart_rate() -> None:
    x, fs, peaks = _pcg()
    seg = x[: int(7 * fs)]  # 7 s: shorter than the 8 s window
    out = vitals(seg, fs, 1000, listens="heart")
    hrs = [v[2] for v in out if v[2] is not None]
    assert hrs and all(abs(h - _reference_hr(peaks, 0, 7)) <= 2 for h in hrs)  # type: ignore[operator]


# -- the RRuJO set -------------------------------------------------------------------------
@pytest.mark.slow
@needs_rrujo
def test_looped_thinklabs_recordings_paced_at_12_stay_near_12() -> None:
    files = sorted((RRUJO / "Dataset ThinklabsO" / "12").glob("*.wav"))
    assert len(files) >= 20
    far = total = 0
    for f in files:
        rec = read_wav(f)
        out = vitals(np.tile(rec.role("audio"), 3), rec.fs_hz, 4096)
        values = [v[1] for v in out if v[1] is not None]
        total += len(values)
        far += sum(abs(r - PACED) > 3 for r in values)
        assert all(r < 30 for r in values), (f.name, max(values))  # never the heart's rhythm
    assert far <= 0.05 * total


@pytest.mark.slow
@needs_rrujo
def test_breath_sound_recordings_rarely_give_a_heart_rate() -> None:
    # RRuJO records breathing; a heart is audible in a few files only (no ECG to check them)
    files = sorted(RRUJO.glob("Dataset RRinervasO/*/*.wav"))[::3]
    with_hr = seconds = 0
    for f in files:
        rec = read_wav(f)
        out = vitals(rec.role("audio"), rec.fs_hz, 4096)
        seconds += len(out)
        with_hr += sum(v[2] is not None for v in out)
    assert with_hr <= 0.03 * seconds


def test_config_listens_reaches_the_core(tmp_path: Path) -> None:
    cfg = tmp_path / "bedside.toml"
    cfg.write_text('[audio]\nlistens = "heart"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "device", "process", str(EXCERPT), "--config", str(cfg)]
        + ["--jsonl", "-"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    vit = [json.loads(ln) for ln in out.splitlines() if '"vitals"' in ln]
    assert vit and all(set(v["sqi"]) == {"hr_audio"} for v in vit)  # no breath estimator
    assert all(v["rr_bpm"] is None for v in vit)
