"""The streaming core on real BIDMC signals: chunk-size invariance, gaps and flat channels,
and input sample rates other than the internal 125 Hz."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from device.estimators.base import Estimator
from device.estimators.beats import BeatIntervalHR
from device.estimators.pulse_modulation import PulseModulationRR
from device.pipeline import Pipeline, run_recording
from device.recording import Recording, read_csv
from device.roles import EstimateKey

#: The bundled excerpt: BIDMC record 09 (sinus rhythm ~77 bpm, clean ECG/PPG/RESP) from 30 s
#: to 240 s, so that these core tests run on a fresh clone without ../shared.
BUNDLED = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"
BUNDLED_START_S = 30.0


@pytest.fixture(scope="module")
def record() -> Recording:
    return read_csv(BUNDLED)


def excerpt(rec: Recording, start_s: float, stop_s: float) -> dict[str, np.ndarray]:
    """Seconds start_s..stop_s of record 09 (times in the original record)."""
    seg = rec.excerpt(start_s - BUNDLED_START_S, stop_s - BUNDLED_START_S)
    return {r: x.copy() for r, x in seg.role_signals().items()}


def feed_in_chunks(
    signals: dict[str, np.ndarray],
    fs_hz: float,
    chunk: int,
    estimators: Callable[[], list[Estimator]] | None = None,
) -> list[dict[str, object]]:
    core = Pipeline(dict.fromkeys(signals, fs_hz), estimators() if estimators else None)
    n = max(len(x) for x in signals.values())
    out = []
    for a in range(0, n, chunk):
        for role, x in signals.items():
            core.feed(role, x[a : a + chunk])
        out.extend(s.vitals.to_record() for s in core.drain())
    return out


def hr_series(signals: dict[str, np.ndarray], fs_hz: float) -> np.ndarray:
    vit = run_recording(signals, fs_hz)
    return np.array([np.nan if v.hr_bpm is None else v.hr_bpm for v in vit])


def test_chunk_size_invariance_all_roles(record: Recording) -> None:
    sig = excerpt(record, 100.0, 145.0)
    assert set(sig) == {"ecg", "ppg", "resp"}
    runs = {c: feed_in_chunks(sig, record.fs_hz, c) for c in (1, 7, 1000)}
    assert len(runs[1]) == 45
    assert runs[1] == runs[7] == runs[1000]
    # the comparison is not vacuous: HR and RR were estimated
    assert sum(r["hr_bpm"] is not None for r in runs[1]) > 30
    assert sum(r["rr_bpm"] is not None for r in runs[1]) > 5


def test_hr_is_published_in_whole_bpm(record: Recording) -> None:
    """HR is rounded to whole bpm (as monitors show it); ``whole_hr=False`` keeps the
    estimator's value, and the two differ by at most half a beat per minute."""
    sig = excerpt(record, 100.0, 140.0)
    whole = [v.hr_bpm for v in run_recording(sig, record.fs_hz)]
    exact = [v.hr_bpm for v in run_recording(sig, record.fs_hz, whole_hr=False)]
    pairs = [(w, e) for w, e in zip(whole, exact, strict=True) if e is not None]
    assert len(pairs) > 25
    assert all(w is not None and w == float(int(w)) and abs(w - e) <= 0.5 for w, e in pairs)
    assert any(e != int(e) for _, e in pairs)  # the estimates themselves are not whole


def test_chunk_size_invariance_with_gap_at_300_hz(record: Recording) -> None:
    ppg = resample_poly(excerpt(record, 100.0, 140.0)["ppg"], 12, 5)  # 125 -> 300 Hz
    ppg[3000:4500] = np.nan
    runs = [feed_in_chunks({"ppg": ppg}, 300.0, c) for c in (1, 7, 1000)]
    assert runs[0] == runs[1] == runs[2]


def test_chunk_size_invariance_of_rr_from_ppg(record: Recording) -> None:
    """RR from the PPG's breathing modulation (the DSP fallback when only a pulse oximeter
    is attached) is chunk-size invariant too."""
    sig = {"ppg": excerpt(record, 100.0, 170.0)["ppg"]}

    def dsp() -> list[Estimator]:
        return [BeatIntervalHR("ppg"), PulseModulationRR("ppg")]

    runs = [feed_in_chunks(sig, record.fs_hz, c, dsp) for c in (1, 7, 1000)]
    assert runs[0] == runs[1] == runs[2]
    assert sum(r["rr_bpm"] is not None and r["rr_source"] == "ppg" for r in runs[0]) > 10


def test_flat_and_absent_channels_give_none_with_quality(record: Recording) -> None:
    n = int(40 * record.fs_hz)
    sig = {
        "ppg": np.full(n, 0.51),  # sensor off: a constant
        "ecg": np.full(n, np.nan),  # lead off / nothing delivered
        "resp": np.full(n, 0.2),
    }
    vit = run_recording(sig, record.fs_hz)
    assert len(vit) == 40
    for v in vit:
        assert v.hr_bpm is None and v.rr_bpm is None
        # every estimator reports a quality (shipped models may add e.g. rr_ppg)
        assert {"hr_ecg", "hr_ppg", "rr_resp"} <= {str(k) for k in v.sqi}
        assert all(0.0 <= q <= 1.0 for q in v.sqi.values())


def test_nan_run_is_a_gap_and_vitals_recover(record: Recording) -> None:
    sig = excerpt(record, 100.0, 190.0)
    for x in sig.values():
        x[int(40 * 125) : int(55 * 125)] = np.nan  # 15 s with every sensor off
    vit = run_recording(sig, record.fs_hz)
    hr = np.array([np.nan if v.hr_bpm is None else v.hr_bpm for v in vit])
    before, during, after = hr[30:40], hr[45:55], hr[65:]
    assert np.isfinite(before).all()
    assert np.isnan(during).all(), "a gap must not produce a made-up heart rate"
    assert np.isfinite(after).all(), "vitals must come back after the gap"
    assert abs(np.median(after) - np.median(before)) < 3.0
    assert all(v.sqi[EstimateKey.parse("hr_ecg")] == 0.0 for v in vit[45:55])


@pytest.mark.parametrize(("role", "fs_in"), [("ppg", 300), ("ppg", 250), ("ppg", 50), ("ecg", 300)])
def test_resampled_input_gives_the_same_heart_rate(
    record: Recording, role: str, fs_in: int
) -> None:
    x = excerpt(record, 100.0, 160.0)[role]
    base = hr_series({role: x}, 125.0)
    up, down = {300: (12, 5), 250: (2, 1), 50: (2, 5)}[fs_in]
    other = hr_series({role: resample_poly(x, up, down)}, float(fs_in))
    both = np.isfinite(base) & np.isfinite(other)
    both[:15] = False
    assert both.sum() > 40
    assert np.max(np.abs(base[both] - other[both])) < 1.0
