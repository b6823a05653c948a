"""Fault scenarios against real parts: the daemon (``python -m device run``) as a process, a real
Mosquitto, real ptys, real mounts. Each scenario returns the counts it saw and the verdicts of
its requirements; ``tests/test_faults.py`` runs them short and asserts the verdicts,
``bench/faults.py`` runs them at full length and writes ``bench/results/faults.json``.

- ``broker_outage``: the broker is stopped while the daemon replays a record that raises alarms
  (alarm limits below the patient's rates, the pleth held flat: ``tests/station_support.py``),
  and started again; a station with a persistent session must get every alarm event exactly
  once after removing duplicates by ``seq``, and >= 99.9 % of the seconds' vitals.
- ``sigkill_restart``: alarms raised while the broker is down, the daemon killed with SIGKILL,
  the broker back, the daemon started again: every alarm event the first run logged arrives.
- ``state_unwritable``: the state folder read-only (a read-only bind mount) or full (a 64 KiB
  tmpfs): one error line, the ``store_failed`` technical alarm over MQTT, vitals still
  delivered, the process keeps running (no crash loop).
- ``serial_unplug``: a pty board unplugged and plugged back ``n`` times: the daemon's open file
  descriptors (/proc/PID/fd) do not grow.

Nothing here asserts on wall-clock time: timeouts only bound how long a scenario waits.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lab.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
#: alarm limits below the excerpt patient's HR (~77 bpm) and RR (~20/min): hr_high (high,
#: latched), rr_high (medium), and with the flat pleth sensor_off (low), on every pass
ALARM_LIMITS_TOML = """\
[alarms]
hr_high_bpm = 70.0
hr_high_severe_bpm = 75.0
rr_high_bpm = 18.0
"""
#: the daemon's log line for each alarm event (device.daemon), e.g.
#: "alarm f1-hr_high-7 hr_high active (high) at t=12 s"
ALARM_LOG = re.compile(r"alarm (\S+) (\w+) (active|acknowledged|cleared) \((\w+)\) at t=")


# -- parts ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def until(pred: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step_s)
    return bool(pred())


class Broker:
    """Mosquitto on 127.0.0.1:``port`` with persistence (sessions and their queued QoS 1
    messages survive a stop and start) and room to queue a long backlog for a station."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        store = workdir / f"mosquitto-{self.port}"
        store.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"
        # started as root, Mosquitto would switch to user "mosquitto", who cannot write the
        # persistence folder made here: sessions would silently not survive a restart
        self.conf.write_text(
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {store}/\n"
            "max_queued_messages 1000000\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=logf, stderr=logf
            )

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        if not until(listening, 10, 0.05):
            raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """A clean stop (SIGTERM): Mosquitto writes its persistence file."""
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


class Station:
    """A nurses' station with a persistent session (clean_session False): the broker keeps its
    subscriptions and queues QoS 1 messages for it while it is away. Reconnects within 2 s."""

    def __init__(self, port: int, bed: str, client_id: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.bed = bed
        self._lock = threading.Lock()
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("station could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(f"bedside/{self.bed}/+", qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        leaf = msg.topic.rsplit("/", 1)[1]
        with contextlib.suppress(ValueError):
            body = json.loads(msg.payload)
            with self._lock:
                self.messages.append((leaf, body))

    def of(self, leaf: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for k, b in self.messages if k == leaf]

    def seqs(self, leaf: str) -> list[int]:
        return [int(b["seq"]) for b in self.of(leaf) if "seq" in b]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Daemon:
    """``python -m device run ARGS`` with its log in ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})}
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "device", "run", *args],
                cwd=ROOT,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=environ,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alarm_events(self) -> list[tuple[str, str]]:
        """(id, state) of every alarm event the daemon logged."""
        return [(m.group(1), m.group(3)) for m in ALARM_LOG.finditer(self.text())]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        return stop_process(self.proc, sig, timeout_s)


def store_file(state: Path, bed: str) -> Path:
    return state / f"{bed}-store.sqlite3"


def store_seq(state: Path, bed: str, kind: str) -> int:
    """The last ``seq`` of ``kind`` the bed's store has issued (read beside the daemon)."""
    path = store_file(state, bed)
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT value FROM counters WHERE name = ?", (f"seq:{kind}",))
            found = row.fetchone()
            return int(found[0]) if found else 0
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def alarming_recording(tmp: Path, flat_from_s: float = 20.0) -> Path:
    """The bundled excerpt with its pleth held flat from ``flat_from_s`` (a clip off the
    finger); the other channels stay real."""
    from device.recording import Recording, read_recording
    from lab.writers import write_csv

    rec = read_recording(str(EXCERPT))
    col = rec.roles["ppg"]
    x = rec.channels[col].copy()
    i = int(flat_from_s * rec.fs_hz)
    x[i:] = x[i]
    out = tmp / "excerpt_ppg_off.csv.gz"
    write_csv(
        out,
        Recording(str(out), rec.fs_hz, {**rec.channels, col: x}, rec.roles),
        names=list(rec.roles.values()),
    )
    return out


def _limits(tmp: Path) -> Path:
    cfg = tmp / "alarm_limits.toml"
    cfg.write_text(ALARM_LIMITS_TOML)
    return cfg


def _count_unique(seqs: list[int]) -> tuple[int, int]:
    """(unique, duplicates)."""
    return len(set(seqs)), len(seqs) - len(set(seqs))


# -- scenarios ------------------------------------------------------------------------------
def broker_outage(tmp: Path, outage_s: float = 60.0, speed: float = 10.0) -> dict[str, Any]:
    """Stop the broker for ``outage_s`` while the daemon replays (alarms on every pass)."""
    bed = "fault-outage"
    state = tmp / "state"
    broker = Broker(tmp)
    broker.start()
    station = Station(broker.port, bed, "station-outage")
    rec = alarming_recording(tmp)
    daemon = Daemon(
        [
            "--replay",
            str(rec),
            "--loop",
            "--speed",
            str(speed),
            "--config",
            str(_limits(tmp)),
            "--broker",
            broker.url,
            "--bed",
            bed,
            "--keepalive",
            "5",
            "--state-dir",
            str(state),
        ],  # fmt: skip
        tmp / "daemon-outage.log",
    )
    try:
        if not until(lambda: len(station.of("vitals")) >= 10, 60):
            raise RuntimeError(f"no vitals before the outage: {daemon.text()[-2000:]}")
        seq_before = {k: store_seq(state, bed, k) for k in ("alarm", "vitals")}
        broker.stop()
        time.sleep(outage_s)  # the outage itself: signal keeps flowing, alarms are raised
        seq_after = {k: store_seq(state, bed, k) for k in ("alarm", "vitals")}
        alive_through_outage = daemon.alive()
        broker.start()
        # the daemon reconnects (backoff <= 30 s) and sends what it stored; then stops cleanly
        caught_up = until(
            lambda: (
                bool(station.of("vitals"))
                and not station.of("vitals")[-1].get("historical")
                and set(range(1, seq_after["vitals"] + 1)) <= set(station.seqs("vitals"))
            ),
            120,
            0.2,
        )
        rc = daemon.stop()
        final = _final_status(station)
        until(lambda: final() is not None, 10)
        status = final() or {}
    finally:
        daemon.stop(signal.SIGKILL)
        station.close()
        broker.stop()
    mqtt = status.get("mqtt", {})
    last = mqtt.get("seq", {})
    alarm_seqs, vitals_seqs = station.seqs("alarms"), station.seqs("vitals")
    alarms_unique, alarms_dup = _count_unique(alarm_seqs)
    vitals_unique, vitals_dup = _count_unique(vitals_seqs)
    expected_alarms = int(last.get("alarms", -1))
    expected_vitals = int(last.get("vitals", -1))
    logged = daemon.alarm_events()
    received_events = {(a["id"], a["state"]) for a in station.of("alarms")}
    vitals_share = vitals_unique / expected_vitals if expected_vitals > 0 else 0.0
    result = {
        "outage_s": outage_s,
        "speed": speed,
        "daemon_exit_code": rc,
        "daemon_alive_through_outage": alive_through_outage,
        "caught_up": caught_up,
        "alarm_events_during_outage": seq_after["alarm"] - seq_before["alarm"],
        "vitals_during_outage": seq_after["vitals"] - seq_before["vitals"],
        "alarm_events_logged": len(logged),
        "alarm_events_expected": expected_alarms,
        "alarm_events_received_unique": alarms_unique,
        "alarm_events_duplicates": alarms_dup,
        "alarm_events_lost": len(set(logged) - received_events),
        "vitals_expected": expected_vitals,
        "vitals_received_unique": vitals_unique,
        "vitals_duplicates": vitals_dup,
        "vitals_historical": sum(1 for v in station.of("vitals") if v.get("historical")),
        "vitals_received_share": round(vitals_share, 5),
    }
    result["ok"] = bool(
        rc == 0
        and alive_through_outage
        and result["alarm_events_during_outage"] > 0
        and set(alarm_seqs) == set(range(1, expected_alarms + 1))
        and len(logged) == expected_alarms
        and result["alarm_events_lost"] == 0
        and vitals_share >= 0.999
    )
    return result


def _final_status(station: Station) -> Callable[[], dict[str, Any] | None]:
    def get() -> dict[str, Any] | None:
        done = [s for s in station.of("status") if s.get("state") == "offline"]
        return done[-1] if done else None

    return get


def sigkill_restart(tmp: Path, speed: float = 10.0, alarms: int = 4) -> dict[str, Any]:
    """Alarms raised with the broker down, SIGKILL, broker up, restart: none may be lost."""
    bed = "fault-kill"
    state = tmp / "state"
    broker = Broker(tmp)
    broker.start()
    station = Station(broker.port, bed, "station-kill")  # its session waits in the broker
    broker.stop()
    rec = alarming_recording(tmp)
    args = [
        "--replay", str(rec), "--loop", "--speed", str(speed), "--config", str(_limits(tmp)),
        "--broker", broker.url, "--bed", bed, "--keepalive", "5", "--state-dir", str(state),
    ]  # fmt: skip
    first = Daemon(args, tmp / "daemon-kill-1.log")
    try:
        raised = until(lambda: store_seq(state, bed, "alarm") >= alarms, 120, 0.05)
        first.stop(signal.SIGKILL)
        logged = first.alarm_events()
        stored_at_kill = store_seq(state, bed, "alarm")
        broker.start()
        second = Daemon(args, tmp / "daemon-kill-2.log")
        try:
            # every alarm of the first run, and one of the second (its seq continues)
            got_all = until(
                lambda: set(range(1, stored_at_kill + 2)) <= set(station.seqs("alarms")), 90, 0.2
            )
            rc = second.stop()
        finally:
            second.stop(signal.SIGKILL)
    finally:
        first.stop(signal.SIGKILL)
        station.close()
        broker.stop()
    received = station.of("alarms")
    first_run = [(a["id"], a["state"]) for a in received if int(a["seq"]) <= stored_at_kill]
    lost = set(logged) - set(first_run)
    unique, dup = _count_unique([int(a["seq"]) for a in received])
    result = {
        "alarm_events_logged_before_kill": len(logged),
        "alarm_events_stored_before_kill": stored_at_kill,
        "alarm_events_received_from_first_run": len(set(first_run)),
        "alarm_events_lost": len(lost),
        "alarm_events_duplicates": dup,
        "second_run_exit_code": rc,
        "seq_continues": bool(received) and max(int(a["seq"]) for a in received) > stored_at_kill,
    }
    result["ok"] = bool(raised and got_all and not lost and len(logged) >= alarms and rc == 0)
    return result


@contextlib.contextmanager
def unwritable_folder(tmp: Path, how: str) -> Iterator[Path]:
    """A state folder that cannot be written: ``readonly`` (a read-only bind mount: even root
    cannot write) or ``full`` (a 64 KiB tmpfs that fills up). Needs CAP_SYS_ADMIN; raises
    PermissionError without it."""
    target = tmp / f"state-{how}"
    target.mkdir()
    src = tmp / f"state-{how}-src"
    src.mkdir()
    if how == "readonly":
        cmds = [
            ["mount", "--bind", str(src), str(target)],
            ["mount", "-o", "remount,bind,ro", str(target)],
        ]
    else:
        cmds = [["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(target)]]
    mounted = 0
    try:
        for c in cmds:
            r = subprocess.run(c, capture_output=True, text=True)
            if r.returncode != 0:
                raise PermissionError(f"{' '.join(c)}: {r.stderr.strip()}")
            mounted += 1
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def state_unwritable(
    tmp: Path, how: str, speed: float = 10.0, hold_s: float = 15.0
) -> dict[str, Any]:
    """Run the daemon with a state folder that is read-only or fills up."""
    bed = f"fault-{how}"
    broker = Broker(tmp)
    broker.start()
    station = Station(broker.port, bed, f"station-{how}")
    try:
        with unwritable_folder(tmp, how) as state:
            daemon = Daemon(
                [
                    "--replay",
                    str(EXCERPT),
                    "--loop",
                    "--speed",
                    str(speed),
                    "--broker",
                    broker.url,
                    "--bed",
                    bed,
                    "--state-dir",
                    str(state),
                ],  # fmt: skip
                tmp / f"daemon-{how}.log",
            )
            try:
                alarmed = until(
                    lambda: any(a["condition"] == "store_failed" for a in station.of("alarms")),
                    90,
                )
                n0 = len(station.of("vitals"))
                time.sleep(hold_s)  # it keeps running and delivering (no crash, no loop)
                n1 = len(station.of("vitals"))
                alive = daemon.alive()
                status = [s for s in station.of("status") if s.get("state") == "online"]
                rc = daemon.stop()
            finally:
                daemon.stop(signal.SIGKILL)
            text = daemon.text()
    finally:
        station.close()
        broker.stop()
    errors = [ln for ln in text.splitlines() if "ERROR bedside.store" in ln]
    alarm = next((a for a in station.of("alarms") if a["condition"] == "store_failed"), {})
    failed = status[-1]["mqtt"]["store"]["failed"] if status else ""
    result = {
        "how": how,
        "store_failed_alarm": bool(alarm),
        "alarm_detail": alarm.get("detail", ""),
        "error_lines": len(errors),
        "error_line": errors[0].strip() if errors else "",
        "status_store_failed": failed,
        "vitals_delivered_while_failed": n1 - n0,
        "alive_after_hold": alive,
        "exit_code": rc,
        "tracebacks": text.count("Traceback"),
    }
    result["ok"] = bool(
        alarmed
        and len(errors) == 1
        and failed
        and n1 > n0
        and alive
        and rc == 0
        and result["tracebacks"] == 0
    )
    return result


class _PtyBoard:
    """A pty whose slave is reachable at ``link`` (a udev-like symlink); unplug closes it."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.link = link
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(self.path)

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        os.close(self.master)
        os.close(self.slave)


def _fds(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def _holds(daemon: Daemon, path: str) -> bool:
    """The daemon runs and has ``path`` open."""
    return daemon.alive() and path in _fds(daemon.pid)


def _kinds(fds: list[str]) -> dict[str, int]:
    """Open descriptors by kind: pipe, socket, anon_inode, /dev/pts/N, or a file's folder."""
    out: dict[str, int] = {}
    for target in fds:
        kind = re.sub(r"[:/]\[?\d+\]?$", "", target) if ":" in target else target
        if target.startswith("/dev/pts/"):
            kind = "/dev/pts/N"
        elif target.startswith("/") and not target.startswith("/dev/"):
            kind = Path(target).name
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items()))


def serial_unplug(tmp: Path, times: int = 100) -> dict[str, Any]:
    """Unplug and replug a pty board ``times`` times; count the daemon's open descriptors."""
    bed = "fault-serial"
    broker = Broker(tmp)
    broker.start()
    link = tmp / "healthypi"
    board = _PtyBoard(link)
    cfg = tmp / "serial.toml"
    cfg.write_text(
        f'[serial]\nurl = "{link}"\nformat = "openview"\nreconnect_min_s = 0.02\n'
        "reconnect_max_s = 0.1\n"
    )
    daemon = Daemon(
        [
            "--config",
            str(cfg),
            "--broker",
            broker.url,
            "--bed",
            bed,
            "--state-dir",
            str(tmp / "st"),
        ],
        tmp / "daemon-serial.log",
    )
    counts: list[int] = []
    first: list[str] = []
    last: list[str] = []
    opened = 0
    station = Station(broker.port, bed, "station-serial")
    try:
        # the broker connection is part of the steady state: count from when it is up
        until(lambda: any(s.get("state") == "online" for s in station.of("status")), 30)
        for i in range(times + 1):
            if not until(functools.partial(_holds, daemon, board.path), 30, 0.01):
                break
            opened += 1
            last = _fds(daemon.pid)
            first = first or last
            counts.append(len(last))
            if i == times:
                break
            path = board.path
            board.unplug()
            # the daemon notices (a read fails) and closes the port before it is back
            until(lambda: not _holds(daemon, path), 10, 0.01)  # noqa: B023 (called at once)
            board = _PtyBoard(link)
        alive = daemon.alive()
        rc = daemon.stop()
    finally:
        daemon.stop(signal.SIGKILL)
        with contextlib.suppress(OSError):
            board.unplug()
        station.close()
        broker.stop()
    result = {
        "unplugs": max(0, opened - 1),
        "fds_after_first_open": counts[0] if counts else -1,
        "fds_after_last_replug": counts[-1] if counts else -1,
        "fds_max": max(counts) if counts else -1,
        "fd_kinds_first": _kinds(first),
        "fd_kinds_last": _kinds(last),
        "alive": alive,
        "exit_code": rc,
    }
    result["ok"] = bool(opened == times + 1 and counts[-1] <= counts[0] and alive and rc == 0)
    return result


def run_all(out: Path | None = None, short: bool = False) -> dict[str, Any]:
    """Every scenario, full length (or the short CI version), each in a fresh folder."""
    results: dict[str, Any] = {}
    scenarios: dict[str, Callable[[Path], dict[str, Any]]] = {
        "broker_outage": lambda t: broker_outage(t, outage_s=20.0 if short else 60.0),
        "sigkill_restart": sigkill_restart,
        "state_readonly": lambda t: state_unwritable(t, "readonly"),
        "state_full": lambda t: state_unwritable(t, "full"),
        "serial_unplug": lambda t: serial_unplug(t, 100),
    }
    for name, scenario in scenarios.items():
        with tempfile.TemporaryDirectory(prefix=f"bedside-{name}-") as d:
            try:
                results[name] = scenario(Path(d))
            except PermissionError as e:
                results[name] = {"skipped": str(e)}
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    return results
