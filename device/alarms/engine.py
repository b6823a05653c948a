"""The alarm engine: physiological and technical alarm conditions, following the conventions
of IEC 60601-1-8 (alarm-condition delay, priorities, latching, acknowledgement).

Pure and clock-injected: ``AlarmEngine.update(t_s, inputs)`` is called once per second of
signal time with that second's vitals and technical states and returns the alarm events it
caused. No I/O, no wall clock. The same inputs always give the same events.

Life of an alarm (one ``Alarm`` per onset; a new onset gets a new id)::

    condition true for delay_s  ->  "active"
    acknowledge                 ->  "acknowledged" (still shown; it will clear by itself)
    condition false (with hysteresis):
        not latching, or acknowledged  ->  "cleared"
        latching (high priority) and not acknowledged -> stays "active" (latched) until
        acknowledged, then "acknowledged" and "cleared"
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from device.alarms.conditions import CONDITIONS, AlarmInputs, Check, Condition
from device.config import AlarmsConfig
from device.messages import SCHEMA_VERSION, iso_utc

PRIORITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class AlarmEvent:
    """A change in an alarm's state (published on <prefix>/<bed>/alarms at QoS 1)."""

    kind: typing.ClassVar[str] = "alarm"

    t_s: float
    id: str
    condition: str
    priority: str
    state: str  # "active" | "acknowledged" | "cleared"
    value: float | None
    limit: float | None
    unit: str  # of value and limit: "bpm", "breaths/min" or "s"
    role: str | None
    onset_t_s: float
    latched: bool = False  # high priority, condition gone, waiting for acknowledgement
    technical: bool = False
    detail: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "alarm",
            "t_s": round(self.t_s, 3),
            "id": self.id,
            "condition": self.condition,
            "priority": self.priority,
            "state": self.state,
            "value": None if self.value is None else round(self.value, 1),
            "limit": self.limit,
            "unit": self.unit,
            "role": self.role,
            "onset_t_s": round(self.onset_t_s, 3),
            "latched": self.latched,
            "technical": self.technical,
            "detail": self.detail,
        }

    def to_payload(self, bed: str, ts: float) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "bed": bed, "ts": iso_utc(ts), **self.to_record()}


@dataclass
class Alarm:
    """One alarm, from onset to clearing."""

    id: str
    condition: str
    role: str | None
    priority: str
    onset_t_s: float
    value: float | None
    limit: float | None
    unit: str
    technical: bool
    state: str = "active"
    present: bool = True  # the condition is still true
    detail: str = ""

    @property
    def latched(self) -> bool:
        """High priority, condition gone, waiting for acknowledgement."""
        return self.state == "active" and not self.present

    def event(self, t_s: float) -> AlarmEvent:
        return AlarmEvent(
            t_s=t_s,
            id=self.id,
            condition=self.condition,
            priority=self.priority,
            state=self.state,
            value=self.value,
            limit=self.limit,
            unit=self.unit,
            role=self.role,
            onset_t_s=self.onset_t_s,
            latched=self.latched,
            technical=self.technical,
            detail=self.detail,
        )

    def summary(self) -> dict[str, Any]:
        """The alarm as listed in the retained status: its event record's identifying fields."""
        rec = self.event(self.onset_t_s).to_record()
        return {k: rec[k] for k in SUMMARY_KEYS}


#: fields of an alarm in the status message's current-alarms list
SUMMARY_KEYS = (
    "id",
    "condition",
    "priority",
    "state",
    "role",
    "onset_t_s",
    "value",
    "limit",
    "unit",
    "latched",
)


class AlarmEngine:
    """Turns each second's vitals and technical states into alarm events."""

    def __init__(
        self,
        cfg: AlarmsConfig | None = None,
        bed: str = "bed",
        epoch_s: float = 0.0,
        conditions: Mapping[str, Condition] | None = None,
    ) -> None:
        """``conditions``: the registry to evaluate (default ``conditions.CONDITIONS``)."""
        self.cfg = cfg or AlarmsConfig()
        self.conditions = CONDITIONS if conditions is None else conditions
        self.bed = bed
        self.epoch_s = epoch_s
        self._since: dict[tuple[str, str | None], float] = {}  # condition present since (signal s)
        self._alarms: dict[tuple[str, str | None], Alarm] = {}  # current (not cleared) alarms
        self._by_id: dict[str, Alarm] = {}
        self.t_s = 0.0

    # -- the once-a-second update ------------------------------------------------------------
    def update(self, t_s: float, inp: AlarmInputs) -> list[AlarmEvent]:
        self.t_s = t_s
        events: list[AlarmEvent] = []
        for chk in self._checks(t_s, inp):
            events.extend(self._apply(t_s, chk))
        return events

    def _checks(self, t_s: float, inp: AlarmInputs) -> list[Check]:
        """Every enabled condition's verdicts: the bed's first, in registry order, then each
        role's, role by role (the order events of one second are reported in)."""
        bed: list[Check] = []
        by_role: list[tuple[str, int, Check]] = []
        for i, (key, cond) in enumerate(self.conditions.items()):
            if key not in self.cfg.enabled:
                continue
            for chk in cond.checks(inp, self.cfg, t_s):
                role = chk.key[1]
                if role is None:
                    bed.append(chk)
                else:
                    by_role.append((role, i, chk))
        return bed + [chk for _role, _i, chk in sorted(by_role, key=lambda r: (r[0], r[1]))]

    def acknowledge(self, alarm_id: str, t_s: float | None = None) -> list[AlarmEvent]:
        """Acknowledge an active alarm. Unknown or already-cleared ids change nothing."""
        t = self.t_s if t_s is None else t_s
        alarm = self._by_id.get(alarm_id)
        if alarm is None or alarm.state != "active":
            return []
        alarm.state = "acknowledged"
        events = [alarm.event(t)]
        if not alarm.present:  # a latched alarm whose condition is gone: done
            events.append(self._clear(alarm, t))
        return events

    def end_all(self, t_s: float, reason: str) -> list[AlarmEvent]:
        """Clear every open alarm because monitoring itself ends or restarts (not because its
        condition went away): the events say why in ``detail``."""
        events = []
        for alarm in list(self._alarms.values()):
            alarm.detail = reason
            events.append(self._clear(alarm, t_s))
        self._since.clear()
        return events

    def summary(self) -> list[dict[str, Any]]:
        """Alarms active, latched or acknowledged-but-present, highest priority first."""
        alarms = sorted(
            self._alarms.values(), key=lambda a: (-PRIORITIES.index(a.priority), a.onset_t_s, a.id)
        )
        return [a.summary() for a in alarms]

    # -- state machine -----------------------------------------------------------------------
    def _apply(self, t_s: float, chk: Check) -> list[AlarmEvent]:
        alarm = self._alarms.get(chk.key)
        if chk.unknown:
            self._since.pop(chk.key, None)
            return []
        if chk.present:
            self._since.setdefault(chk.key, t_s)
        else:
            self._since.pop(chk.key, None)

        if alarm is None:
            since = self._since.get(chk.key)
            # Each reading covers the second of signal before it, so a condition present in the
            # readings at s, s+1, ..., t has held over (s-1, t]: t - s + 1 seconds of signal.
            if since is not None and t_s - since + 1.0 >= chk.delay_s - 1e-9:
                alarm = self._open(t_s, chk)
                return [alarm.event(t_s)]
            return []

        out: list[AlarmEvent] = []
        if chk.still or chk.present:
            alarm.value = chk.value if chk.value is not None else alarm.value
            if not alarm.present:  # a latched alarm
                if not chk.present:
                    return out  # stays latched until its condition is really back
                alarm.present = True  # the condition came back: no longer latched
                out.append(alarm.event(t_s))
            if PRIORITIES.index(chk.priority) > PRIORITIES.index(alarm.priority):
                alarm.priority = chk.priority  # escalation, e.g. HR now above 150
                out.append(alarm.event(t_s))
            return out
        # the condition has cleared
        latching = self.cfg.latch_high and alarm.priority == "high" and not alarm.technical
        if latching and alarm.state == "active":
            if alarm.present:
                alarm.present = False
                out.append(alarm.event(t_s))  # now latched: tell the station
            return out
        alarm.present = False
        out.append(self._clear(alarm, t_s))
        return out

    def _open(self, t_s: float, chk: Check) -> Alarm:
        cond, role = chk.key
        onset = self._since.get(chk.key, t_s)
        parts = (
            [self.bed, cond] + ([role] if role else []) + [str(int(round(self.epoch_s + onset)))]
        )
        alarm = Alarm(
            id="-".join(parts),
            condition=cond,
            role=role,
            priority=chk.priority,
            onset_t_s=onset,
            value=chk.value,
            limit=chk.limit,
            unit=chk.unit,
            technical=chk.technical,
            detail=chk.detail,
        )
        self._alarms[chk.key] = alarm
        self._by_id[alarm.id] = alarm
        return alarm

    def _clear(self, alarm: Alarm, t_s: float) -> AlarmEvent:
        alarm.state = "cleared"
        key = (alarm.condition, alarm.role)
        if self._alarms.get(key) is alarm:
            del self._alarms[key]
        self._by_id.pop(alarm.id, None)
        return alarm.event(t_s)
