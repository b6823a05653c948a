"""End to end: the real daemon (``python -m device run``) as a subprocess, replaying the bundled
BIDMC excerpt into a real Mosquitto, checked by a paho subscriber like a nurses' station."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from device.config import load_config
from device.offline import process_recording
from device.recording import Recording, read_csv
from lab.writers import write_csv

ROOT = Path(__file__).resolve().parents[1]
BED = "test1"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: the replay's HR against the bedside monitor's (1 Hz, an averaged ECG rate): measured MAE
#: 0.22 bpm on this excerpt (seconds 32-210); 1.0 bpm leaves room without hiding a broken path
HR_MAE_TOLERANCE_BPM = 1.0


def start_daemon(broker_url: str, *extra: str, replay: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "device",
        "run",
        "--replay",
        str(replay),
        "--broker",
        broker_url,
        "--bed",
        BED,
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout_s)


def stored(state_dir: Path, bed: str = BED) -> dict[str, int]:
    """Messages of each kind the bed's store holds now (read beside the running daemon)."""
    import sqlite3

    path = state_dir / f"{bed}-store.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT kind, count(*) FROM messages GROUP BY kind").fetchall())
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        db.close()


def retained_status(broker, mqtt_listener, bed: str = BED):  # type: ignore[no-untyped-def]
    """What a station that subscribes now gets: the retained status (a NEW subscriber)."""
    fresh = mqtt_listener(broker, f"bedside/{bed}/status")
    assert fresh.wait_for(lambda ms: len(ms) >= 1, 10), "no retained status"
    msg = fresh.messages[0]
    assert msg.retain, "the first status a new subscriber gets must be the retained one"
    fresh.close()
    return msg.json()


@pytest.mark.e2e
def test_replay_vitals_agree_with_reference_and_with_process(
    mosquitto,
    mqtt_listener,
    excerpt,
    excerpt_reference_hr,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    station = mqtt_listener(mosquitto, f"bedside/{BED}/#")
    proc = start_daemon(
        mosquitto.url,
        "--speed",
        "30",
        "--state-dir",
        str(tmp_path / "state"),
        replay=excerpt,
        log=tmp_path / "daemon.log",
    )
    try:
        rc = proc.wait(120)  # a finished replay ends the daemon by itself
    finally:
        stop(proc, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert rc == 0, log
    assert "Traceback" not in log
    assert station.wait_for(
        lambda ms: any(
            m.json().get("state") == "offline" for m in ms if m.topic.endswith("/status")
        ),
        10,
    ), log

    vitals = [m.json() for m in station.on("/vitals")]
    assert [v["t_s"] for v in vitals] == [float(k) for k in range(1, 211)]  # every second, in order
    v = vitals[100]
    assert v["schema_version"] == 1 and v["bed"] == BED and ISO_UTC.match(v["ts"])
    for key in ("hr_bpm", "rr_bpm", "hr_source", "rr_source", "sqi", "measurements"):
        assert key in v
    mdc = {m["mdc"]: m for m in v["measurements"]}
    assert mdc["MDC_ECG_HEART_RATE"]["value"] == v["hr_bpm"]
    assert mdc["MDC_ECG_HEART_RATE"]["unit"] == "MDC_DIM_BEAT_PER_MIN"
    assert mdc["MDC_TTHOR_RESP_RATE"]["value"] == v["rr_bpm"]
    assert not any(m.retain for m in station.on("/vitals"))

    # the daemon runs the same core as `bedside process`: identical values, second by second
    offline = [
        m.to_record()
        for m in process_recording(read_csv(excerpt), load_config(None))
        if m.kind == "vitals"
    ]
    keys = ("t_s", "hr_bpm", "rr_bpm", "hr_source", "rr_source")
    assert [{k: r[k] for k in keys} for r in offline] == [{k: r[k] for k in keys} for r in vitals]

    # and agree with the bedside monitor's HR from the record's _Numerics
    err, have_ref = [], 0
    for r in vitals:
        t = int(r["t_s"])
        if t >= 32 and t in excerpt_reference_hr:
            have_ref += 1
            if r["hr_bpm"] is not None:
                err.append(abs(r["hr_bpm"] - excerpt_reference_hr[t]))
    mae = float(np.mean(err))
    print(
        f"e2e HR vs monitor: MAE {mae:.3f} bpm over {len(err)} s, "
        f"coverage {len(err) / have_ref:.1%}"
    )
    assert len(err) >= 0.9 * have_ref
    assert mae <= HR_MAE_TOLERANCE_BPM

    final = retained_status(mosquitto, mqtt_listener)
    assert final["state"] == "offline" and final["reason"] == "stopped"
    assert final["counters"]["vitals"] == 210


@pytest.mark.e2e
def test_status_online_retained_then_offline_on_sigterm(
    mosquitto,
    mqtt_listener,
    excerpt,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    station = mqtt_listener(mosquitto, f"bedside/{BED}/#")
    proc = start_daemon(
        mosquitto.url,
        "--speed",
        "20",
        "--loop",
        "--state-dir",
        str(tmp_path / "state"),
        replay=excerpt,
        log=tmp_path / "daemon.log",
    )
    try:
        assert station.wait_for(lambda ms: sum(m.topic.endswith("/vitals") for m in ms) >= 20, 60)
        status = retained_status(mosquitto, mqtt_listener)
        assert status["state"] == "online" and status["bed"] == BED and ISO_UTC.match(status["ts"])
        assert status["mode"] == "replay" and status["alarms"] == []
        (src,) = status["sources"].values()
        assert src["type"] == "replay" and src["loop"] is True
        assert status["queue"]["dropped_frames"] == 0
        rc = stop(proc, signal.SIGTERM)
    finally:
        stop(proc, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert rc == 0, log
    assert station.wait_for(
        lambda ms: ms[-1].topic.endswith("/status") and ms[-1].json()["state"] == "offline", 10
    )
    final = retained_status(mosquitto, mqtt_listener)
    assert final["state"] == "offline" and final["reason"] == "stopped"


@pytest.mark.e2e
def test_last_will_says_offline_after_sigkill(
    mosquitto,
    mqtt_listener,
    excerpt,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    station = mqtt_listener(mosquitto, f"bedside/{BED}/status")
    proc = start_daemon(
        mosquitto.url,
        "--speed",
        "5",
        "--loop",
        "--keepalive",
        "1",
        "--state-dir",
        str(tmp_path / "state"),
        replay=excerpt,
        log=tmp_path / "daemon.log",
    )
    try:
        assert station.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms), 30)
        proc.kill()
        proc.wait(10)
        # the broker notices the silent client after 1.5 x keepalive and publishes the will
        assert station.wait_for(lambda ms: ms[-1].json()["state"] == "offline", 20), [
            m.json() for m in station.messages
        ]
    finally:
        stop(proc, signal.SIGKILL)
    will = station.messages[-1].json()
    assert will["reason"] == "connection lost (last will)" and will["bed"] == BED
    assert retained_status(mosquitto, mqtt_listener)["state"] == "offline"


def _flat_ppg_recording(excerpt: Path, out: Path, flat_from_s: float, length_s: float) -> Path:
    """The real excerpt with its pleth held flat from ``flat_from_s``: a pulse-oximeter clip
    that came off the finger (the other channels stay real)."""
    rec = read_csv(excerpt)
    ch = {k: v.copy() for k, v in rec.channels.items()}
    i = int(flat_from_s * rec.fs_hz)
    ch["PLETH"][i:] = ch["PLETH"][i]
    write_csv(
        out,
        Recording(str(out), rec.fs_hz, ch, rec.roles).excerpt(0, length_s),
        names=["RESP", "PLETH", "II"],
    )
    return out


@pytest.mark.e2e
def test_alarm_published_at_qos1_and_acknowledged_over_mqtt(
    mosquitto,
    mqtt_listener,
    excerpt,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    rec = _flat_ppg_recording(excerpt, tmp_path / "ppg_off.csv.gz", flat_from_s=20, length_s=150)
    station = mqtt_listener(mosquitto, f"bedside/{BED}/#")
    proc = start_daemon(
        mosquitto.url,
        "--speed",
        "10",
        "--state-dir",
        str(tmp_path / "state"),
        replay=rec,
        log=tmp_path / "daemon.log",
    )
    try:
        assert station.wait_for(lambda ms: any(m.topic.endswith("/alarms") for m in ms), 60)
        alarm = station.on("/alarms")[0]
        body = alarm.json()
        assert not alarm.retain
        assert (
            body["condition"] == "sensor_off"
            and body["role"] == "ppg"
            and body["state"] == "active"
        )
        assert body["id"].startswith(f"{BED}-") and ISO_UTC.match(body["ts"])
        assert station.wait_for(
            lambda ms: any(
                m.topic.endswith("/status") and body["id"] in str(m.json().get("alarms", []))
                for m in ms
            ),
            20,
        )

        station.publish(f"bedside/{BED}/cmd/ack", f'{{"id": "{body["id"]}"}}')
        assert station.wait_for(
            lambda ms: any(
                m.topic.endswith("/alarms") and m.json()["state"] == "acknowledged" for m in ms
            ),
            20,
        )
        acked = [m.json() for m in station.on("/alarms") if m.json()["state"] == "acknowledged"][0]
        assert acked["id"] == body["id"]
        station.publish(f"bedside/{BED}/cmd/ack", "not json")  # ignored, counted, no crash
        time.sleep(0.5)  # the broker forwards it to the daemon after acknowledging it to us
        rc = stop(proc, signal.SIGTERM)
    finally:
        stop(proc, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert rc == 0, log
    final = retained_status(mosquitto, mqtt_listener)
    assert final["counters"]["commands_applied"] == 1
    # the malformed one was refused by the MQTT sink (counted by kind), not by the core
    assert final["mqtt"]["commands_rejected"] == {"bad_schema": 1}
    assert final["mqtt"]["outbox_pending"] == 0
    assert any(a["id"] == body["id"] and a["state"] == "acknowledged" for a in final["alarms"])


@pytest.mark.e2e
def test_broker_down_at_start_daemon_keeps_running_and_delivers_alarms(
    mosquitto_factory,
    mqtt_listener,
    excerpt,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    broker = mosquitto_factory(persistent=True)
    station = mqtt_listener(
        broker, f"bedside/{BED}/alarms", client_id="station-e2e", persistent=True
    )
    station.close()
    broker.stop()
    rec = _flat_ppg_recording(excerpt, tmp_path / "ppg_off.csv.gz", flat_from_s=10, length_s=210)
    state = tmp_path / "state"
    proc = start_daemon(
        broker.url,
        "--speed",
        "10",
        "--loop",
        "--state-dir",
        str(state),
        replay=rec,
        log=tmp_path / "daemon.log",
    )
    try:
        deadline = time.monotonic() + 60
        while not stored(state).get("alarm") and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.1)
        assert stored(state).get("alarm"), "the alarm raised while the broker is down is not stored"
        assert stored(state).get("vitals")  # and the seconds' vitals too
        broker.start()
        station = mqtt_listener(
            broker, f"bedside/{BED}/alarms", client_id="station-e2e", persistent=True
        )
        assert station.wait_for(
            lambda ms: any(m.json()["condition"] == "sensor_off" for m in ms), 60
        )
        assert _until(
            lambda: retained_status(broker, mqtt_listener)["mqtt"]["vitals_historical"] > 0, 30
        )
        status = retained_status(broker, mqtt_listener)
        assert status["state"] == "online"
        rc = stop(proc, signal.SIGINT)
    finally:
        stop(proc, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert rc == 0, log
    assert log.count("cannot reach broker") == 1, log  # once per outage, not once per retry


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[bed]\nid = "icu-3"\n[mqtt]\nbrokr = "mqtt://127.0.0.1:1883"\n')
    good = tmp_path / "good.toml"
    good.write_text(
        '[bed]\nid = "icu-3"\n[mqtt]\nbroker = "mqtt://127.0.0.1:1883"\nkeepalive_s = 5\n'
        '[replay]\npath = "device/data/bidmc_09_excerpt.csv.gz"\nspeed = 2.0\n'
    )
    run = [sys.executable, "-m", "device", "run", "--check-config", "--config"]
    r = subprocess.run([*run, str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "mqtt.brokr" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    r = subprocess.run([*run, str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*run, str(good), "--broker", "http://x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "mqtt.broker" in r.stderr


# -- the shell's parts, in-process -------------------------------------------------------
def test_replay_source_delivers_every_sample_once_in_lock_step(excerpt) -> None:  # type: ignore[no-untyped-def]
    import threading

    from device.sources.base import FrameQueue
    from device.sources.replay import ReplaySource

    rec = read_csv(excerpt).excerpt(0, 30)
    src = ReplaySource(rec, speed=200)
    q = FrameQueue()
    stop = threading.Event()
    src.start(q, stop)
    frames = []
    deadline = time.monotonic() + 30
    while not (src.finished and q.qsize() == 0) and time.monotonic() < deadline:
        f = q.get(timeout=0.1)
        if f is not None:
            frames.append(f)
    src.join(5)
    assert src.finished and frames
    for f in frames:  # every frame covers the same span on every role
        assert len({len(x) for x in f.samples.values()}) == 1
    for role, x in rec.role_signals().items():
        assert np.array_equal(np.concatenate([f.samples[role] for f in frames]), x)
    assert src.status()["signal_s"] == 30.0 and q.dropped_frames == 0

    looping = ReplaySource(rec.excerpt(0, 2), speed=200, loop=True)
    q2 = FrameQueue()
    stop2 = threading.Event()
    looping.start(q2, stop2)
    # (the replay waits for its reader: take what it sends)
    assert _until(lambda: (q2.get(0), looping.status()["loops"] >= 2)[1], 20)
    stop2.set()
    looping.join(5)
    assert not looping.finished


def _until(pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


class _BurstThenSilent:
    """A live source (wall-clocked) that delivers 20 s of a real recording at once and then
    nothing, like a sensor board whose cable was pulled (and which does not report it)."""

    live = True

    def __init__(self, rec: Recording) -> None:
        self.name = "burst"
        self.roles = dict.fromkeys(rec.roles, rec.fs_hz)
        self._signals = {r: x[: int(20 * rec.fs_hz)] for r, x in rec.role_signals().items()}
        self._thread = None

    def start(self, out, stop) -> None:  # type: ignore[no-untyped-def]
        import threading

        from device.sources.base import Frame

        def run() -> None:
            out.put(Frame(self.name, dict(self._signals), wall_s=time.monotonic()))
            stop.wait()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout=None) -> None:  # type: ignore[no-untyped-def]
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, object]:
        return {"type": "test-burst"}

    @property
    def finished(self) -> bool:
        return False


class _PacedBlocks(_BurstThenSilent):
    """A live source that delivers blocks of ``block_s`` of a real recording in real time, like
    an audio card read in large blocks; ``done`` is set after the last block."""

    def __init__(self, rec: Recording, block_s: float, n_blocks: int) -> None:
        super().__init__(rec)
        import threading

        self.name = "paced"
        self._n = int(block_s * rec.fs_hz)
        self._block_s, self._blocks = block_s, n_blocks
        self._all = rec.role_signals()
        self.done = threading.Event()

    def start(self, out, stop) -> None:  # type: ignore[no-untyped-def]
        import threading

        from device.sources.base import Frame

        def run() -> None:
            t0 = time.monotonic()
            for k in range(self._blocks):
                if stop.wait(max(0.0, t0 + (k + 1) * self._block_s - time.monotonic())):
                    return
                block = {r: x[k * self._n : (k + 1) * self._n] for r, x in self._all.items()}
                out.put(Frame(self.name, block, wall_s=time.monotonic()))
            self.done.set()
            stop.wait()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()


@pytest.mark.e2e
def test_live_source_with_slow_block_rhythm_is_not_gapped(mosquitto, excerpt) -> None:  # type: ignore[no-untyped-def]
    import threading

    from device.daemon import Daemon
    from device.sinks.mqtt import MqttSink

    cfg = load_config(None)
    cfg.mqtt.broker = mosquitto.url
    source = _PacedBlocks(read_csv(excerpt), block_s=0.6, n_blocks=8)
    stop = threading.Event()
    daemon = Daemon(cfg, [source], [MqttSink(cfg.mqtt, "blocks")], stop=stop, bed="blocks")
    worker = threading.Thread(target=daemon.run)
    worker.start()
    try:
        assert source.done.wait(30)
        time.sleep(0.2)  # the main loop takes the last block
    finally:
        stop.set()
        worker.join(20)
    # 0.6 s between blocks is the source's rhythm, not silence: nothing was invented, and the
    # signal clock is exactly the 4.8 s delivered
    assert sum(daemon._clocks["paced"].gap_samples.values()) == 0
    assert daemon.monitor.t_s == 4.0


@pytest.mark.e2e
def test_silent_live_source_is_gapped_and_raises_signal_lost(
    mosquitto,
    mqtt_listener,
    excerpt,  # type: ignore[no-untyped-def]
) -> None:
    import threading

    from device.daemon import Daemon
    from device.sinks.mqtt import MqttSink

    cfg = load_config(None)
    cfg.mqtt.broker = mosquitto.url
    station = mqtt_listener(mosquitto, "bedside/gaptest/#")
    stop = threading.Event()
    daemon = Daemon(
        cfg,
        [_BurstThenSilent(read_csv(excerpt))],
        [MqttSink(cfg.mqtt, "gaptest")],
        stop=stop,
        bed="gaptest",
    )
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(daemon.run()))
    worker.start()
    try:
        assert station.wait_for(
            lambda ms: any(
                m.topic.endswith("/alarms") and m.json()["condition"] == "signal_lost" for m in ms
            ),
            30,
        )
    finally:
        stop.set()
        worker.join(20)
    assert result == [0]
    lost = [m.json() for m in station.on("/alarms") if m.json()["condition"] == "signal_lost"]
    assert {a["role"] for a in lost} <= {"ecg", "ppg", "resp"}
    vitals = [m.json() for m in station.on("/vitals")]
    # the clock kept going past the 20 s delivered, and those seconds have no made-up values
    assert vitals[-1]["t_s"] > 21
    assert all(v["hr_bpm"] is None for v in vitals if v["t_s"] >= 24)
    assert sum(daemon._clocks["burst"].gap_samples.values()) > 0
    assert daemon.live and daemon.monitor.epoch_s > 0  # live alarm ids are unique across restarts


@pytest.mark.e2e
def test_alarm_raised_without_broker_is_delivered_by_the_next_daemon_run(
    mosquitto_factory,
    mqtt_listener,
    excerpt,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    broker = mosquitto_factory(start=False)  # the ward's broker is down
    state = tmp_path / "state"
    rec = _flat_ppg_recording(excerpt, tmp_path / "ppg_off.csv.gz", flat_from_s=10, length_s=40)
    first = start_daemon(
        broker.url,
        "--speed",
        "20",
        "--state-dir",
        str(state),
        replay=rec,
        log=tmp_path / "first.log",
    )
    try:
        assert first.wait(60) == 0, (tmp_path / "first.log").read_text()
    finally:
        stop(first, signal.SIGKILL)
    assert stored(state).get("alarm")  # kept on disk when the daemon exited

    broker.start()
    station = mqtt_listener(broker, f"bedside/{BED}/alarms")
    second = start_daemon(
        broker.url,
        "--speed",
        "20",
        "--loop",
        "--state-dir",
        str(state),
        replay=excerpt,
        log=tmp_path / "second.log",
    )
    try:
        assert station.wait_for(
            lambda ms: any(m.json()["condition"] == "sensor_off" for m in ms), 30
        )
        assert _until(lambda: not stored(state).get("alarm"), 10), (
            "acknowledged alarm still in the store"
        )
        assert stop(second, signal.SIGTERM) == 0
    finally:
        stop(second, signal.SIGKILL)


RRUJO_WAV = (
    ROOT.parent
    / "shared"
    / "data"
    / "rrujo"
    / "Database"
    / "Dataset ThinklabsO"
    / "10"
    / "2023022213102.wav"
)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not RRUJO_WAV.exists(), reason=f"needs the shared RRuJO recording {RRUJO_WAV}")
def test_daemon_captures_audio_through_portaudio_and_publishes_breathing_rate(
    mosquitto,
    mqtt_listener,
    alsa_replay_home,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import ctypes.util

    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("PortAudio library missing: apt-get install libportaudio2")
    # a stethoscope recording of paced breathing at 10 /min, played into ALSA's file plugin
    env, _ = alsa_replay_home(RRUJO_WAV)
    cfg = tmp_path / "audio.toml"
    # the file device is pulled, not paced: read it at 20 x real time (one pass in ~3 s)
    cfg.write_text('[audio]\ndevice = "bedside_replay"\nfs_hz = 8000.0\npace_x = 20.0\n')
    station = mqtt_listener(mosquitto, "bedside/audio1/#")
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device",
                "run",
                "--config",
                str(cfg),
                "--broker",
                mosquitto.url,
                "--bed",
                "audio1",
                "--state-dir",
                str(tmp_path / "state"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        ok = station.wait_for(lambda ms: sum(m.topic.endswith("/vitals") for m in ms) >= 60, 90)
        assert ok, (tmp_path / "daemon.log").read_text()
        status = retained_status(mosquitto, mqtt_listener, "audio1")
        assert stop(proc, signal.SIGTERM) == 0
    finally:
        stop(proc, signal.SIGKILL)
    assert status["mode"] == "live" and status["state"] == "online"
    (src,) = status["sources"].values()
    assert src["overflows"] == 0 and status["queue"]["dropped_frames"] == 0
    vitals = [m.json() for m in station.on("/vitals")]
    rr = [v["rr_bpm"] for v in vitals[30:60] if v["rr_bpm"] is not None]
    assert all(v["rr_source"] == "audio" for v in vitals if v["rr_bpm"] is not None)
    assert all(
        m["mdc"] == "MDC_RESP_RATE"
        for v in vitals
        for m in v["measurements"]
        if m["source"] == "audio"
    )
    print(f"e2e audio RR (paced 10 /min): median {np.median(rr):.2f} over {len(rr)} of 30 s")
    assert len(rr) >= 24, vitals[30:60]
    assert abs(float(np.median(rr)) - 10.0) < 1.0, rr


def test_run_flags_override_the_config_file(tmp_path: Path) -> None:
    from device.cli import build_parser
    from device.commands.run import apply_flags

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(
        '[bed]\nid = "from-file"\n[mqtt]\nkeepalive_s = 30\n'
        '[serial]\nurl = "/dev/ttyS9"\nbaud = 9600\n'
    )
    args = build_parser().parse_args(
        [
            "run",
            "--config",
            str(cfg_file),
            "--bed",
            "icu-9",
            "--serial",
            "/dev/ttyACM0@115200",
            "--format",
            "text",
            "--fs",
            "250",
            "--audio",
            "USB Audio",
            "--audio-rate",
            "4000",
            "--keepalive",
            "3",
            "--replay",
            "x.csv",
            "--speed",
            "5",
            "--loop",
            "--use",
            "ppg,resp",
        ]
    )
    cfg = apply_flags(load_config(args.config), args)
    assert cfg.bed.id == "icu-9" and cfg.mqtt.keepalive_s == 3
    serial = cfg.serial
    assert (serial.url, serial.baud, serial.format, serial.fs_hz) == (
        "/dev/ttyACM0",
        115200,
        "text",
        250.0,
    )
    audio = cfg.audio
    assert (audio.device, audio.fs_hz) == ("USB Audio", 4000.0)
    assert (cfg.replay.path, cfg.replay.speed, cfg.replay.loop, cfg.replay.use) == (
        "x.csv",
        5.0,
        True,
        ["ppg", "resp"],
    )

    plain = apply_flags(
        load_config(str(cfg_file)), build_parser().parse_args(["run", "--config", str(cfg_file)])
    )
    assert plain.bed.id == "from-file" and plain.serial.baud == 9600 and not plain.replay.loop
