"""Each role's input state, judged from its raw samples one second at a time: how many
samples arrived, how long the signal has been missing, flat or saturated, and how long its
estimators have had nothing usable to say. The technical alarms are raised from this."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from device.dsp.quality import FLAT_SHARE, SensorOff
from device.roles import Role

#: Windows judged for flat/saturated signal. Cardiac signals swing every beat, so a few seconds
#: tell; breathing has normal pauses of several seconds at end-expiration, so impedance needs a
#: window spanning at least two breaths at the slowest rate we still call breathing.
OFF_WINDOW_S = {Role.ECG: 3.0, Role.PPG: 3.0, Role.RESP: 12.0, Role.AUDIO: 12.0}
#: After a role was lost or off, its estimators need a full window of clean signal again
#: before "no estimate" means poor quality: cardiac windows are ~10 s, breathing 32 s.
WARMUP_S = {Role.ECG: 15.0, Role.PPG: 15.0, Role.RESP: 35.0, Role.AUDIO: 35.0}


@dataclass(frozen=True)
class RoleInput:
    """One role's input during one second."""

    samples: int  # samples that arrived this second (gaps not counted)
    lost_s: float  # how long no samples have arrived (consecutive, up to now)
    off_s: float  # how long the signal has been flat or saturated (consecutive)
    off_reason: str  # "flat", "saturated" or ""
    poor_s: float  # how long its estimators have had no usable estimate (consecutive)
    good_since_s: float | None  # signal time since which it is neither lost nor off


class RoleTracker:
    """Technical state of one role, from its raw samples one second at a time."""

    def __init__(self, role: Role, fs_hz: float, sensor_off_s: float = 3.0) -> None:
        self.role, self.fs_hz = role, fs_hz
        self.lost_samples = 0
        self.off_s = 0.0
        self.off_reason = ""
        self.poor_s = 0.0
        self.good_since: float | None = None
        self.window_s = max(sensor_off_s, OFF_WINDOW_S.get(role, sensor_off_s))
        self._seconds: deque[np.ndarray] = deque(maxlen=max(1, int(round(self.window_s))))
        # An ECG that falls to a low, quiet line may be an asystole, the one thing it must
        # never be mistaken for a detached lead: only a constant reading (an open input) or a
        # rail says an ECG lead is off. Other sensors go near-flat when detached.
        self._judge = SensorOff(flat_share=0.0 if role == Role.ECG else FLAT_SHARE)

    def update(self, t_s: float, x: np.ndarray, has_estimate: bool) -> RoleInput:
        finite = np.isfinite(x)
        n_finite = int(np.count_nonzero(finite))
        if len(x) and not n_finite:
            self.lost_samples += len(x)
        elif n_finite == len(x) and len(x):  # nothing missing (the usual second)
            self.lost_samples = 0
            self._seconds.append(x.copy())
            self._judge_window()
        elif len(x):
            # consecutive missing samples at the end of this second (the run may continue)
            self.lost_samples = len(x) - 1 - int(np.flatnonzero(finite)[-1])
            self._seconds.append(x[finite])
            self._judge_window()
        lost_s = self.lost_samples / self.fs_hz
        if lost_s >= 1.0 or self.off_s > 0:
            self.good_since = None
            self.poor_s = 0.0
        else:
            if self.good_since is None:
                self.good_since = t_s
            warm = t_s - self.good_since >= WARMUP_S.get(self.role, 15.0)
            self.poor_s = 0.0 if has_estimate or not warm else self.poor_s + 1.0
        return RoleInput(
            samples=n_finite,
            lost_s=lost_s,
            off_s=self.off_s,
            off_reason=self.off_reason,
            poor_s=self.poor_s,
            good_since_s=self.good_since,
        )

    def _judge_window(self) -> None:
        if len(self._seconds) < (self._seconds.maxlen or 1):
            return  # not enough signal yet to judge
        reason = self._judge(np.concatenate(self._seconds))
        if not reason:
            self.off_s = 0.0
            return
        # off_s: how long the signal has been off, i.e. the whole judged window at first
        self.off_s = self.off_s + 1.0 if self.off_s else float(len(self._seconds))
        self.off_reason = reason
