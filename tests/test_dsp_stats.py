"""device.dsp.stats gives exactly what np.median and np.percentile give (bit for bit: the
estimators' thresholds and the golden outputs depend on it)."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from device.dsp.stats import mean, median, median_columns, percentiles, std

# values with many ties, signed zeros, tiny and huge magnitudes, and sometimes a NaN
_values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, -3.25, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-5, 5).map(float),
)
_windows = st.lists(_values, min_size=1, max_size=60)


def _same(a: float, b: float) -> bool:
    """Equal as bit patterns (so -0.0 != 0.0), NaN equal to NaN."""
    return bool(np.float64(a).tobytes() == np.float64(b).tobytes()) or (a != a and b != b)


@settings(max_examples=300, deadline=None)
@given(_windows, st.booleans())
def test_median_is_numpys(xs: list[float], with_nan: bool) -> None:
    x = np.array(xs + ([np.nan] if with_nan else []))
    assert _same(median(x), float(np.median(x)))


@settings(max_examples=300, deadline=None)
@given(_windows, st.booleans())
# found by hypothesis in CI: numpy partitions at the first sample too, which decides whether
# 0.0 or -0.0 lands at an index among equal values
@example(xs=[0.0] * 7 + [-0.0] + [0.0] * 3 + [-0.0, 0.0, 1.0, 0.0], with_nan=False)
def test_percentiles_are_numpys(xs: list[float], with_nan: bool) -> None:
    x = np.array(xs + ([np.nan] if with_nan else []))
    for qs in ([5, 95], [5, 50, 95], [0, 100], [25], [99.5, 0.5]):
        want = np.percentile(x, qs)
        got = percentiles(x, qs)
        assert all(_same(g, float(w)) for g, w in zip(got, want, strict=True)), (qs, got, want)


def test_on_real_shaped_windows() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 8, 125, 750, 800, 4000):
        for _ in range(20):
            x = np.round(rng.standard_normal(n) * 50) / 8  # quantised like 8-bit samples
            assert _same(median(x), float(np.median(x)))
            assert _same(median(x.astype(np.int64)), float(np.median(x.astype(np.int64))))
            got = percentiles(x, [5, 95])
            want = np.percentile(x, [5, 95])
            assert _same(got[0], float(want[0])) and _same(got[1], float(want[1]))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_column_medians_are_numpys(rows: int, cols: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((rows, cols)) * 3) / 2
    x[rng.random((rows, cols)) < 0.1] = -0.0
    want = np.median(x, axis=0)
    got = median_columns(x)
    assert got.tobytes() == want.tobytes()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20))
def test_small_mean_and_std_are_numpys(xs: list[float]) -> None:
    x = np.array(xs)
    assert _same(mean(xs), float(np.mean(x)))
    assert _same(std(xs), float(np.std(x)))
    assert _same(mean(x.tolist()), float(np.mean(x)))
