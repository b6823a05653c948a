"""Alarms: conditions (``conditions.py``, one registry) and the engine that turns their
verdicts into alarms with delays, priorities, latching and acknowledgement (``engine.py``)."""

from device.alarms import arrhythmia  # noqa: F401  (registers the arrhythmia conditions)
from device.alarms.conditions import CONDITIONS, AlarmInputs, Check, Condition, RoleState, register
from device.alarms.engine import PRIORITIES, SUMMARY_KEYS, Alarm, AlarmEngine, AlarmEvent

__all__ = [
    "CONDITIONS",
    "PRIORITIES",
    "SUMMARY_KEYS",
    "Alarm",
    "AlarmEngine",
    "AlarmEvent",
    "AlarmInputs",
    "Check",
    "Condition",
    "RoleState",
    "register",
]
