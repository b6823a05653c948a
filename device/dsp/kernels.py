"""Compiled loops for the per-sample kernels that cost most in Python: the biquad cascade
(``sos_filter``), local maxima and peak prominences, taken from scipy's own extension modules
without importing ``scipy.signal``.

Why not ``import scipy.signal``: it costs ~77 MB of resident memory and ~0.9 s of CPU at
start-up on this class of machine (measured here: numpy alone 31 MB; with ``scipy.signal``
108.6 MB), more than the daemon's whole memory budget. The two kernels alone are two small
extension modules (``scipy/signal/_sosfilt*.so``, ``_peak_finding_utils*.so``), which need
only numpy and scipy's small top-level package: +2.2 MB and 15-40 ms measured
(``bench/speed.py`` records the start-up cost; ``docs/performance.md``).

They are used only where they reproduce the device's own reference definitions
(``device.dsp.filters.sos_filter``, ``device.dsp.peaks.local_maxima_reference`` and
``prominences_reference``) *bit for bit*: on first use each is run on a probe signal beside
the reference and kept only if every output bit agrees. scipy's ``sosfilt`` does the same
operations in the same order as the Python recursion, local maxima are indices, and a
prominence is a subtraction of exact minima, so on the builds tested they agree; a build
that contracts multiply-adds into fused ones (some compilers do on aarch64) would differ in
the last bits and is refused, so the output of the core never depends on which path ran.
``BEDSIDE_PURE_PYTHON_DSP=1`` forces the reference paths (the tests run both).
"""

from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import logging
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Set to "1" to run the pure-Python reference loops only.
PURE_ENV = "BEDSIDE_PURE_PYTHON_DSP"

_cache: dict[str, Callable[..., Any] | None] = {}


def _extension(name: str) -> ModuleType | None:
    """scipy's extension module ``scipy.signal.<name>``, loaded from its file without running
    ``scipy/signal/__init__.py``; None when scipy or the file is not there."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    found: list[str] = []
    for base in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            found += glob.glob(os.path.join(base, "signal", name + suffix))
    if not found:
        return None
    full = f"scipy.signal.{name}"
    loader = importlib.machinery.ExtensionFileLoader(full, found[0])
    mspec = importlib.util.spec_from_file_location(full, found[0], loader=loader)
    if mspec is None:
        return None
    module = importlib.util.module_from_spec(mspec)
    loader.exec_module(module)
    return module


def _probe_signal() -> np.ndarray:
    """A fixed probe: pseudo-random values quantised like 8-bit samples (ties, plateaus), on a
    DC offset. (A linear congruential sequence, not ``numpy.random``: importing that costs
    1.2 MB of resident memory for a few hundred numbers.)"""
    state, values = 20240615, []
    for _ in range(400):
        state = (1103515245 * state + 12345) % 2**31
        values.append(state / 2**31)
    return np.round(np.asarray(values) * 80.0 - 40.0) / 8.0 + 3.0


def _load_sosfilt() -> Callable[..., Any] | None:
    from device.dsp.filters import butter_sos, sos_filter, sos_steady_state

    mod = _extension("_sosfilt")
    kernel = getattr(mod, "_sosfilt", None) if mod is not None else None
    if kernel is None:
        return None
    x = _probe_signal()
    for sos in (
        butter_sos(2, (0.5, 8.0), 125.0, "bandpass"),
        butter_sos(6, 10.0, 125.0, "lowpass"),
        butter_sos(3, 0.7, 25.0, "highpass"),
    ):
        zi = sos_steady_state(sos) * x[0]
        want_y, want_z = sos_filter(sos, x, zi)
        y = x.copy()[None, :]
        z = zi.copy()[None, :, :]
        kernel(np.ascontiguousarray(sos), y, z)
        if y[0].tobytes() != want_y.tobytes() or z[0].tobytes() != want_z.tobytes():
            log.info("scipy's compiled sosfilt differs from the reference in the last bits here")
            return None
    return kernel  # type: ignore[no-any-return]


def _load_prominences() -> Callable[..., Any] | None:
    from device.dsp.peaks import local_maxima, prominences_reference

    mod = _extension("_peak_finding_utils")
    kernel = getattr(mod, "_peak_prominences", None) if mod is not None else None
    if kernel is None:
        return None
    x = _probe_signal()
    for signal in (x, np.cumsum(x - 3.0)):
        peaks = local_maxima(signal)
        got = np.asarray(kernel(signal, peaks, np.intp(-1))[0], dtype=np.float64)
        if got.tobytes() != prominences_reference(signal, peaks).tobytes():
            log.info("scipy's compiled peak prominences differ from the reference here")
            return None
    return kernel  # type: ignore[no-any-return]


def _load_local_maxima() -> Callable[..., Any] | None:
    from device.dsp.peaks import local_maxima_reference

    mod = _extension("_peak_finding_utils")
    kernel = getattr(mod, "_local_maxima_1d", None) if mod is not None else None
    if kernel is None:
        return None
    x = _probe_signal()
    for signal in (x, np.cumsum(x - 3.0), np.round(x), x[:2], x[:3]):
        got = np.asarray(kernel(np.ascontiguousarray(signal))[0], dtype=np.intp)
        if got.tobytes() != local_maxima_reference(signal).tobytes():
            log.info("scipy's compiled local maxima differ from the reference here")
            return None
    return kernel  # type: ignore[no-any-return]


_LOADERS: dict[str, Callable[[], Callable[..., Any] | None]] = {
    "sosfilt": _load_sosfilt,
    "prominences": _load_prominences,
    "local_maxima": _load_local_maxima,
}


def kernel(name: str) -> Callable[..., Any] | None:
    """The verified compiled kernel ``name`` (``sosfilt``, ``prominences`` or
    ``local_maxima``), or None to use
    the reference loop (no scipy, a build that differs, or ``BEDSIDE_PURE_PYTHON_DSP=1``)."""
    if name not in _cache:
        if os.environ.get(PURE_ENV) == "1":
            _cache[name] = None
        else:
            try:
                _cache[name] = _LOADERS[name]()
            except (ImportError, OSError, AttributeError, TypeError, ValueError) as e:
                log.info("compiled %s unavailable (%s); using the reference loop", name, e)
                _cache[name] = None
    return _cache[name]


def reset() -> None:
    """Forget what was loaded (tests switch ``BEDSIDE_PURE_PYTHON_DSP``)."""
    _cache.clear()
