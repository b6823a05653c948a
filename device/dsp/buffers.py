"""A fixed-capacity ring buffer of the most recent samples."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-capacity float buffer of the most recent samples, with a running total count."""

    def __init__(self, capacity: int, fill: float = 0.0) -> None:
        self.capacity = int(capacity)
        self._data = np.full(self.capacity, fill, dtype=np.float64)
        self._pos = 0  # next write index
        self.total = 0  # samples ever written

    def extend(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        if n == 0:
            return
        if n >= self.capacity:
            self._data[:] = x[-self.capacity :]
            self._pos = 0
        else:
            end = self._pos + n
            if end <= self.capacity:
                self._data[self._pos : end] = x
            else:
                k = self.capacity - self._pos
                self._data[self._pos :] = x[:k]
                self._data[: n - k] = x[k:]
            self._pos = end % self.capacity
        self.total += n

    def latest(self, n: int | None = None) -> np.ndarray:
        """The last ``n`` samples (fewer if fewer were written), oldest first, as a copy."""
        avail = min(self.total, self.capacity)
        n = avail if n is None else min(n, avail)
        if n <= 0:
            return np.zeros(0)
        start = (self._pos - n) % self.capacity
        if start + n <= self.capacity:
            return np.array(self._data[start : start + n])  # a copy
        return np.concatenate((self._data[start:], self._data[: (start + n) - self.capacity]))
