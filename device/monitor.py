"""The monitor: the streaming pipeline plus the alarm engine, one step per second.

This is the whole functional core: it is fed samples (and gaps, when a live source delivers
nothing) and returns the messages of each completed second, vitals first and then alarm
events. ``bedside process``, ``bedside run`` and the tests all drive it.

Every message has ``kind`` ("vitals" or "alarm": the MQTT topic leaf), ``to_record()`` (the
JSON-lines form) and ``to_payload(bed, ts)`` (the MQTT form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from device.alarms import AlarmEngine, AlarmEvent, AlarmInputs, RoleState
from device.beats.beat import Beat
from device.config import Config
from device.messages import Vitals
from device.pipeline import Pipeline, Second, default_estimators
from device.roles import Role

#: What the core emits: vitals once per second, alarm events as they happen (and, when asked
#: for, each beat of the beat stream once it is final).
Message = Vitals | AlarmEvent | Beat


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
        self.alarms = AlarmEngine(cfg.alarms, self.bed, epoch_s)
        #: the last completed second, as the core computed it (None before the first)
        self.last: Second | None = None
        #: faults of the appliance the shell reports (condition key -> detail), e.g. the
        #: daemon's "store_failed"; the alarm engine sees them with each second
        self.faults: dict[str, str] = {}
        #: each role's source rate error as the shell measured it (None: not known)
        self.rate_errors: dict[str, float | None] = {}
        #: also emit each beat (``bedside process --beats``); the daemon does not publish them
        self.emit_beats = False

    @classmethod
    def for_inputs(
        cls, fs_hz: Mapping[str, float], cfg: Config, bed: str = "", epoch_s: float = 0.0
    ) -> Monitor:
        pipeline = Pipeline(
            fs_hz, default_estimators(fs_hz, cfg), sensor_off_s=cfg.alarms.sensor_off_s
        )
        return cls(pipeline, cfg, bed, epoch_s)

    @property
    def t_s(self) -> float:
        """Signal time of the last completed second."""
        return float(self.pipeline.second)

    def feed(self, role: str, x: np.ndarray | Sequence[float]) -> None:
        self.pipeline.feed(role, x)

    def feed_gap(self, role: str, n_samples: int) -> None:
        """``n_samples`` of ``role`` that never arrived (port gone): gaps; signal_lost after 2 s."""
        self.pipeline.feed_gap(role, n_samples)

    def step(self) -> list[Message]:
        """Messages (the beats now final when ``emit_beats``, Vitals, then alarm events) for
        every second now complete."""
        out: list[Message] = []
        while self.pipeline.ready():
            second = self.pipeline.advance()
            self.last = second
            if self.emit_beats:
                out.extend(second.beats.beats)
            out.append(second.vitals)
            out.extend(self.alarms.update(second.t_s, self.alarm_inputs(second)))
        return out

    def acknowledge(self, alarm_id: str) -> list[AlarmEvent]:
        """Acknowledge an alarm (``<prefix>/<bed>/cmd/ack``); returns the state-change events."""
        return self.alarms.acknowledge(alarm_id, self.t_s)

    def alarm_summary(self) -> list[dict[str, Any]]:
        """The alarms currently active, latched or acknowledged, for the retained status message."""
        return self.alarms.summary()

    def alarm_inputs(self, second: Second) -> AlarmInputs:
        """What the alarm engine sees of one second."""
        primary = self.pipeline.primary
        roles = {
            str(ch): RoleState(
                lost_s=inp.lost_s,
                off_s=inp.off_s,
                off_reason=inp.off_reason,
                poor_s=inp.poor_s,
                # an estimator's error is its role's, reported on the channel it reads
                error="; ".join(
                    msg
                    for key, msg in second.errors.items()
                    if key.role == ch.role and primary.get(ch.role) == ch
                ),
                rate_error=self.rate_errors.get(str(ch)),
            )
            for ch, inp in second.inputs.items()
        }
        # Apnea is judged from the impedance breath detector, as bedside monitors do, and only
        # while that signal is present (a lost or detached lead is a technical alarm instead).
        # It counts from the last breath, or from when the signal last (re)appeared.
        resp = second.input(Role.RESP)
        breathing = (
            resp is not None and resp.lost_s < self.alarms.cfg.signal_lost_s and resp.off_s == 0
        )
        v = second.vitals
        return AlarmInputs(
            hr_bpm=v.hr_bpm,
            rr_bpm=v.rr_bpm,
            hr_role=v.hr_source,
            rr_role=v.rr_source,
            last_breath_s=_latest(
                second.last_breath_s, resp.good_since_s if resp is not None else None
            ),
            breathing_monitored=breathing,
            roles=roles,
            faults=dict(self.faults),
            cardiac=second.cardiac,
        )


def _latest(*times: float | None) -> float | None:
    """The latest of the given signal times (None when none is known)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None
