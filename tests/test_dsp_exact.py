"""The vectorised DSP helpers give exactly what their plain per-element definitions give
(the estimators' decisions, and so the golden outputs, depend on every bit)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

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


def test_compiled_filter_is_the_reference_recursion_bit_for_bit() -> None:
    from device.dsp import kernels
    from device.dsp.filters import CausalFilter, butter_sos, sos_filter, sos_steady_state

    if kernels.kernel("sosfilt") is None:
        pytest.skip("no compiled sosfilt here (or it differs, and is not used)")
    rng = np.random.default_rng(5)
    for design in [(2, (0.5, 8.0), 125.0, "bandpass"), (6, 50.0, 125.0, "lowpass")]:
        sos = butter_sos(*design)
        x = np.cumsum(rng.standard_normal(3000)) + 1e4  # drifting, large offset
        want, _ = sos_filter(sos, x, sos_steady_state(sos) * x[0])
        f = CausalFilter(sos)
        parts, a = [], 0
        while a < len(x):  # chunks of 1 to 300 samples, state carried across calls
            k = int(rng.integers(1, 300))
            parts.append(f(x[a : a + k]))
            a += k
        assert np.concatenate(parts).tobytes() == want.tobytes()


def test_compiled_prominences_are_the_reference_bit_for_bit() -> None:
    from device.dsp import kernels
    from device.dsp.peaks import prominences_reference

    compiled = kernels.kernel("prominences")
    if compiled is None:
        pytest.skip("no compiled prominences here (or they differ, and are not used)")
    rng = np.random.default_rng(6)
    for _ in range(50):
        x = np.round(rng.standard_normal(int(rng.integers(3, 900))) * 4)
        peaks = local_maxima(x)
        got = compiled(x, peaks, np.intp(-1))[0]
        assert got.tobytes() == prominences_reference(x, peaks).tobytes()


def test_pure_python_paths_give_the_same_output(tmp_path: Path) -> None:
    """The whole core without the compiled kernels writes exactly the golden JSON lines."""
    golden = Path(__file__).parent / "golden" / "excerpt_all.jsonl.gz"
    excerpt = Path(__file__).resolve().parents[1] / "device" / "data" / "bidmc_09_excerpt.csv.gz"
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, BEDSIDE_PURE_PYTHON_DSP="1")
    cmd = [sys.executable, "-m", "device", "process", str(excerpt), "--jsonl", str(out)]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert out.read_bytes() == gzip.decompress(golden.read_bytes())


def test_compiled_local_maxima_are_the_reference() -> None:
    from device.dsp import kernels
    from device.dsp.peaks import local_maxima_reference

    compiled = kernels.kernel("local_maxima")
    if compiled is None:
        pytest.skip("no compiled local maxima here (or they differ, and are not used)")
    rng = np.random.default_rng(8)
    for _ in range(200):
        # few distinct values: plateaus everywhere, at the edges too
        x = np.round(rng.standard_normal(int(rng.integers(3, 300))) * 2)
        assert np.array_equal(compiled(x)[0], local_maxima_reference(x))
