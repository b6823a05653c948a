"""Causal IIR filters: Butterworth designs in second-order sections, designed and run with
numpy alone, and ``CausalFilter``, which carries their state across calls.

Why not ``scipy.signal``: importing it pulls in ``scipy.stats`` and costs ~100 MB of resident
memory and ~1.4 s of start-up on this class of machine (measured: ``import scipy.signal`` peaks
at 105 MB RSS, numpy alone at 26 MB). The daemon's whole budget is 80 MB. The filters the
device needs are low-order Butterworths, which take a page to design exactly, and cascades of
biquads, which run on one second of samples at a time. ``tests/test_signal.py`` checks both
against ``scipy.signal`` (which stays a dependency of training, tests and offline tools).

Design follows the textbook route: analog Butterworth prototype poles, frequency pre-warping,
low-pass -> low/high/band-pass transformation, bilinear transform, then each conjugate pole
pair with two zeros becomes one biquad ``[b0, b1, b2, 1, a1, a2]`` (the same row layout as
scipy's ``sos``).
"""

from __future__ import annotations

import math

import numpy as np

from device.dsp.kernels import kernel


def butter_sos(
    order: int, cutoff_hz: float | tuple[float, float], fs_hz: float, btype: str
) -> np.ndarray:
    """Digital Butterworth filter as second-order sections, shape (n_sections, 6)."""
    if order < 1:
        raise ValueError("order must be >= 1")
    nyq = fs_hz / 2.0
    edges = np.atleast_1d(np.asarray(cutoff_hz, dtype=np.float64))
    if np.any(edges <= 0) or np.any(edges >= nyq):
        raise ValueError(
            f"cutoff {cutoff_hz} Hz must lie strictly between 0 and Nyquist ({nyq} Hz)"
        )
    # analog prototype (cut-off 1 rad/s): poles on the left half of the unit circle
    m = np.arange(-order + 1, order, 2)
    p = -np.exp(1j * np.pi * m / (2 * order))
    z = np.zeros(0, dtype=complex)
    k = 1.0
    # pre-warp so the digital cut-off lands exactly where asked (bilinear with fs = 2)
    warped = 4.0 * np.tan(np.pi * (edges / nyq) / 2.0)
    if btype == "lowpass":
        (wo,) = warped
        p, k = p * wo, k * wo**order
    elif btype == "highpass":
        (wo,) = warped
        k = k * float(np.real(1.0 / np.prod(-p)))
        p = wo / p
        z = np.zeros(order, dtype=complex)
    elif btype == "bandpass":
        lo, hi = warped
        bw, wo = hi - lo, math.sqrt(lo * hi)
        p_lp = p * bw / 2.0
        root = np.sqrt(p_lp**2 - wo**2)
        p = np.concatenate((p_lp + root, p_lp - root))
        z = np.zeros(order, dtype=complex)
        k = k * bw**order
    else:
        raise ValueError(f"unknown btype {btype!r}")
    # bilinear transform, fs = 2 (frequencies above are normalised to it)
    fs2 = 4.0
    k = k * float(np.real(np.prod(fs2 - z) / np.prod(fs2 - p)))
    zd = (fs2 + z) / (fs2 - z)
    pd = (fs2 + p) / (fs2 - p)
    zd = np.concatenate((zd, -np.ones(len(pd) - len(zd))))  # zeros at infinity map to z = -1
    return _to_sos(zd, pd, k)


def _to_sos(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """Pair poles (conjugate pairs, slowest-decaying last) with zeros into biquads."""
    upper = sorted((q for q in p if q.imag > 1e-12), key=abs)
    real = sorted((q.real for q in p if abs(q.imag) <= 1e-12), key=abs)
    zeros = sorted(np.real_if_close(z).real.tolist())
    sections: list[list[float]] = []
    # real poles (odd orders) first, in pairs where possible
    while real:
        r1 = real.pop(0)
        if real:
            r2 = real.pop(0)
            a = [1.0, -(r1 + r2), r1 * r2]
        else:
            a = [1.0, -r1, 0.0]
        sections.append(a)
    for q in upper:
        sections.append([1.0, -2.0 * q.real, abs(q) ** 2])
    sos = np.zeros((len(sections), 6))
    # zeros are real (at +1 and/or -1 for these designs): give each section one from each end
    for i, a in enumerate(sections):
        order = 2 if a[2] != 0.0 else 1
        zs = [zeros.pop(0) if j % 2 == 0 else zeros.pop() for j in range(order) if zeros]
        b = np.poly(zs) if zs else np.array([1.0])
        b = np.concatenate((b, np.zeros(3 - len(b))))
        sos[i, :3] = b
        sos[i, 3:] = a
    sos[0, :3] *= k
    return sos


def sos_steady_state(sos: np.ndarray) -> np.ndarray:
    """Initial state (n_sections, 2) of a cascade at rest with a constant input of 1."""
    zi = np.zeros((len(sos), 2))
    scale = 1.0
    for i, (b0, b1, b2, _a0, a1, a2) in enumerate(sos):
        gain = (b0 + b1 + b2) / (1.0 + a1 + a2)  # this section's DC gain
        z2 = b2 - a2 * gain
        z1 = b1 - a1 * gain + z2
        zi[i] = scale * np.array([z1, z2])
        scale *= gain
    return zi


def sos_filter(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the cascade over ``x`` from state ``zi`` (transposed direct form II, as scipy's
    ``sosfilt``); returns (output, new state). Pure Python per sample: the reference
    definition, which ``CausalFilter`` replaces by scipy's compiled loop where that gives the
    same bits (``device.dsp.kernels``)."""
    y = np.asarray(x, dtype=np.float64).tolist()
    state = np.array(zi, dtype=np.float64)
    for s, (b0, b1, b2, _a0, a1, a2) in enumerate(sos.tolist()):
        z1, z2 = float(state[s, 0]), float(state[s, 1])
        for n, v in enumerate(y):
            out = b0 * v + z1
            z1 = b1 * v - a1 * out + z2
            z2 = b2 * v - a2 * out
            y[n] = out
        state[s, 0], state[s, 1] = z1, z2
    return np.asarray(y, dtype=np.float64), state


class CausalFilter:
    """An IIR filter in second-order sections with carried state (``sosfilt`` with ``zi``).

    The state starts at the steady state for the first finite sample, so a DC offset does not
    ring through the filter at start-up.
    """

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        self._sos_c = np.ascontiguousarray(self.sos)
        self._zi_unit = sos_steady_state(self.sos)
        self._zi: np.ndarray | None = None

    @classmethod
    def butter(
        cls, order: int, cutoff_hz: float | tuple[float, float], fs_hz: float, btype: str
    ) -> CausalFilter:
        return cls(butter_sos(order, cutoff_hz, fs_hz, btype))

    def reset(self) -> None:
        self._zi = None

    def group_delay_s(self, at_hz: float, fs_hz: float) -> float:
        """The cascade's group delay (s) at ``at_hz``: minus the slope of its phase there."""

        def phase(f: float) -> float:
            z = np.exp(-1j * 2.0 * np.pi * f / fs_hz)
            h = complex(1.0)
            for b0, b1, b2, a0, a1, a2 in self.sos:
                h *= (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
            return float(np.angle(h))

        df = 1e-3 * fs_hz
        dphi = (phase(at_hz + df) - phase(at_hz - df) + np.pi) % (2.0 * np.pi) - np.pi
        return -dphi / (2.0 * np.pi * 2.0 * df)

    def hold_zero(self) -> None:
        """The state after any number of zero inputs from rest at zero (all zero)."""
        self._zi = self._zi_unit * 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return np.array(x)  # a copy (ndarray.copy() is typed Any under 3.10)
        if self._zi is None:
            self._zi = self._zi_unit * x[0]
        compiled = kernel("sosfilt")
        if compiled is None:
            y, self._zi = sos_filter(self.sos, x, self._zi)
            return y
        # scipy's compiled loop, bit for bit the same recursion (``dsp.kernels``); in place
        y2 = np.array(x, dtype=np.float64, order="C", ndmin=2)
        zi = np.array(self._zi, dtype=np.float64, order="C", ndmin=3)
        compiled(self._sos_c, y2, zi)
        self._zi = zi[0]
        out: np.ndarray = y2[0]
        return out
