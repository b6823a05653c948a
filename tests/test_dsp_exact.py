"""The vectorised DSP helpers give exactly what their plain per-element definitions give
(the estimators' decisions, and so the golden outputs, depend on every bit)."""

from __future__ import annotations

import numpy as np
import pytest

from device.dsp.peaks import find_peaks, local_maxima, prominences


def _prominences_by_definition(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """One peak at a time: the higher of the two lowest points reached on either side before
    meeting a higher sample (or the edge), subtracted from the peak."""
    out = np.empty(len(peaks))
    for i, pk in enumerate(peaks):
        v = x[pk]
        left = x[:pk][::-1]
        higher = np.flatnonzero(left > v)
        left_min = float(np.min(left[: higher[0]] if len(higher) else left, initial=v))
        right = x[pk + 1 :]
        higher = np.flatnonzero(right > v)
        right_min = float(np.min(right[: higher[0]] if len(higher) else right, initial=v))
        out[i] = v - max(left_min, right_min)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_prominences_match_their_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 900))
    # odd seeds: ties and plateaus; even: smooth, like a filtered signal
    x = np.round(rng.standard_normal(n) * 4) if seed % 2 else np.cumsum(rng.standard_normal(n))
    peaks = local_maxima(x)
    assert prominences(x, peaks).tobytes() == _prominences_by_definition(x, peaks).tobytes()
    # any sample may be asked about, not only local maxima (edges included)
    some = np.unique(rng.integers(0, n, size=min(n, 20)))
    assert prominences(x, some).tobytes() == _prominences_by_definition(x, some).tobytes()


def test_no_peaks() -> None:
    assert prominences(np.arange(5.0), np.zeros(0, dtype=np.intp)).shape == (0,)
    peaks, props = find_peaks(np.zeros(10), prominence=1.0)
    assert len(peaks) == 0 and len(props["prominences"]) == 0
