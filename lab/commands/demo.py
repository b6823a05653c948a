"""See the appliance work end to end on a real recording, with nothing to set up.

Starts an MQTT broker on a free loopback port (a Mosquitto it launches when one is installed,
otherwise the pure-Python amqtt), runs the bedside daemon -- the same code as 'bedside run' --
replaying a bundled excerpt of a real ICU recording (BIDMC record 09: ECG, pulse oximeter pleth
and impedance respiration; ODC-By 1.0, see device/data/ATTRIBUTION.md) at accelerated speed,
and subscribes like a nurses' station, printing vitals and alarms as they arrive. After
--seconds it stops the daemon (which publishes its retained 'offline' status) and the broker.

Examples:
  bedside demo
  bedside demo --seconds 10 --speed 20
  bedside demo --ppg-off 60           # the pulse-oximeter clip "falls off" at 60 s: an alarm
  bedside demo --arrhythmia           # MIT-BIH record 205: ventricular tachycardia at 29 s
  bedside demo --broker mqtt://192.168.1.10:1883 --bed demo-1     # use a real broker
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from device.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "device" / "data"
DEFAULT_RECORDING = DATA / "bidmc_09_excerpt.csv.gz"
BREATH_SOUNDS = DATA / "rrujo_thinklabs_paced12.wav"
ARRHYTHMIA = DATA / "mitdb_205_excerpt.hea"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seconds", type=float, default=30.0, metavar="S", help="how long to run (default 30)"
    )
    p.add_argument(
        "--speed",
        type=float,
        default=8.0,
        metavar="X",
        help="replay speed factor (default 8: four minutes of signal in 30 s)",
    )
    p.add_argument(
        "--broker",
        metavar="URL",
        help="use this broker (mqtt://HOST:PORT) instead of an embedded one",
    )
    p.add_argument(
        "--embedded",
        choices=("auto", "mosquitto", "amqtt"),
        default="auto",
        help="which embedded broker to start (default: mosquitto if installed, else amqtt)",
    )
    p.add_argument("--bed", default="demo", metavar="ID", help="bed id (default 'demo')")
    p.add_argument(
        "--prefix", default="bedside", metavar="P", help="topic prefix (default 'bedside')"
    )
    p.add_argument(
        "--recording",
        metavar="PATH",
        default=str(DEFAULT_RECORDING),
        help="recording to replay (default: the bundled BIDMC excerpt)",
    )
    p.add_argument(
        "--audio",
        action="store_true",
        help="replay the bundled breath-sound recording instead (a Thinklabs stethoscope, "
        "breathing paced at 12/min; RRuJO, MIT licence): respiratory rate from sound",
    )
    p.add_argument(
        "--arrhythmia",
        action="store_true",
        help="replay the bundled MIT-BIH excerpt instead (record 205, two ECG leads at 360 Hz, "
        "ODC-By 1.0): runs of ventricular tachycardia from 29 s raise the "
        "ventricular_tachycardia alarm (high priority, latched until acknowledged)",
    )
    p.add_argument(
        "--ppg-off",
        type=float,
        metavar="S",
        help="hold the pulse-oximeter signal flat from S seconds of signal on, as if the clip "
        "fell off the finger, to see a technical alarm raised and published",
    )


def _with_ppg_off(path: str, from_s: float, tmp: Path) -> str:
    """A copy of the recording whose pleth is held at its value at ``from_s`` from then on."""
    from device.recording import Recording, read_recording
    from lab.writers import write_csv

    rec = read_recording(path)
    if "ppg" not in rec.roles:
        raise UserError(f"{path}: --ppg-off needs a recording with a ppg channel", "drop --ppg-off")
    col = rec.roles["ppg"]
    x = rec.channels[col].copy()
    i = min(len(x) - 1, max(0, int(from_s * rec.fs_hz)))
    x[i:] = x[i]
    channels = {**rec.channels, col: x}
    out = tmp / "demo_ppg_off.csv.gz"
    write_csv(
        out, Recording(str(out), rec.fs_hz, channels, rec.roles), names=list(rec.roles.values())
    )
    return str(out)


def format_vitals(v: dict[str, Any]) -> str:
    """``t=  42s  HR  92 bpm (ecg)   RR 24 /min (resp)   quality: HR 1.00 RR 0.95``: each
    shown value with its source and the quality of that estimate; '--' where there is none."""
    sqi = v.get("sqi") or {}
    shown, quality = [], []
    for q, label, unit, fmt in (("hr", "HR", "bpm", "3.0f"), ("rr", "RR", "/min", "4.1f")):
        value, source = v.get(f"{q}_bpm"), v.get(f"{q}_source")
        if value is None:
            shown.append(f"{label}  --  {unit}")
            continue
        shown.append(f"{label} {value:{fmt}} {unit} ({source})")
        if f"{q}_{source}" in sqi:
            quality.append(f"{label} {sqi[f'{q}_{source}']:.2f}")
    return f"t={v['t_s']:5.0f}s  {shown[0]:<24} {shown[1]:<22} quality: {' '.join(quality) or '-'}"


def format_alarm(a: dict[str, Any]) -> str:
    unit = f" {a['unit']}" if a.get("unit") else ""
    value = "" if a.get("value") is None else f" value {a['value']}{unit}"
    limit = "" if a.get("limit") is None else f" limit {a['limit']}{unit}"
    detail = f" ({a['detail']})" if a.get("detail") else ""
    state = "LATCHED" if a["state"] == "active" and a.get("latched") else a["state"].upper()
    return (
        f"t={a['t_s']:5.0f}s  ALARM {state:<12} {a['priority']:<6} {a['condition']}"
        f" [{a.get('role') or '-'}]{value}{limit}{detail}  id={a['id']}"
    )


def format_status(s: dict[str, Any]) -> str:
    alarms = (
        ", ".join(f"{a.get('condition')}:{a.get('state')}" for a in s.get("alarms", [])) or "none"
    )
    return (
        f"status: {s.get('state')} ({s.get('reason', s.get('mode', ''))}), current alarms: {alarms}"
    )


class Station:
    """A nurses' station: subscribes to one bed and hands readable lines to the main thread."""

    def __init__(self, host: str, port: int, prefix: str, bed: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.lines: queue.Queue[str] = queue.Queue()
        self.vitals = 0
        self.alarms = 0
        self._last_state = ""
        self._topic = f"{prefix}/{bed}/#"
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bedside-demo-station-{bed}"
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self._topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.connect(host, port, keepalive=30)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise UserError(
                        f"cannot reach broker {host}:{port} ({e})", "check --broker"
                    ) from None
                time.sleep(0.2)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise UserError(
                f"broker {host}:{port} did not accept the subscription", "check --broker"
            )

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if leaf == "vitals":
            self.vitals += 1
            self.lines.put(format_vitals(body))
        elif leaf == "alarms":
            self.alarms += 1
            self.lines.put(format_alarm(body))
        elif leaf == "status" and body.get("state") != self._last_state:
            self._last_state = str(body.get("state"))
            self.lines.put(format_status(body))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(args: argparse.Namespace) -> int:
    from device.commands.run import run_daemon
    from device.config import load_config
    from device.preflight import check_values
    from device.sinks.mqtt import parse_broker_url
    from lab.broker import EmbeddedBroker

    if not args.seconds > 0:
        raise UserError(f"--seconds {args.seconds} must be > 0", "e.g. --seconds 30")
    if not getattr(args, "verbose", 0):
        logging.getLogger("bedside").setLevel(logging.WARNING)  # the station's lines are the output
    embedded = None if args.broker else EmbeddedBroker(args.embedded)
    with tempfile.TemporaryDirectory(prefix="bedside-demo-") as tmp:
        try:
            url = args.broker or embedded.start()  # type: ignore[union-attr]
            cfg = load_config(None)
            cfg.bed.id = args.bed
            cfg.mqtt.broker = url
            cfg.mqtt.prefix = args.prefix
            cfg.state.dir = str(Path(tmp) / "state")
            if args.audio and args.arrhythmia:
                raise UserError("--audio and --arrhythmia replay different recordings", "pick one")
            if args.audio:
                args.recording = str(BREATH_SOUNDS)
            if args.arrhythmia:
                args.recording = str(ARRHYTHMIA)
                if args.speed == 8.0:
                    args.speed = 3.0  # the VT runs come 29 s in: about 10 s, then the latch
            cfg.replay.path = args.recording
            if args.ppg_off is not None:
                cfg.replay.path = _with_ppg_off(args.recording, args.ppg_off, Path(tmp))
            cfg.replay.speed = args.speed
            cfg.replay.loop = True
            check_values(cfg)
            host, port = parse_broker_url(url)
            where = f"embedded {embedded.kind} broker at {url}" if embedded else f"broker {url}"
            print(
                f"bedside demo: {where}; replaying {Path(args.recording).name} at {args.speed:g}x "
                f"for {args.seconds:g} s; topics {args.prefix}/{args.bed}/#",
                flush=True,
            )
            station = Station(host, port, args.prefix, args.bed)
            stop = threading.Event()
            result: list[int] = []
            failure: list[BaseException] = []

            def daemon() -> None:
                try:
                    result.append(run_daemon(cfg, stop))
                except BaseException as e:  # shown by the main thread
                    failure.append(e)

            worker = threading.Thread(target=daemon, name="bedside-daemon")
            worker.start()
            end = time.monotonic() + args.seconds
            try:
                while time.monotonic() < end and worker.is_alive():
                    _print_lines(station, timeout=min(0.2, max(0.0, end - time.monotonic())))
            except KeyboardInterrupt:
                pass
            stop.set()
            worker.join(30)
            time.sleep(0.3)  # let the retained offline status reach the station
            _print_lines(station, timeout=0)
            station.close()
            if failure:
                if isinstance(failure[0], UserError):
                    raise failure[0]
                raise RuntimeError("the daemon failed") from failure[0]
            print(
                f"bedside demo: received {station.vitals} vitals and {station.alarms} alarm "
                "messages; "
                "done",
                flush=True,
            )
            return 0 if result == [0] else 1
        finally:
            if embedded is not None:
                embedded.stop()


def _print_lines(station: Station, timeout: float) -> None:
    try:
        line = station.lines.get(timeout=timeout) if timeout > 0 else station.lines.get_nowait()
    except queue.Empty:
        return
    out = [line]
    while True:
        try:
            out.append(station.lines.get_nowait())
        except queue.Empty:
            break
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
