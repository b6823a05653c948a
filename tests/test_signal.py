"""The numpy-only filters and peak finder the device runs (device/dsp/filters.py and
device/dsp/peaks.py) against scipy.signal, on real BIDMC signals and on random ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from device.dsp.filters import butter_sos, sos_filter, sos_steady_state
from device.dsp.peaks import find_peaks

BIDMC = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"

DESIGNS = [
    (2, (0.5, 8.0), 125.0, "bandpass"),
    (2, (5.0, 30.0), 125.0, "bandpass"),
    (2, (0.08, 1.0), 25.0, "bandpass"),
    (3, (150.0, 800.0), 2000.0, "bandpass"),
    (6, 50.0, 500.0, "lowpass"),
    (1, 10.0, 125.0, "lowpass"),
    (3, 0.7, 25.0, "highpass"),
    (2, 0.5, 125.0, "highpass"),
]


@pytest.mark.parametrize(("order", "cutoff", "fs", "btype"), DESIGNS)
def test_butterworth_matches_scipy(
    order: int, cutoff: float | tuple[float, float], fs: float, btype: str
) -> None:
    ours = butter_sos(order, cutoff, fs, btype)
    ref = signal.butter(order, cutoff, btype=btype, fs=fs, output="sos")
    _, h_ours = signal.sosfreqz(ours, worN=4096, fs=fs)
    _, h_ref = signal.sosfreqz(ref, worN=4096, fs=fs)
    assert np.max(np.abs(h_ours - h_ref)) < 1e-9
    x = np.random.default_rng(order).standard_normal(3000) + 5.0
    y_ours, _ = sos_filter(ours, x, sos_steady_state(ours) * x[0])
    y_ref, _ = signal.sosfilt(ref, x, zi=signal.sosfilt_zi(ref) * x[0])
    assert np.max(np.abs(y_ours - y_ref)) < 1e-9


def test_filter_state_carries_across_chunks_exactly() -> None:
    sos = butter_sos(2, (0.5, 8.0), 125.0, "bandpass")
    x = np.random.default_rng(0).standard_normal(1000)
    whole, _ = sos_filter(sos, x, sos_steady_state(sos) * x[0])
    zi = sos_steady_state(sos) * x[0]
    parts = []
    for a in range(0, 1000, 7):
        y, zi = sos_filter(sos, x[a : a + 7], zi)
        parts.append(y)
    assert np.array_equal(np.concatenate(parts), whole)


def test_bad_designs_are_refused() -> None:
    with pytest.raises(ValueError, match="Nyquist"):
        butter_sos(2, 70.0, 125.0, "lowpass")
    with pytest.raises(ValueError, match="btype"):
        butter_sos(2, 10.0, 125.0, "notch")


def real_windows() -> list[np.ndarray]:
    from device.recording import read_csv

    if not BIDMC.exists():
        pytest.skip(f"bundled excerpt missing at {BIDMC}")
    rec = read_csv(BIDMC)
    return [
        rec.role(r)[a : a + 1250]
        for r in ("ppg", "ecg", "resp")
        for a in range(0, rec.n_samples - 1250, 2500)
    ]


def test_peaks_match_scipy_on_real_signals() -> None:
    for w in real_windows():
        spread = float(np.ptp(w))
        for kw in ({}, {"prominence": 0.3 * spread}, {"height": float(np.percentile(w, 80))}):
            p_ref, q_ref = signal.find_peaks(w, **kw)
            p_ours, q_ours = find_peaks(w, **kw)
            assert np.array_equal(p_ours, p_ref), kw
            if "prominences" in q_ref:
                assert np.allclose(q_ours["prominences"], q_ref["prominences"])
        # with a distance, equal-valued neighbours (8-bit BIDMC samples tie often) may be kept
        # in a different order than scipy's unstable sort keeps them: same number of peaks and
        # the same peak values
        for kw in ({"distance": 34}, {"distance": 40, "prominence": 0.2 * spread}):
            p_ref, _ = signal.find_peaks(w, **kw)
            p_ours, _ = find_peaks(w, **kw)
            assert len(p_ours) == len(p_ref) and np.array_equal(
                np.sort(w[p_ours]), np.sort(w[p_ref])
            ), kw


def test_peaks_match_scipy_on_random_quantised_signals() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        w = np.round(rng.standard_normal(200) * 3)  # many ties and flat tops
        for kw in ({}, {"prominence": 2.0}, {"height": 1.0}):
            assert np.array_equal(find_peaks(w, **kw)[0], signal.find_peaks(w, **kw)[0]), kw
