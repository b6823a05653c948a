"""How a live source's clock compares with the machine's.

A sensor board does not stamp its samples: its crystal is the signal clock. A crystal 100 ppm
off drifts 8.6 s a day from wall time, and a board on the wrong rate setting (250 Hz read as
125) is off by 100 %. ``RateEstimate`` measures a source's true rate against the monotonic
clock from the samples it delivers: the slope of samples received over time, over a sliding
window of at least ``MIN_SPAN_S``, restarted at every discontinuity (a port that was gone,
samples the queue dropped), since those are not the board's rhythm.

The daemon stamps each message with the wall-clock time its samples were read (not with the
start time plus samples / nominal rate), so ``ts`` stays within a frame of wall time whatever
the drift; the measured rate error and the signal clock's offset from the monotonic clock go
into the status, and past ``[alarms] rate_error_percent`` a technical alarm (``rate_off``)
says the board is off its nominal rate.
"""

from __future__ import annotations

from collections import deque

#: The rate is measured over at least this much time: USB and UART deliver in bursts of up
#: to ~0.1 s, so one minute resolves the rate to ~0.2 % and ten to ~0.02 %.
MIN_SPAN_S = 60.0
#: Older points are forgotten: the estimate follows a crystal warming up.
MAX_SPAN_S = 600.0


class RateEstimate:
    """A source's sample rate measured against the monotonic clock (see module docstring)."""

    def __init__(self, nominal_hz: float, min_span_s: float = MIN_SPAN_S) -> None:
        self.nominal_hz = nominal_hz
        self.min_span_s = min_span_s
        self._points: deque[tuple[float, int]] = deque()  # (monotonic s, samples so far)
        self._total = 0
        self.resets = 0

    def add(self, t_s: float, n_samples: int) -> None:
        """``n_samples`` real samples read at monotonic time ``t_s``."""
        self._total += n_samples
        self._points.append((t_s, self._total))
        while len(self._points) > 2 and t_s - self._points[1][0] >= MAX_SPAN_S:
            self._points.popleft()

    def restart(self) -> None:
        """A discontinuity: what came before does not belong to the same rhythm."""
        self._points.clear()
        self._total = 0
        self.resets += 1

    @property
    def span_s(self) -> float:
        return self._points[-1][0] - self._points[0][0] if len(self._points) > 1 else 0.0

    @property
    def rate_hz(self) -> float | None:
        """The measured rate, or None before ``min_span_s`` of uninterrupted samples."""
        if self.span_s < self.min_span_s:
            return None
        (t0, n0), (t1, n1) = self._points[0], self._points[-1]
        return (n1 - n0) / (t1 - t0)

    @property
    def error(self) -> float | None:
        """Relative rate error (0.005 = 0.5 % fast), or None while unknown."""
        rate = self.rate_hz
        return None if rate is None else rate / self.nominal_hz - 1.0
