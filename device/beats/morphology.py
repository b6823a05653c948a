"""Measurements of one beat's shape, on one lead, and of a template's, at the cardiac rate.

Windows are relative to the beat's fiducial point (its R-peak time after alignment):

- ``WIDE``: 250 ms before to 450 ms after, the whole complex with its ST segment and most of
  its T wave (a ventricular beat's T wave is typically broad and opposite to its QRS);
- ``QRS``: 100 ms before to 120 ms after, where beats are matched (a normal QRS lasts 60-
  100 ms; the window leaves room for the timing error of the detector and for wide beats);
- ``SPAN``: 120 ms before to 160 ms after, where width, area and slope are measured (a
  ventricular QRS lasts up to ~200 ms and the fiducial of a wide beat may sit anywhere in it).

The width is an *equivalent width*: the sum of the absolute slope over ``SPAN`` divided by
the largest slope. For a triangle of any height it is the triangle's base; for a biphasic
complex, its total duration; noise and slurred conduction widen it. It is robust to the
choice of the fiducial point and needs no onset or offset detection, which is unreliable at
125 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRE_S, POST_S = 0.25, 0.45
QRS_S = (0.10, 0.12)
SPAN_S = (0.12, 0.16)
#: how far a beat may be shifted to align it with a template (the detector's timing error,
#: and the different fiducial point of a differently shaped beat)
SHIFT_S = 0.048
#: the baseline of a beat's area: the mean over this long before SPAN
BASE_S = 0.04


@dataclass(frozen=True)
class Geometry:
    """The windows in samples at one rate; offsets are into an aligned wide segment."""

    fs_hz: float
    pre: int
    post: int
    shift: int
    qrs: tuple[int, int]  # [a, b) within the aligned segment
    span: tuple[int, int]
    base: int  # samples before the span that are its baseline

    @property
    def length(self) -> int:
        return self.pre + self.post + 1

    @classmethod
    def at(cls, fs_hz: float) -> Geometry:
        pre, post = int(round(PRE_S * fs_hz)), int(round(POST_S * fs_hz))
        q = (pre - int(round(QRS_S[0] * fs_hz)), pre + int(round(QRS_S[1] * fs_hz)) + 1)
        s = (pre - int(round(SPAN_S[0] * fs_hz)), pre + int(round(SPAN_S[1] * fs_hz)) + 1)
        return cls(fs_hz, pre, post, int(round(SHIFT_S * fs_hz)), q, s, int(round(BASE_S * fs_hz)))


@dataclass(frozen=True)
class Shape:
    """Scale-free summary of one aligned segment on one lead."""

    p2p: float  # peak-to-peak over SPAN (signal units)
    width_s: float  # equivalent width over SPAN
    slope: float  # largest |first difference| over SPAN (signal units per sample)
    area: float  # signed area over SPAN about the 40 ms before it (units x samples)
    noise: float  # median |second difference| over the wide segment / p2p
    sharpness: float  # sum |second difference| / sum |first difference| over SPAN


def shape(seg: np.ndarray, g: Geometry) -> Shape:
    a, b = g.span
    x = seg[a:b]
    d = np.abs(np.diff(x))
    slope = float(d.max()) if len(d) else 0.0
    p2p = float(x.max() - x.min())
    width = float(d.sum()) / slope / g.fs_hz if slope > 0 else 0.0
    # the baseline: the 40 ms before the span (the PR segment of a normal beat)
    base = float(seg[max(0, a - g.base) : a].mean()) if a > 0 else float(x[0])
    area = float((x - base).sum())
    dd = np.abs(np.diff(seg, 2))
    k = len(dd) // 2
    noise = float(np.partition(dd, k)[k]) / p2p if p2p > 0 else 1.0
    d2 = float(np.abs(np.diff(x, 2)).sum())
    sd = float(d.sum())
    sharp = d2 / sd if sd > 0 else 0.0
    return Shape(p2p, width, slope, area, noise, sharp)


def normalised_windows(raw: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """From a raw segment of ``length + 2 shift`` samples: the QRS window at every shift
    (rows: shift -S..S), zero-mean and unit-norm, and their peak-to-peak values."""
    a, b = g.qrs
    lq = b - a
    w = np.lib.stride_tricks.sliding_window_view(raw[a : a + 2 * g.shift + lq], lq)
    c = w - w.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", c, c))
    p2p = w.max(axis=1) - w.min(axis=1)
    return c / np.maximum(norm, 1e-12)[:, None], p2p


def normalised_qrs(template: np.ndarray, g: Geometry) -> np.ndarray:
    """A template's QRS window, zero-mean and unit-norm."""
    a, b = g.qrs
    c = template[a:b] - template[a:b].mean()
    n = float(np.sqrt(c @ c))
    out: np.ndarray = c / max(n, 1e-12)
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    d = float(np.sqrt((xc @ xc) * (yc @ yc)))
    return float(xc @ yc) / d if d > 0 else 0.0
