"""Unit tests of the alarm state machine (pure: fed inputs and a signal-time clock)."""

from __future__ import annotations

import pytest

from device.alarms import AlarmEngine, AlarmEvent, AlarmInputs, RoleState
from device.config import AlarmsConfig, ConfigError, parse_config


def inputs(
    hr: float | None = 80.0,
    rr: float | None = 15.0,
    last_breath: float | None = None,
    roles: dict[str, RoleState] | None = None,
    breathing: bool = False,
) -> AlarmInputs:
    return AlarmInputs(
        hr_bpm=hr,
        rr_bpm=rr,
        hr_role="ecg",
        rr_role="resp",
        last_breath_s=last_breath,
        breathing_monitored=breathing,
        roles=roles or {},
    )


def drive(
    engine: AlarmEngine, start: int, values: list[float | None], **kw: object
) -> list[AlarmEvent]:
    events = []
    for i, v in enumerate(values):
        events += engine.update(float(start + i), inputs(hr=v, **kw))  # type: ignore[arg-type]
    return events


def states(events: list[AlarmEvent]) -> list[tuple[float, str, str]]:
    return [(e.t_s, e.condition, e.state) for e in events]


def test_condition_delay_counts_seconds_of_signal_beyond_the_limit() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=5.0), bed="b1")
    ev = drive(eng, 1, [80, 80, 125, 125, 125, 125])  # above from t=3; 4 readings cover 4 s
    assert ev == []
    ev = drive(eng, 7, [125])  # the fifth reading: (2, 7] is 5 s beyond the limit
    assert states(ev) == [(7.0, "hr_high", "active")]
    assert ev[0].priority == "medium" and ev[0].limit == 120.0 and ev[0].value == 125.0
    assert ev[0].onset_t_s == 3.0 and ev[0].id == "b1-hr_high-3"


def test_a_brief_excursion_shorter_than_the_delay_never_alarms() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=5.0))
    assert drive(eng, 1, [125, 125, 125, 125, 80, 125, 125, 125, 125, 80]) == []


def test_zero_delay_alarms_at_once() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0))
    assert states(drive(eng, 1, [80, 45])) == [(2.0, "hr_low", "active")]


def test_hysteresis_holds_the_alarm_until_clearly_back_inside() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0, hr_hysteresis_bpm=5.0))
    ev = drive(eng, 1, [125, 118, 116, 121, 114])
    # 118, 116 and 121 are within 5 bpm of the 120 limit: still active; 114 clears it
    assert states(ev) == [(1.0, "hr_high", "active"), (5.0, "hr_high", "cleared")]


def test_unknown_value_neither_clears_nor_retriggers() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0))
    ev = drive(eng, 1, [45, None, None, 45, None, 45])
    assert states(ev) == [(1.0, "hr_low", "active")]


def test_priority_escalates_while_active_and_severe_alarms_latch_until_acknowledged() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0), bed="b")
    ev = drive(eng, 1, [130, 155])
    assert [(e.state, e.priority) for e in ev] == [("active", "medium"), ("active", "high")]
    alarm_id = ev[0].id
    assert ev[1].id == alarm_id
    ev = drive(eng, 3, [90, 90, 90])
    # condition gone, but a high-priority alarm latches: one event saying so, then nothing
    assert [(e.state, e.latched) for e in ev] == [("active", True)]
    assert eng.summary()[0]["latched"] is True
    ev = eng.acknowledge(alarm_id, 6.0)
    assert [(e.state, e.id) for e in ev] == [("acknowledged", alarm_id), ("cleared", alarm_id)]
    assert eng.summary() == []


def test_acknowledged_alarm_clears_by_itself_when_the_condition_ends() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0))
    (active,) = drive(eng, 1, [45])
    ack = eng.acknowledge(active.id, 2.0)
    assert [e.state for e in ack] == ["acknowledged"]
    assert eng.summary()[0]["state"] == "acknowledged"
    assert drive(eng, 2, [46]) == []  # still below 50 + 5 hysteresis: stays acknowledged
    assert states(drive(eng, 3, [70])) == [(3.0, "hr_low", "cleared")]


def test_acknowledging_unknown_or_cleared_ids_changes_nothing() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0))
    assert eng.acknowledge("nope") == []
    (active,) = drive(eng, 1, [45])
    drive(eng, 2, [80])
    assert eng.acknowledge(active.id) == []


def test_retrigger_after_clearing_makes_a_new_alarm_with_a_new_id() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=2.0), bed="b")
    ev = drive(eng, 1, [45, 45, 80, 80, 45, 45])
    assert [(e.state, e.id) for e in ev] == [
        ("active", "b-hr_low-1"),
        ("cleared", "b-hr_low-1"),
        ("active", "b-hr_low-5"),
    ]


def test_ids_are_stable_given_the_epoch_and_unique_across_restarts() -> None:
    a = AlarmEngine(AlarmsConfig(condition_delay_s=0.0), bed="b", epoch_s=1_700_000_000.0)
    b = AlarmEngine(AlarmsConfig(condition_delay_s=0.0), bed="b", epoch_s=1_700_000_600.0)
    (ea,) = drive(a, 1, [45])
    (eb,) = drive(b, 1, [45])
    assert ea.id == "b-hr_low-1700000001" and eb.id == "b-hr_low-1700000601"


def test_apnea_after_the_delay_since_the_last_breath_only_while_breathing_is_monitored() -> None:
    eng = AlarmEngine(AlarmsConfig(apnea_delay_s=20.0))
    ev = []
    for t in range(1, 40):
        ev += eng.update(float(t), inputs(last_breath=10.0, breathing=True))
    act = [e for e in ev if e.condition == "apnea"]
    assert states(act) == [(30.0, "apnea", "active")] and act[0].priority == "high"
    # an apnea alarm latches (high priority): a breath does not clear it before acknowledgement
    ev = eng.update(40.0, inputs(last_breath=39.5, breathing=True))
    assert [(e.condition, e.state, e.latched) for e in ev] == [("apnea", "active", True)]
    # no breath detector in use (e.g. impedance lead lost): no apnea alarm, however long
    eng2 = AlarmEngine(AlarmsConfig(apnea_delay_s=20.0))
    for t in range(1, 60):
        assert not [
            e
            for e in eng2.update(float(t), inputs(last_breath=None, breathing=False))
            if e.condition == "apnea"
        ]


def test_technical_alarms_and_their_priority() -> None:
    eng = AlarmEngine(AlarmsConfig())
    ok = RoleState()
    lost = RoleState(lost_s=2.0)
    ev = eng.update(1.0, inputs(roles={"ppg": lost, "ecg": ok}))
    assert [(e.condition, e.role, e.priority, e.technical) for e in ev] == [
        ("signal_lost", "ppg", "low", True)
    ]
    # every role gone: technical alarms become high priority (the running one escalates)
    ev = eng.update(
        2.0,
        inputs(
            hr=None,
            roles={"ppg": RoleState(lost_s=3.0), "ecg": RoleState(off_s=1.0, off_reason="flat")},
        ),
    )
    assert sorted((e.condition, e.role, e.priority, e.state) for e in ev) == [
        ("sensor_off", "ecg", "high", "active"),
        ("signal_lost", "ppg", "high", "active"),
    ]
    assert "flat" in next(e.detail for e in ev if e.condition == "sensor_off")
    ev = eng.update(3.0, inputs(roles={"ppg": ok, "ecg": ok}))
    assert sorted(states(ev)) == [(3.0, "sensor_off", "cleared"), (3.0, "signal_lost", "cleared")]


def test_poor_signal_and_inference_error() -> None:
    eng = AlarmEngine(AlarmsConfig(poor_signal_s=10.0))
    assert eng.update(1.0, inputs(roles={"ppg": RoleState(poor_s=9.0)})) == []
    ev = eng.update(
        2.0, inputs(roles={"ppg": RoleState(poor_s=10.0, error="hr_ppg_cnn: ValueError")})
    )
    assert sorted((e.condition, e.role) for e in ev) == [
        ("inference_error", "ppg"),
        ("poor_signal", "ppg"),
    ]
    err = next(e for e in ev if e.condition == "inference_error")
    assert "ValueError" in err.detail and err.priority == "low"


def test_disabled_conditions_are_not_evaluated() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0, enabled=["hr_low"]))
    assert drive(eng, 1, [130, 130]) == []
    assert states(drive(eng, 3, [45])) == [(3.0, "hr_low", "active")]


def test_alarm_event_record_and_payload_shape() -> None:
    eng = AlarmEngine(AlarmsConfig(condition_delay_s=0.0), bed="icu-3")
    (e,) = drive(eng, 1, [45])
    rec = e.to_record()
    assert {
        k: rec[k] for k in ("type", "condition", "priority", "state", "value", "limit", "role")
    } == {
        "type": "alarm",
        "condition": "hr_low",
        "priority": "medium",
        "state": "active",
        "value": 45.0,
        "limit": 50.0,
        "role": None,
    }
    pay = e.to_payload("icu-3", 0.0)
    assert (
        pay["schema_version"] == 1
        and pay["bed"] == "icu-3"
        and pay["ts"] == "1970-01-01T00:00:00.000Z"
    )
    assert e.kind == "alarm"


@pytest.mark.parametrize(
    ("table", "bad_key"),
    [
        ({"condition_delay_s": 20}, "condition_delay_s"),
        ({"hr_low_bpm": 130}, "hr_low_bpm"),
        ({"hr_hihg_bpm": 130}, "hr_hihg_bpm"),
        ({"enabled": ["hr_high", "tachy"]}, "enabled"),
    ],
)
def test_bad_alarm_config_names_the_key(table: dict[str, object], bad_key: str) -> None:
    import device.alarms  # noqa: F401  (registers the [alarms] section)

    with pytest.raises(ConfigError) as err:
        parse_config({"alarms": table}, "bed.toml")
    assert f"alarms.{bad_key}" in err.value.message and "bed.toml" in err.value.message
