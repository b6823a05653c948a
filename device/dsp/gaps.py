"""Missing samples (NaN): held at the last finite value so that filters are not poisoned."""

from __future__ import annotations

import numpy as np


def forward_fill(x: np.ndarray, before: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(``x`` with each NaN/inf replaced by the last finite value before it, mask of those
    samples); samples before the first finite one read ``before``."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x, bad
    y = x.copy()
    # index of the last finite sample at or before each position
    idx = np.where(~bad, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    y[idx >= 0] = x[idx[idx >= 0]]
    y[idx < 0] = before
    return y, bad


class HoldGaps:
    """Streaming ``forward_fill``: the last value is carried across calls (0 before any)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, bad = forward_fill(x, self.last)
        if y.size:
            self.last = float(y[-1])
        return y, bad
