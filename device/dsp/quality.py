"""Signal-quality judgements on raw samples: spread, flat line, sensor off.

Two questions are asked of a signal, and each has one answer here:

- *Can an estimator use this window?* (``FlatLine``) A window whose spread is a small
  fraction of the spread the channel has shown recently is a flat line: no estimate. The
  reference spread decays slowly (2 % a second), so a channel that really becomes weaker is
  followed within a minute or so.
- *Is the sensor off?* (``SensorOff``, for the technical alarms) A window whose peak-to-peak
  is below 1 % of the channel's typical peak-to-peak (the median of recent good windows), or
  exactly zero, is flat; one that sits at one of its extremes for most of its samples is
  saturated (a front end stuck at a rail). The alarm needs a stricter test than the estimator
  (1 % of the typical swing, not 2 % of the largest recent spread) because a weak but real
  signal, which only loses its estimate, must not be called a detached sensor.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from device.dsp.stats import median, percentiles

#: An estimator window whose 5-95 % spread is below this fraction of the channel's recent
#: spread is a flat line (probe off, lead off): no estimate.
FLAT_RELATIVE = 0.02
#: A sensor window is "flat" when its peak-to-peak is below this share of the role's typical
#: peak-to-peak (median over recent good windows), or exactly zero: a detached PPG clip or an
#: open lead reads a constant or near-constant value, a weak real signal keeps > 5 % of its swing.
FLAT_SHARE = 0.01
#: A sensor window is "saturated" when at least this share of its samples sit at one of its
#: extremes: a front end stuck at a rail holds it for the whole window. A signal that clips at
#: the tops of its waves but still swings rail to rail (BIDMC record 39's impedance) is not
#: stuck: its rate can still be measured, and calling it "sensor off" would be a false alarm.
SATURATED_SHARE = 0.8


def robust_range(x: np.ndarray) -> float:
    """Spread of a window that ignores a few outliers (5th to 95th percentile)."""
    if len(x) == 0:
        return 0.0
    lo, hi = percentiles(x, (5, 95))
    return float(hi - lo)


class FlatLine:
    """Is an estimator's window a flat line? (see the module docstring)"""

    def __init__(self) -> None:
        self._scale = 0.0  # slow-decaying spread of the signal

    def __call__(self, raw: np.ndarray) -> bool:
        spread = robust_range(raw)
        if spread <= 1e-9:
            return True
        self._scale = max(spread, 0.98 * self._scale)
        return spread < FLAT_RELATIVE * self._scale


class SensorOff:
    """Is the sensor off: its window ``"flat"`` or ``"saturated"``, or ``""`` when it swings
    normally? (see the module docstring)"""

    def __init__(self, history: int = 60, flat_share: float = FLAT_SHARE) -> None:
        """``flat_share``: the share of the typical swing below which a window is flat (0: only
        an exactly constant window is flat)."""
        self._ptp: deque[float] = deque(maxlen=history)  # peak-to-peak of recent good windows
        self.flat_share = flat_share

    def __call__(self, w: np.ndarray) -> str:
        top, bottom = w.max(), w.min()
        ptp = float(top - bottom)  # np.ptp
        typical = median(self._ptp) if self._ptp else 0.0
        at_rail = max(int(np.count_nonzero(w == top)), int(np.count_nonzero(w == bottom)))
        if ptp == 0.0 or (typical > 0 and ptp < self.flat_share * typical):
            return "flat"
        if at_rail >= SATURATED_SHARE * len(w):
            return "saturated"
        self._ptp.append(ptp)
        return ""
