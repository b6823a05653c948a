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
from dataclasses import dataclass, field
from typing import Any

from device.config import doc, register_section
from device.messages import SCHEMA_VERSION, iso_utc

PRIORITIES = ("low", "medium", "high")

PHYSIOLOGICAL = ("hr_high", "hr_low", "rr_high", "rr_low", "apnea")
TECHNICAL = ("signal_lost", "sensor_off", "poor_signal", "inference_error")


@dataclass
class AlarmsConfig:
    """Per-bed alarm limits and timing. Defaults are adult limits."""

    hr_high_bpm: float = doc("heart rate above this is tachycardia (hr_high)", 120.0)
    hr_low_bpm: float = doc("heart rate below this is bradycardia (hr_low)", 50.0)
    hr_high_severe_bpm: float = doc(
        "heart rate above this makes hr_high a high-priority alarm", 150.0
    )
    hr_low_severe_bpm: float = doc("heart rate below this makes hr_low a high-priority alarm", 40.0)
    rr_high_bpm: float = doc(
        "respiratory rate above this (breaths/min) is tachypnoea (rr_high)", 30.0
    )
    rr_low_bpm: float = doc("respiratory rate below this (breaths/min) is bradypnoea (rr_low)", 8.0)
    apnea_delay_s: float = doc(
        "no breath detected for this long raises apnea (high priority)", 20.0
    )
    condition_delay_s: float = doc(
        "a limit must be violated this long before its alarm sounds (IEC 60601-1-8 alarm-condition "
        "delay; 0 to 15 s)",
        5.0,
    )
    hr_hysteresis_bpm: float = doc(
        "an HR alarm clears once HR is back inside the limit by this much", 5.0
    )
    rr_hysteresis_bpm: float = doc(
        "an RR alarm clears once RR is back inside the limit by this much", 2.0
    )
    signal_lost_s: float = doc("no samples for this long on a role in use raises signal_lost", 2.0)
    sensor_off_s: float = doc(
        "an ECG/PPG signal flat or saturated for this long raises sensor_off (impedance: at least "
        "12 s, because normal breathing pauses for seconds at end-expiration)",
        3.0,
    )
    poor_signal_s: float = doc(
        "signal quality too low to measure for this long raises poor_signal", 10.0
    )
    latch_high: bool = doc("high-priority alarms stay active until acknowledged", True)
    enabled: list[str] = doc(
        "conditions to evaluate (default all): hr_high, hr_low, rr_high, rr_low, apnea, "
        "signal_lost, sensor_off, poor_signal, inference_error",
        factory=lambda: list(PHYSIOLOGICAL + TECHNICAL),
    )

    def validate(self) -> tuple[str, str] | None:
        if not 0.0 <= self.condition_delay_s <= 15.0:
            return "condition_delay_s", f"{self.condition_delay_s} is outside 0 to 15 s"
        if self.hr_low_bpm >= self.hr_high_bpm:
            return "hr_low_bpm", "must be below hr_high_bpm"
        if self.rr_low_bpm >= self.rr_high_bpm:
            return "rr_low_bpm", "must be below rr_high_bpm"
        if self.hr_high_severe_bpm < self.hr_high_bpm:
            return "hr_high_severe_bpm", "must be at or above hr_high_bpm"
        if self.hr_low_severe_bpm > self.hr_low_bpm:
            return "hr_low_severe_bpm", "must be at or below hr_low_bpm"
        if self.apnea_delay_s < 5.0 or self.apnea_delay_s > 60.0:
            return "apnea_delay_s", f"{self.apnea_delay_s} is outside 5 to 60 s"
        unknown = [c for c in self.enabled if c not in PHYSIOLOGICAL + TECHNICAL]
        if unknown:
            return "enabled", f"unknown condition(s) {', '.join(unknown)}"
        return None


register_section("alarms", AlarmsConfig)


@dataclass(frozen=True)
class RoleState:
    """Technical state of one input role during one second."""

    lost_s: float = 0.0  # how long no samples have arrived (consecutive)
    off_s: float = 0.0  # how long the signal has been flat or saturated (consecutive)
    off_reason: str = ""  # "flat" or "saturated"
    poor_s: float = 0.0  # how long its estimators have had no usable estimate (consecutive)
    error: str = ""  # an estimator on this role raised this second


@dataclass(frozen=True)
class AlarmInputs:
    """What the engine sees each second."""

    hr_bpm: float | None
    rr_bpm: float | None
    hr_role: str | None
    rr_role: str | None
    last_breath_s: float | None  # signal time of the newest detected breath (None: none yet)
    breathing_monitored: bool  # a breath detector (impedance, ...) is in use
    roles: dict[str, RoleState] = field(default_factory=dict)


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
    "latched",
)


@dataclass(frozen=True)
class _Check:
    """One condition's verdict this second: is it present, and with what value/limit/priority."""

    key: tuple[str, str | None]  # (condition, role)
    present: bool  # beyond the limit now (onset side)
    still: bool  # not yet clear (clear side, with hysteresis); implies alarm stays
    value: float | None
    limit: float | None
    priority: str
    delay_s: float  # how long ``present`` must hold before the alarm sounds
    technical: bool
    detail: str = ""
    #: the value is unknown this second (no valid estimate): an active alarm neither clears
    #: nor re-triggers, and an onset in progress starts over. A parameter that flickers
    #: between "low" and "unknown" must not make a new alarm each time (alarm fatigue).
    unknown: bool = False


class AlarmEngine:
    """Turns each second's vitals and technical states into alarm events."""

    def __init__(
        self, cfg: AlarmsConfig | None = None, bed: str = "bed", epoch_s: float = 0.0
    ) -> None:
        self.cfg = cfg or AlarmsConfig()
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
            if chk.key[0] not in self.cfg.enabled:
                continue
            events.extend(self._apply(t_s, chk))
        return events

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

    def summary(self) -> list[dict[str, Any]]:
        """Alarms active, latched or acknowledged-but-present, highest priority first."""
        alarms = sorted(
            self._alarms.values(), key=lambda a: (-PRIORITIES.index(a.priority), a.onset_t_s, a.id)
        )
        return [a.summary() for a in alarms]

    # -- state machine -----------------------------------------------------------------------
    def _apply(self, t_s: float, chk: _Check) -> list[AlarmEvent]:
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
            if not alarm.present:  # a latched alarm whose condition came back
                alarm.present = True
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

    def _open(self, t_s: float, chk: _Check) -> Alarm:
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

    # -- conditions --------------------------------------------------------------------------
    def _checks(self, t_s: float, inp: AlarmInputs) -> list[_Check]:
        c = self.cfg
        delay = c.condition_delay_s
        out: list[_Check] = []
        hr, rr = inp.hr_bpm, inp.rr_bpm

        def hr_prio_high(v: float | None) -> str:
            return "high" if v is not None and v > c.hr_high_severe_bpm else "medium"

        def hr_prio_low(v: float | None) -> str:
            return "high" if v is not None and v < c.hr_low_severe_bpm else "medium"

        # condition, value, limit, hysteresis, side (+1 above, -1 below), priority, source role
        limits = [
            ("hr_high", hr, c.hr_high_bpm, c.hr_hysteresis_bpm, +1, hr_prio_high(hr), inp.hr_role),
            ("hr_low", hr, c.hr_low_bpm, c.hr_hysteresis_bpm, -1, hr_prio_low(hr), inp.hr_role),
            ("rr_high", rr, c.rr_high_bpm, c.rr_hysteresis_bpm, +1, "medium", inp.rr_role),
            ("rr_low", rr, c.rr_low_bpm, c.rr_hysteresis_bpm, -1, "medium", inp.rr_role),
        ]
        for name, value, limit, hyst, side, prio, role in limits:
            out.append(_limit(name, value, limit, hyst, side, prio, delay, role))

        # Apnea: no breath for apnea_delay_s. Counted from the last detected breath (or from the
        # start of monitoring), and only while a breath detector has signal: a lost or detached
        # sensor is a technical alarm, not an apnea.
        if inp.breathing_monitored:
            last = inp.last_breath_s if inp.last_breath_s is not None else 0.0
            since_breath = t_s - last
            out.append(
                _Check(
                    ("apnea", None),
                    since_breath >= c.apnea_delay_s,
                    since_breath >= c.apnea_delay_s,
                    round(since_breath, 1),
                    c.apnea_delay_s,
                    "high",
                    0.0,
                    False,
                    f"no breath for {since_breath:.0f} s",
                )
            )
        else:
            out.append(
                _Check(("apnea", None), False, False, None, c.apnea_delay_s, "high", 0.0, False)
            )

        roles = inp.roles
        all_lost = bool(roles) and all(
            r.lost_s >= c.signal_lost_s or r.off_s > 0 for r in roles.values()
        )
        tech_prio = "high" if all_lost else "low"
        for role, st in sorted(roles.items()):
            lost = st.lost_s >= c.signal_lost_s
            out.append(
                _Check(
                    ("signal_lost", role),
                    lost,
                    lost,
                    round(st.lost_s, 1),
                    c.signal_lost_s,
                    tech_prio,
                    0.0,
                    True,
                    f"no {role} samples for {st.lost_s:.0f} s",
                )
            )
            off = st.off_s > 0 and not lost
            out.append(
                _Check(
                    ("sensor_off", role),
                    off,
                    off,
                    round(st.off_s, 1),
                    c.sensor_off_s,
                    tech_prio,
                    0.0,
                    True,
                    f"{role} signal {st.off_reason}" if off else "",
                )
            )
            poor = st.poor_s >= c.poor_signal_s and not lost and st.off_s == 0
            out.append(
                _Check(
                    ("poor_signal", role),
                    poor,
                    poor,
                    round(st.poor_s, 1),
                    c.poor_signal_s,
                    "low",
                    0.0,
                    True,
                    f"{role} quality too low to measure",
                )
            )
            err = bool(st.error)
            out.append(
                _Check(("inference_error", role), err, err, None, None, "low", 0.0, True, st.error)
            )
        return out


def _limit(
    condition: str,
    value: float | None,
    limit: float,
    hysteresis: float,
    side: int,
    priority: str,
    delay_s: float,
    role: str | None,
) -> _Check:
    """A limit alarm: beyond ``limit`` on ``side`` (+1 above, -1 below) to sound; back inside
    by ``hysteresis`` to clear; an unknown value changes nothing."""
    if value is None:
        return _Check(
            (condition, None), False, False, None, limit, priority, delay_s, False, "", True
        )
    beyond = side * (value - limit) > 0
    not_clear = side * (value - (limit - side * hysteresis)) > 0
    return _Check(
        (condition, None), beyond, not_clear, value, limit, priority, delay_s, False, _src(role)
    )


def _src(role: str | None) -> str:
    return f"from {role}" if role else ""
