"""The five life-threatening arrhythmia conditions on real recordings, spliced where the
condition must be made (lab/splice.py), through the same core ``bedside process`` runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.alarms import AlarmEvent
from device.config import load_config
from device.offline import process_recording
from device.recording import Recording, read_recording
from lab.splice import time_scale

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "device" / "data"
MITDB = DATA / "mitdb_205_excerpt.hea"
VFDB = DATA / "vfdb_426_excerpt.csv.gz"
BIDMC = DATA / "bidmc_09_excerpt.csv.gz"
LIFE = (
    "asystole",
    "extreme_bradycardia",
    "extreme_tachycardia",
    "ventricular_tachycardia",
    "ventricular_fibrillation",
)


def alarms(rec: Recording, fs: float | None = None) -> list[AlarmEvent]:
    return [m for m in process_recording(rec, load_config(None)) if isinstance(m, AlarmEvent)]


def onsets(events: list[AlarmEvent], condition: str) -> list[AlarmEvent]:
    return [e for e in events if e.condition == condition and e.state == "active" and not e.latched]


def with_channels(rec: Recording, **channels: np.ndarray) -> Recording:
    cols = dict(rec.channels)
    for name, x in channels.items():
        cols[rec.roles[name]] = x
    return Recording(rec.path, rec.fs_hz, cols, rec.roles)


def quiet_line(n: int, seed: int, scale: float = 0.01) -> np.ndarray:
    """A lead connected to a heart that does not beat: low noise and a slow baseline drift."""
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(n) + 0.02 * np.sin(np.arange(n) / 500.0)


def test_a_quiet_recording_raises_none_of_them() -> None:
    events = alarms(read_recording(BIDMC))
    assert not [e for e in events if e.condition in LIFE]


def test_ventricular_tachycardia_sounds_on_the_mitdb_runs_latched_with_its_evidence() -> None:
    events = alarms(read_recording(MITDB))
    vt = onsets(events, "ventricular_tachycardia")
    assert vt, "the annotated runs of VT (28.8 s and 33.0 s in the excerpt) raise the alarm"
    first = vt[0]
    assert 28.0 <= first.onset_t_s <= 34.0
    assert first.priority == "high" and not first.technical
    assert "ecg:" in first.detail and "pulse" in first.detail
    # high priority latches: it stays active once the runs end, until acknowledged
    later = [e for e in events if e.id == first.id]
    assert not any(e.state == "cleared" for e in later)
    assert not onsets(events, "asystole") and not onsets(events, "ventricular_fibrillation")


def test_ventricular_fibrillation_sounds_on_real_vf() -> None:
    rec = read_recording(VFDB, role_map={"ECG": "ecg"})
    events = alarms(rec)
    vf = onsets(events, "ventricular_fibrillation")
    assert vf, "annotated VF from 16 s of the excerpt"
    assert 16.0 <= vf[0].onset_t_s <= 24.0
    assert "fibrillatory" in vf[0].detail


def test_asystole_sounds_when_the_heart_stops_and_no_pulse_shows() -> None:
    rec = read_recording(BIDMC)
    stop = int(120 * rec.fs_hz)
    ecg, ppg = rec.role("ecg").copy(), rec.role("ppg").copy()
    n = len(ecg) - stop
    ecg[stop:] = np.median(ecg) + quiet_line(n, 1)
    ppg[stop:] = np.median(ppg) + quiet_line(n, 2, 0.002)
    events = alarms(with_channels(rec, ecg=ecg, ppg=ppg))
    asy = onsets(events, "asystole")
    assert asy, "no QRS and no pulse from 120 s"
    assert 123.0 <= asy[0].onset_t_s <= 127.0  # 4 s without a QRS
    assert "no QRS" in asy[0].detail
    assert asy[0].t_s - 120.0 <= 6.0


def test_a_pulse_on_the_pleth_refutes_an_ecg_asystole() -> None:
    rec = read_recording(BIDMC)
    stop = int(120 * rec.fs_hz)
    ecg = rec.role("ecg").copy()
    ecg[stop:] = np.median(ecg) + quiet_line(len(ecg) - stop, 1)
    events = alarms(with_channels(rec, ecg=ecg))  # the pleth still pulses
    assert not onsets(events, "asystole")


def test_a_lead_off_is_never_an_asystole() -> None:
    rec = read_recording(MITDB)
    stop = int(10 * rec.fs_hz)
    both = {k: rec.role(k).copy() for k in rec.roles}
    for x in both.values():
        x[stop:] = x[stop]  # both leads read a constant: the inputs are open
    events = alarms(with_channels(rec, **both))
    assert not onsets(events, "asystole")
    off = [e for e in events if e.condition == "sensor_off" and e.state == "active"]
    assert off, "a technical alarm says the leads are off"
    # one lead off, the other still beating: the other lead shows the QRS complexes
    one = rec.role("ecg:V1").copy()
    one[stop:] = one[stop]
    assert not onsets(alarms(with_channels(rec, **{"ecg:V1": one})), "asystole")


def test_extreme_bradycardia_and_tachycardia_count_consecutive_beats() -> None:
    rec = read_recording(BIDMC)  # about 77 bpm
    fs = rec.fs_hz
    slow = {k: time_scale(rec.role(k), 1.0 / 2.2) for k in rec.roles}  # about 35 bpm
    slow_rec = Recording(rec.path, fs, {rec.roles[k]: v for k, v in slow.items()}, rec.roles)
    b = onsets(alarms(slow_rec), "extreme_bradycardia")
    assert b and b[0].value is not None and b[0].value < 40.0
    fast = {k: time_scale(rec.role(k), 2.0) for k in rec.roles}  # about 154 bpm
    fast_rec = Recording(rec.path, fs, {rec.roles[k]: v for k, v in fast.items()}, rec.roles)
    t = onsets(alarms(fast_rec), "extreme_tachycardia")
    assert t and t[0].value is not None and t[0].value > 140.0
    assert "17 beats" in t[0].detail


@pytest.mark.parametrize("chunk", [7, 1000])
def test_alarms_do_not_depend_on_chunking(chunk: int) -> None:
    rec = read_recording(MITDB).excerpt(20.0, 45.0)
    cfg = load_config(None)
    a = [m.to_record() for m in process_recording(rec, cfg, chunk=chunk, beats=True)]
    b = [m.to_record() for m in process_recording(rec, cfg, chunk=360, beats=True)]
    assert a == b


def test_mostly_normal_beats_set_waveform_vt_aside_only_when_there_are_enough() -> None:
    from device.alarms.arrhythmia import mostly_normal
    from device.beats.beat import Beat, BeatClass
    from device.roles import Role

    def beats(classes: str, t0: float = 10.0) -> list[Beat]:
        return [
            Beat(t0 + 0.5 * i, Role.ECG, "II", BeatClass(c), 1.0) for i, c in enumerate(classes)
        ]

    assert mostly_normal(beats("NNNNNNV"), 13.0)  # 6 of 7 normal
    assert not mostly_normal(beats("NNVVVVV"), 13.0)  # a run of ventricular beats
    assert not mostly_normal(beats("NN"), 13.0)  # too few to judge
    assert not mostly_normal(beats("NNNNNN", t0=0.0), 13.0)  # older than the 4 s window
    assert not mostly_normal(beats("QQQQQN"), 13.0)  # unclassifiable beats do not count
