"""Alarm conditions: each declared once, with its limit, delay, hysteresis and priority rule.

A condition looks at one second's ``AlarmInputs`` and says, for each thing it watches (the
bed, or one input role), whether it is present (``Check``). The engine (``engine.py``) turns
checks into alarms with their delays, latching and acknowledgement. Conditions are pure: no
state, no clock, no I/O.

Adding a condition is a class with ``key``, ``technical`` and ``checks()`` plus one
``register()`` call; its limits come from the ``[alarms]`` config section (``AlarmsConfig``)
or from the condition object itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from device.config import AlarmsConfig
from device.roles import Quantity

if TYPE_CHECKING:
    from device.beats.evidence import CardiacEvidence


@dataclass(frozen=True)
class RoleState:
    """Technical state of one input role during one second, as the alarms see it."""

    lost_s: float = 0.0  # how long no samples have arrived (consecutive)
    off_s: float = 0.0  # how long the signal has been flat or saturated (consecutive)
    off_reason: str = ""  # "flat" or "saturated"
    poor_s: float = 0.0  # how long its estimators have had no usable estimate (consecutive)
    error: str = ""  # an estimator on this role raised this second
    rate_error: float | None = None  # the source's measured rate error (0.01 = 1 % fast)


@dataclass(frozen=True)
class AlarmInputs:
    """What the engine sees each second."""

    hr_bpm: float | None
    rr_bpm: float | None
    hr_role: str | None
    rr_role: str | None
    last_breath_s: float | None  # signal time of the newest detected breath (None: none yet)
    breathing_monitored: bool  # a breath detector (impedance, ...) is in use
    roles: Mapping[str, RoleState] = field(default_factory=dict)
    #: faults of the appliance itself that the shell reports (condition key -> what is
    #: wrong), e.g. {"store_failed": "cannot write /var/lib/bedside/... (disk full)"}
    faults: Mapping[str, str] = field(default_factory=dict)
    #: what the beat stream shows of the heart (leads, pulses, recent beats), for the
    #: arrhythmia conditions; None without a cardiac channel
    cardiac: CardiacEvidence | None = None


@dataclass(frozen=True)
class Check:
    """One condition's verdict this second for one subject (the bed, or a role)."""

    key: tuple[str, str | None]  # (condition, role)
    present: bool  # beyond the limit now (onset side)
    still: bool  # not yet clear (clear side, with hysteresis); implies alarm stays
    value: float | None
    limit: float | None
    unit: str  # of value and limit: "bpm", "breaths/min", "s"
    priority: str
    delay_s: float = 0.0  # how long ``present`` must hold before the alarm sounds
    technical: bool = False
    detail: str = ""
    #: the value is unknown this second (no valid estimate): an active alarm neither clears
    #: nor re-triggers, and an onset in progress starts over. A parameter that flickers
    #: between "low" and "unknown" must not make a new alarm each time (alarm fatigue).
    unknown: bool = False


class Condition(Protocol):
    """What the engine needs of an alarm condition."""

    @property
    def key(self) -> str:
        """E.g. "hr_high": the alarm's ``condition`` and its name in ``[alarms] enabled``."""

    @property
    def technical(self) -> bool:
        """A technical alarm (the equipment), not a physiological one (the patient)."""

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        """The verdicts for this second (one per subject watched; may be none)."""


#: Units of the two measured quantities, as alarm events carry them.
UNITS = {Quantity.HR: "bpm", Quantity.RR: "breaths/min"}


@dataclass(frozen=True)
class LimitCondition:
    """A limit on HR or RR: beyond ``limit`` on ``side`` (+1 above, -1 below) for the
    alarm-condition delay to sound, back inside by the hysteresis to clear; an unknown value
    changes nothing. Priority is medium, or high beyond the ``severe`` limit when it has one."""

    key: str
    quantity: Quantity
    side: int
    limit: Callable[[AlarmsConfig], float]
    hysteresis: Callable[[AlarmsConfig], float]
    severe: Callable[[AlarmsConfig], float] | None = None
    technical: bool = False

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        hr = self.quantity == Quantity.HR
        value = inp.hr_bpm if hr else inp.rr_bpm
        role = inp.hr_role if hr else inp.rr_role
        limit, hyst, unit = self.limit(cfg), self.hysteresis(cfg), UNITS[self.quantity]
        severe = self.severe(cfg) if self.severe is not None else None
        priority = (
            "high"
            if severe is not None and value is not None and self.side * (value - severe) > 0
            else "medium"
        )
        if value is None:
            present = still = False
        else:
            present = self.side * (value - limit) > 0
            still = self.side * (value - (limit - self.side * hyst)) > 0
        return [
            Check(
                (self.key, None),
                present=present,
                still=still,
                value=value,
                limit=limit,
                unit=unit,
                priority=priority,
                delay_s=cfg.condition_delay_s,
                detail=f"from {role}" if role and value is not None else "",
                unknown=value is None,
            )
        ]


class Apnea:
    """No breath for ``apnea_delay_s``, counted from the last detected breath (or from the
    start of monitoring), and only while a breath detector has signal: a lost or detached
    sensor is a technical alarm, not an apnea. Always high priority."""

    key: str = "apnea"
    technical: bool = False

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        if not inp.breathing_monitored:
            no_breath, value, detail = False, None, ""
        else:
            since_breath = t_s - (inp.last_breath_s if inp.last_breath_s is not None else 0.0)
            no_breath = since_breath >= cfg.apnea_delay_s
            value, detail = round(since_breath, 1), f"no breath for {since_breath:.0f} s"
        return [
            Check(
                ("apnea", None),
                present=no_breath,
                still=no_breath,
                value=value,
                limit=cfg.apnea_delay_s,
                unit="s",
                priority="high",
                detail=detail,
            )
        ]


def _technical_priority(inp: AlarmInputs, cfg: AlarmsConfig) -> str:
    """Low; high when every input is lost or off (the monitor sees nothing of the patient)."""
    roles = inp.roles
    all_lost = bool(roles) and all(
        r.lost_s >= cfg.signal_lost_s or r.off_s > 0 for r in roles.values()
    )
    return "high" if all_lost else "low"


@dataclass(frozen=True)
class Verdict:
    """A per-role condition's judgement of one role this second."""

    present: bool
    value: float | None
    detail: str = ""
    unknown: bool = False


@dataclass(frozen=True)
class RoleCondition:
    """A technical condition judged on each input role (``judge``), with its limit (from the
    config) and unit; ``escalates``: high priority when every input is lost or off."""

    key: str
    judge: Callable[[str, RoleState, AlarmsConfig], Verdict]
    limit: Callable[[AlarmsConfig], float | None]
    unit: str
    escalates: bool = True
    technical: bool = True

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        priority = _technical_priority(inp, cfg) if self.escalates else "low"
        for role, st in sorted(inp.roles.items()):
            v = self.judge(role, st, cfg)
            yield Check(
                (self.key, role),
                present=v.present,
                still=v.present,
                value=v.value,
                limit=self.limit(cfg),
                unit=self.unit,
                priority=priority,
                technical=True,
                detail=v.detail,
                unknown=v.unknown,
            )


def _signal_lost(role: str, st: RoleState, cfg: AlarmsConfig) -> Verdict:
    """No samples of a role in use for ``signal_lost_s``."""
    lost = st.lost_s >= cfg.signal_lost_s
    return Verdict(lost, round(st.lost_s, 1), f"no {role} samples for {st.lost_s:.0f} s")


def _sensor_off(role: str, st: RoleState, cfg: AlarmsConfig) -> Verdict:
    """A role's signal flat or stuck at a rail for ``sensor_off_s`` (impedance: 12 s)."""
    off = st.off_s > 0 and st.lost_s < cfg.signal_lost_s
    return Verdict(off, round(st.off_s, 1), f"{role} signal {st.off_reason}" if off else "")


def _poor_signal(role: str, st: RoleState, cfg: AlarmsConfig) -> Verdict:
    """A role's estimators give no value for ``poor_signal_s`` while its signal is present."""
    poor = st.poor_s >= cfg.poor_signal_s and st.lost_s < cfg.signal_lost_s and st.off_s == 0
    return Verdict(poor, round(st.poor_s, 1), f"{role} quality too low to measure")


def _inference_error(role: str, st: RoleState, cfg: AlarmsConfig) -> Verdict:
    """An estimator on a role (e.g. a model) raised an error this second."""
    return Verdict(bool(st.error), None, st.error)


def _rate_off(role: str, st: RoleState, cfg: AlarmsConfig) -> Verdict:
    """A live source's measured sample rate is off its nominal rate by more than
    ``rate_error_percent`` (a board set to another rate, a failing crystal): its rates and
    times cannot be trusted. Measured against the monotonic clock (``device/clock.py``)."""
    if st.rate_error is None:
        return Verdict(False, None, unknown=True)
    pct = 100.0 * st.rate_error
    off = abs(pct) > cfg.rate_error_percent
    return Verdict(off, round(pct, 2), f"{role} arrives {pct:+.2f} % off its nominal rate")


@dataclass(frozen=True)
class DeviceFault:
    """A fault of the appliance that the daemon's shell reports in ``AlarmInputs.faults``
    under this condition's key (the core itself never sees disks or sockets)."""

    key: str
    priority: str = "low"
    technical: bool = True

    def checks(self, inp: AlarmInputs, cfg: AlarmsConfig, t_s: float) -> Iterable[Check]:
        detail = inp.faults.get(self.key, "")
        return [
            Check(
                (self.key, None),
                present=bool(detail),
                still=bool(detail),
                value=None,
                limit=None,
                unit="",
                priority=self.priority,
                technical=True,
                detail=detail,
            )
        ]


#: The registry: condition key -> condition, in the order the engine evaluates them.
CONDITIONS: dict[str, Condition] = {}


def register(condition: Condition) -> None:
    """Add (or replace) an alarm condition; ``[alarms] enabled`` may then name its key."""
    CONDITIONS[condition.key] = condition


for _c in (
    LimitCondition(
        "hr_high",
        Quantity.HR,
        side=+1,
        limit=lambda c: c.hr_high_bpm,
        hysteresis=lambda c: c.hr_hysteresis_bpm,
        severe=lambda c: c.hr_high_severe_bpm,
    ),
    LimitCondition(
        "hr_low",
        Quantity.HR,
        side=-1,
        limit=lambda c: c.hr_low_bpm,
        hysteresis=lambda c: c.hr_hysteresis_bpm,
        severe=lambda c: c.hr_low_severe_bpm,
    ),
    LimitCondition(
        "rr_high",
        Quantity.RR,
        side=+1,
        limit=lambda c: c.rr_high_bpm,
        hysteresis=lambda c: c.rr_hysteresis_bpm,
    ),
    LimitCondition(
        "rr_low",
        Quantity.RR,
        side=-1,
        limit=lambda c: c.rr_low_bpm,
        hysteresis=lambda c: c.rr_hysteresis_bpm,
    ),
    Apnea(),
    RoleCondition("signal_lost", _signal_lost, lambda c: c.signal_lost_s, "s"),
    RoleCondition("sensor_off", _sensor_off, lambda c: c.sensor_off_s, "s"),
    RoleCondition("poor_signal", _poor_signal, lambda c: c.poor_signal_s, "s", escalates=False),
    RoleCondition("inference_error", _inference_error, lambda c: None, "", escalates=False),
    RoleCondition("rate_off", _rate_off, lambda c: c.rate_error_percent, "%", escalates=False),
    # the store of unsent messages cannot be written (disk full, read-only, failing): messages
    # still go out from memory, but a restart or power cut now would lose what is unsent
    DeviceFault("store_failed"),
):
    register(_c)
