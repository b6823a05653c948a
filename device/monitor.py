"""The monitor: the streaming pipeline plus the alarm engine, one step per second.

This is the whole functional core: it is fed samples (and gaps, when a live source delivers
nothing) and returns the messages of each completed second, vitals first and then alarm
events. ``bedside process``, ``bedside run`` and the tests all drive it.

Every message has ``kind`` ("vitals" or "alarm": the MQTT topic leaf), ``to_record()`` (the
JSON-lines form) and ``to_payload(bed, ts)`` (the MQTT form).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from device.alarms import AlarmEngine, AlarmEvent, AlarmInputs, AlarmsConfig, RoleState
from device.config import Config
from device.messages import Vitals
from device.pipeline import Pipeline, default_estimators

#: A window is "flat" when its peak-to-peak is below this share of the role's typical
#: peak-to-peak (median over recent good windows), or exactly zero: a detached PPG clip or an
#: open lead reads a constant or near-constant value, a weak real signal keeps > 5 % of its swing.
FLAT_SHARE = 0.01
#: A window is "saturated" when at least this share of its samples sit at one of its extremes:
#: a front end stuck at a rail holds it for the whole window. A signal that clips at the tops
#: of its waves but still swings rail to rail (BIDMC record 39's impedance) is not stuck: its
#: rate can still be measured, and calling it "sensor off" would be a false alarm.
SATURATED_SHARE = 0.8
#: Windows judged for flat/saturated signal. Cardiac signals swing every beat, so a few seconds
#: tell; breathing has normal pauses of several seconds at end-expiration, so impedance needs a
#: window spanning at least two breaths at the slowest rate we still call breathing.
OFF_WINDOW_S = {"ecg": 3.0, "ppg": 3.0, "resp": 12.0, "audio": 12.0}
#: After a role was lost or off, its estimators need a full window of clean signal again
#: before "no estimate" means poor quality: cardiac windows are ~10 s, breathing 32 s.
WARMUP_S = {"ecg": 15.0, "ppg": 15.0, "resp": 35.0, "audio": 35.0}


class RoleTracker:
    """Technical state of one role, from its raw samples one second at a time."""

    def __init__(self, role: str, fs_hz: float, off_window_s: float | None = None) -> None:
        self.role, self.fs_hz = role, fs_hz
        self.lost_samples = 0
        self.off_s = 0.0
        self.off_reason = ""
        self.poor_s = 0.0
        self.good_since: float | None = None  # signal time since which it is neither lost nor off
        self.window_s = off_window_s or OFF_WINDOW_S.get(role, 3.0)
        self._seconds: deque[np.ndarray] = deque(maxlen=max(1, int(round(self.window_s))))
        self._ptp: deque[float] = deque(maxlen=60)

    def update(self, t_s: float, x: np.ndarray, has_estimate: bool) -> RoleState:
        finite = np.isfinite(x)
        if len(x) and not finite.any():
            self.lost_samples += len(x)
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
        return RoleState(
            lost_s=lost_s, off_s=self.off_s, off_reason=self.off_reason, poor_s=self.poor_s
        )

    def _judge_window(self) -> None:
        if len(self._seconds) < (self._seconds.maxlen or 1):
            return  # not enough signal yet to judge
        w = np.concatenate(self._seconds)
        ptp = float(np.ptp(w))
        typical = float(np.median(self._ptp)) if self._ptp else 0.0
        at_rail = int(max(np.sum(w == w.max()), np.sum(w == w.min())))
        if ptp == 0.0 or (typical > 0 and ptp < FLAT_SHARE * typical):
            reason = "flat"
        elif at_rail >= SATURATED_SHARE * len(w):
            reason = "saturated"
        else:
            self.off_s = 0.0
            self._ptp.append(ptp)
            return
        # off_s: how long the signal has been off, i.e. the whole judged window at first
        self.off_s = self.off_s + 1.0 if self.off_s else float(len(self._seconds))
        self.off_reason = reason


class Monitor:
    def __init__(
        self, pipeline: Pipeline, cfg: Config, bed: str = "", epoch_s: float = 0.0
    ) -> None:
        self.pipeline = pipeline
        self.cfg = cfg
        self.bed = bed or cfg.bed.id
        #: wall-clock time (Unix s) of signal time 0; 0 for offline runs and replays, so that
        #: alarm ids are deterministic there and unique across restarts when live
        self.epoch_s = epoch_s
        alarms_cfg = cfg.extra.get("alarms")
        self.alarms = AlarmEngine(
            alarms_cfg if isinstance(alarms_cfg, AlarmsConfig) else None, self.bed, epoch_s
        )
        off_s = self.alarms.cfg.sensor_off_s
        self._trackers = {
            r: RoleTracker(r, fs, max(off_s, OFF_WINDOW_S.get(r, off_s)))
            for r, fs in pipeline.fs_hz.items()
        }

    @classmethod
    def for_inputs(
        cls, fs_hz: dict[str, float], cfg: Config, bed: str = "", epoch_s: float = 0.0
    ) -> Monitor:
        return cls(Pipeline(fs_hz, default_estimators(fs_hz, cfg)), cfg, bed, epoch_s)

    @property
    def t_s(self) -> float:
        """Signal time of the last completed second."""
        return float(self.pipeline.second)

    def feed(self, role: str, x: np.ndarray | Sequence[float]) -> None:
        self.pipeline.feed(role, x)

    def feed_gap(self, role: str, n_samples: int) -> None:
        """``n_samples`` of ``role`` that never arrived (port gone): gaps; signal_lost after 2 s."""
        self.pipeline.feed_gap(role, n_samples)

    def step(self) -> list[Any]:
        """Messages (Vitals, then alarm events) for every second now complete."""
        out: list[Any] = []
        while self.pipeline.ready():
            v = self.pipeline.advance()
            out.append(v)
            out.extend(self._alarms(v))
        return out

    def acknowledge(self, alarm_id: str) -> list[AlarmEvent]:
        """Acknowledge an alarm (``<prefix>/<bed>/cmd/ack``); returns the state-change events."""
        return self.alarms.acknowledge(alarm_id, self.t_s)

    def alarm_summary(self) -> list[dict[str, Any]]:
        """The alarms currently active, latched or acknowledged, for the retained status message."""
        return self.alarms.summary()

    def _alarms(self, v: Vitals) -> list[AlarmEvent]:
        p = self.pipeline
        roles: dict[str, RoleState] = {}
        for role, tracker in self._trackers.items():
            has = any(e.value is not None for e in p.last.values() if e.role == role)
            st = tracker.update(v.t_s, p.last_input.get(role, np.zeros(0)), has)
            err = "; ".join(msg for key, msg in p.errors.items() if key.endswith(f"_{role}"))
            roles[role] = replace(st, error=err)
        # Apnea is judged from the impedance breath detector, as bedside monitors do, and only
        # while that signal is present (a lost or detached lead is a technical alarm instead).
        resp = roles.get("resp")
        resp_est = p.last.get("rr_resp")
        cfg_alarms = self.alarms.cfg
        breathing = (
            resp is not None
            and resp_est is not None
            and resp.lost_s < cfg_alarms.signal_lost_s
            and resp.off_s == 0
        )
        inputs = AlarmInputs(
            hr_bpm=v.hr_bpm,
            rr_bpm=v.rr_bpm,
            hr_role=v.hr_source,
            rr_role=v.rr_source,
            last_breath_s=_latest(
                resp_est.last_event_s if resp_est is not None else None,
                self._trackers["resp"].good_since if "resp" in self._trackers else None,
            ),
            breathing_monitored=breathing,
            roles=roles,
        )
        return self.alarms.update(v.t_s, inputs)


def _latest(*times: float | None) -> float | None:
    """The latest of the given signal times (apnea counts from the last breath, or from when
    the breathing signal last (re)appeared, whichever is later)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None
