"""A ward on one broker: N simulated beds replaying real records into one Mosquitto.

    python bench/fleet.py --beds 200 --seconds 60 --json bench/results/fleet_inproc_200.json
    python bench/fleet.py --beds 50 --seconds 60 --mode daemon --json OUT

Starts its own Mosquitto on a free loopback port and a subscriber (a nurses' station that
checks every message), then N beds, each replaying one real record in real time: the bundled
excerpt of BIDMC record 09 and, when ``../shared/data/bidmc/bidmc_csv`` is there, its 42
records (spread over the records in blocks; beds on the same record start 97 s apart in it, so
no two beds are in step).

Two ways to run a bed (``--mode``):

- ``inproc``: each bed is the daemon's core and sink, ``device.monitor.Monitor`` +
  ``device.sinks.mqtt.MqttSink`` (its own MQTT connection, client id, last will, retained
  status every 10 s and SQLite store-and-forward file), and ``--procs`` worker processes
  (default one per 50 beds) carry the beds. A worker feeds each bed one second of samples when
  that second has elapsed on the wall clock (bed i's seconds end at phase i/N of the wall-clock
  second, as beds that were switched on at different moments do), steps its monitor and hands
  the messages to its sink, exactly what the daemon's main loop does with a replay source.
- ``daemon``: each bed is a ``bedside run --replay REC --loop`` process, as on an appliance.

Each worker and each daemon runs in a session of its own, as separate services do: Linux's
autogroup scheduling then shares the CPU between them and other jobs on the machine, instead of
giving the whole fleet one share.

What the subscriber checks, for every message: the JSON schema of its topic (vitals, alarms,
status: keys, types, ``bed`` = the topic's bed, ISO 8601 ``ts``), and per bed the sequence
(``seq`` when the payload has one, else ``t_s``, which rises by exactly 1 s per vitals
message): gaps and duplicates are counted (a looping replay that starts again at t = 1 s is
counted as a restart, not a gap).

Definitions:

- ``latency_ms``: subscriber receive time minus the message's ``ts``. ``ts`` is the wall-clock
  time the bed handed the message to its MQTT client (for a replay the daemon stamps the send
  time), so this is the transport: client, broker, subscriber.
- ``lag_ms`` (inproc mode): receive time minus the wall-clock moment the second's last
  sample was due (the replay schedule): transport plus the core's queueing and processing,
  i.e. how late the station shows a second that has just ended. In daemon mode it is
  estimated from the status's ``started`` (the replay starts within milliseconds of it).
- ``delivered_ratio``: vitals and alarm messages received / sent (sent: counted by the beds'
  sinks, the daemon's from its final ``offline`` status).
- ``realtime_ratio``: per bed, signal seconds received per wall-clock second over the
  measuring window (mean of the beds, and the slowest bed): 1.0 when every bed keeps up.
- ``cpu_percent``: CPU time of the bed processes (all threads) over the window / window
  length, in % of one core (200 % = both cores of this machine); the broker's and the
  subscriber's are given apart. ``rss_mb``: the bed processes' resident memory summed at the
  end of the window; ``pss_mb`` shares libraries out fairly between processes
  (``/proc/PID/smaps_rollup``), the better sum for many daemon processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.machine import cpu_model  # noqa: E402 (after the path is set)
from lab.processes import stop_process  # noqa: E402

BUNDLED = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"


def shared_data() -> Path | None:
    """``../shared/data`` beside the checkout (or beside its parent, for a git worktree in
    a sub-folder), or $BEDSIDE_SHARED_DATA."""
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    for cand in (
        Path(env) if env else None,
        ROOT.parent / "shared/data",
        ROOT.parents[1] / "shared/data",
    ):
        if cand is not None and cand.is_dir():
            return cand
    return None


_DATA = shared_data()
SHARED = (_DATA / "bidmc" / "bidmc_csv") if _DATA is not None else ROOT / "no-shared-data"
PREFIX = "bedside"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: beds per worker process in inproc mode (default --procs = beds / this, rounded up)
BEDS_PER_PROC = 50
#: how often a bed republishes its retained status (the daemon's STATUS_PERIOD_S)
STATUS_PERIOD_S = 10


def record_paths() -> list[Path]:
    shared = sorted(SHARED.glob("bidmc_*_Signals.csv*")) if SHARED.is_dir() else []
    return [BUNDLED, *shared]


def bed_record(i: int, beds: int, paths: list[Path]) -> tuple[Path, float]:
    """The record bed i replays and where in it it starts: beds are spread over the records in
    blocks (so a worker reads few of them), and beds on the same record start 97 s apart."""
    per_record = max(1, math.ceil(beds / len(paths)))
    rec = min(i // per_record, len(paths) - 1) if beds > len(paths) else i
    return paths[rec % len(paths)], 97.0 * (i % per_record)


def bed_name(i: int) -> str:
    return f"fleet-{i:03d}"


def phase_s(i: int, beds: int) -> float:
    """Where in the wall-clock second bed i's signal seconds end."""
    return i / beds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc ---------------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kb(pid: int) -> dict[str, int]:
    out = {"rss": 0, "hwm": 0, "pss": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return float(sum(vals) - idle), float(sum(vals))


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# -- the subscriber: a nurses' station that checks everything ------------------------------
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "vitals": {
        "schema_version": (int,),
        "bed": (str,),
        "ts": (str,),
        "type": (str,),
        "t_s": NUM,
        "hr_bpm": OPT_NUM,
        "rr_bpm": OPT_NUM,
        "hr_source": OPT_STR,
        "rr_source": OPT_STR,
        "hr_model": OPT_STR,
        "rr_model": OPT_STR,
        "sqi": (dict,),
        "measurements": (list,),
    },
    "alarms": {
        "schema_version": (int,),
        "bed": (str,),
        "ts": (str,),
        "type": (str,),
        "t_s": NUM,
        "id": (str,),
        "condition": (str,),
        "priority": (str,),
        "state": (str,),
        "onset_t_s": NUM,
        "technical": (bool,),
    },
    "status": {
        "schema_version": (int,),
        "bed": (str,),
        "ts": (str,),
        "state": (str,),
    },
}


def check_payload(leaf: str, bed: str, body: Any) -> str | None:
    """The first way ``body`` breaks its topic's schema, or None."""
    if not isinstance(body, dict):
        return "not a JSON object"
    for key, types in SCHEMAS[leaf].items():
        if key not in body:
            return f"no {key}"
        if not isinstance(body[key], types) or (bool in types) != isinstance(body[key], bool):
            return f"{key} = {body[key]!r} has the wrong type"
    if body["schema_version"] != 1:
        return f"schema_version {body['schema_version']}"
    if body["bed"] != bed:
        return f"bed {body['bed']!r} on the topic of {bed!r}"
    if not ISO_UTC.match(body["ts"]):
        return f"ts {body['ts']!r} is not ISO 8601 UTC with milliseconds"
    if leaf == "vitals":
        if body["type"] != "vitals":
            return f"type {body['type']!r}"
        for m in body["measurements"]:
            if not isinstance(m, dict) or not {"mdc", "value", "unit", "source"} <= set(m):
                return f"measurement {m!r}"
    elif leaf == "alarms":
        if body["state"] not in ("active", "acknowledged", "cleared"):
            return f"alarm state {body['state']!r}"
    elif body["state"] not in ("online", "offline"):
        return f"status state {body['state']!r}"
    return None


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@dataclasses.dataclass
class BedSeen:
    vitals: int = 0
    alarms: int = 0
    statuses: int = 0
    last_seq: float | None = None
    gaps: int = 0  # missing sequence numbers
    dups: int = 0  # repeated or out-of-order ones
    restarts: int = 0  # a looping replay started again
    online: bool = False
    offline_status: dict[str, Any] | None = None
    started: float | None = None  # the status's "started" (wall clock)
    loops_seen: bool = False


class Station:
    """Subscribes to every bed's vitals, alarms and status and checks each message."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.beds: dict[str, BedSeen] = {}
        self.lock = threading.Lock()
        self.schema_errors: list[str] = []
        self.n_schema_errors = 0
        #: (receive wall time, latency ms, lag ms or NaN) per vitals/alarm message
        self.samples: list[tuple[float, float, float]] = []
        #: (receive wall time, payload bytes) of every message, status included
        self.traffic: list[tuple[float, int]] = []
        #: bed -> (receive wall time, t_s) of each vitals message, for the real-time rate
        self.progress: dict[str, list[tuple[float, float]]] = {}
        self.due: dict[str, float] = {}  # bed -> wall time of its signal time 0 (inproc)
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fleet-station-{os.getpid()}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(20):
            raise RuntimeError("the station could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(
            [(f"{PREFIX}/+/vitals", 0), (f"{PREFIX}/+/alarms", 1), (f"{PREFIX}/+/status", 1)]
        )

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        recv = time.time()
        parts = msg.topic.split("/")
        if len(parts) != 3:
            return
        _, bed, leaf = parts
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = None
        problem = check_payload(leaf, bed, body) if leaf in SCHEMAS else "unknown topic"
        with self.lock:
            self.traffic.append((recv, len(msg.payload)))
            seen = self.beds.setdefault(bed, BedSeen())
            if problem is not None:
                self.n_schema_errors += 1
                if len(self.schema_errors) < 20:
                    self.schema_errors.append(f"{msg.topic}: {problem}")
                return
            if leaf == "status":
                seen.statuses += 1
                if body["state"] == "online":
                    seen.online = True
                    if seen.started is None and isinstance(body.get("started"), str):
                        seen.started = parse_ts(body["started"])
                elif not msg.retain:
                    seen.offline_status = body
                return
            latency = (recv - parse_ts(body["ts"])) * 1e3
            lag = float("nan")
            if leaf == "vitals":
                seen.vitals += 1
                self._sequence(seen, body)
                self.progress.setdefault(bed, []).append((recv, float(body["t_s"])))
                t0 = self.due.get(bed, seen.started if not seen.loops_seen else None)
                if t0 is not None:
                    lag = (recv - (t0 + float(body["t_s"]))) * 1e3
            else:
                seen.alarms += 1
            self.samples.append((recv, latency, lag))

    @staticmethod
    def _sequence(seen: BedSeen, body: dict[str, Any]) -> None:
        seq = float(body["seq"]) if isinstance(body.get("seq"), NUM) else float(body["t_s"])
        last = seen.last_seq
        seen.last_seq = seq
        if last is None:
            return
        if seq == last + 1:
            return
        if "seq" not in body and seq == 1.0 and last > 1.0:
            seen.restarts += 1  # a looping replay: the daemon restarts its core at t = 1 s
            seen.loops_seen = True
        elif seq > last + 1:
            seen.gaps += int(round(seq - last - 1))
        else:
            seen.dups += 1

    def wait(self, pred: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if pred(self.beds):
                    return True
            time.sleep(0.1)
        with self.lock:
            return bool(pred(self.beds))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def pace(progress: list[tuple[float, float]], a: float, b: float) -> float | None:
    """Signal seconds per wall second of one bed's vitals received in [a, b] (None: too few,
    or the replay restarted inside the window)."""
    p = [x for x in progress if a <= x[0] <= b]
    if len(p) < 3 or any(q[1] <= r[1] for r, q in zip(p, p[1:], strict=False)):
        return None
    return (p[-1][1] - p[0][1]) / (p[-1][0] - p[0][0])


def percentile(values: list[float], q: float) -> float | None:
    vals = sorted(v for v in values if v == v)
    if not vals:
        return None
    k = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return round(vals[lo] + (vals[hi] - vals[lo]) * (k - lo), 2)


# -- inproc mode: a worker process carrying many beds --------------------------------------
class DirectBed:
    """The lighter publisher (``--publisher direct``): one bed's own paho connection with the
    daemon's topics, QoS, retained status and last will, but no network thread: the worker's
    main loop writes each message to the socket as it publishes it, and one reader thread per
    worker serves every bed's socket (acknowledgements, pings). Vitals and alarms go at QoS 1
    as the sink sends them, without its store on disk. With 50 beds in a process this avoids
    50 paho threads waiting for the interpreter lock between the core's seconds, which on an
    appliance (one bed per process) does not happen."""

    def __init__(self, name: str, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.name = name
        base = f"{PREFIX}/{name}"
        self.topics = {"vitals": f"{base}/vitals", "alarm": f"{base}/alarms"}
        self.topic_status = f"{base}/status"
        self.connected = threading.Event()
        self.counters = {"vitals_sent": 0, "vitals_dropped_offline": 0, "alarms_queued": 0}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bedside-{name}")
        self.client.max_queued_messages_set(0)
        will = {"schema_version": 1, "bed": name, "state": "offline", "reason": "last will"}
        will["ts"] = iso_now()
        self.client.will_set(self.topic_status, json.dumps(will), qos=1, retain=True)
        self.client.on_connect = lambda c, u, f, rc, p: (
            None if rc.is_failure else self.connected.set()
        )
        self.client.connect(host, port, keepalive=10)
        self._status: dict[str, Any] = {}

    def send(self, msg: Any, ts: float) -> None:
        payload = json.dumps(msg.to_payload(self.name, ts), separators=(",", ":"))
        if msg.kind == "alarm":
            self.client.publish(self.topics["alarm"], payload, qos=1)
            self.counters["alarms_queued"] += 1
        elif self.connected.is_set():
            self.client.publish(self.topics["vitals"], payload, qos=1)
            self.counters["vitals_sent"] += 1
        else:
            self.counters["vitals_dropped_offline"] += 1

    def set_status(self, status: Any) -> None:
        body = {**status.to_payload(), "ts": iso_now(), "state": "online"}
        body["mqtt"] = dict(self.counters)
        self.client.publish(self.topic_status, json.dumps(body), qos=1, retain=True)

    def stop(self) -> None:
        body = {"schema_version": 1, "bed": self.name, "ts": iso_now(), "state": "offline"}
        info = self.client.publish(self.topic_status, json.dumps(body), qos=1, retain=True)
        deadline = time.monotonic() + 5
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.client.disconnect()

    def poll(self) -> list[Any]:
        return []


class _Connected:
    """``is_set()`` of a sink's publisher: connected to the broker."""

    def __init__(self, publisher: Any) -> None:
        self.publisher = publisher

    def is_set(self) -> bool:
        return bool(self.publisher.connected)


def iso_now() -> str:
    from device.messages import iso_utc

    return iso_utc(time.time())


def serve_sockets(beds: list[DirectBed], stop: threading.Event) -> None:
    """One thread for every DirectBed's socket: reads (CONNACK, PUBACK, PINGRESP), writes
    that the main loop could not finish, and keepalive."""
    import select

    last_misc = 0.0
    while not stop.is_set():
        socks: dict[Any, DirectBed] = {}
        writers = []
        for b in beds:
            sock = b.client.socket()
            if sock is not None:
                socks[sock] = b
                if b.client.want_write():
                    writers.append(sock)
        if not socks:
            time.sleep(0.1)
            continue
        readable, writable, _ = select.select(list(socks), writers, [], 0.2)
        for sock in readable:
            socks[sock].client.loop_read()
        for sock in writable:
            socks[sock].client.loop_write()
        now = time.monotonic()
        if now - last_misc >= 1.0:
            last_misc = now
            for b in beds:
                b.client.loop_misc()


def worker(args: argparse.Namespace) -> int:
    """Beds ``first`` .. ``first + count - 1``: Monitor + MqttSink each, on one schedule."""
    import logging

    import numpy as np

    from device import logs
    from device.config import load_config
    from device.messages import iso_utc
    from device.monitor import Monitor
    from device.recording import read_recording
    from device.sinks.base import Status
    from device.sinks.mqtt import MqttSink

    logs.setup(logging.WARNING)
    paths = record_paths()
    cfg = load_config(None)
    recs: dict[Path, Any] = {}
    beds = []
    outdir = Path(args.outdir)
    for i in range(args.first, args.first + args.count):
        path, offset_s = bed_record(i, args.beds, paths)
        if path not in recs:
            rec = read_recording(path)
            per_s = int(round(rec.fs_hz))
            n = rec.n_samples - rec.n_samples % per_s  # whole seconds, so the wrap is clean
            sig = {r: np.asarray(x[:n], dtype=np.float64) for r, x in rec.role_signals().items()}
            recs[path] = (sig, rec.fs_hz, per_s, n)
        signals, fs, per_s, n = recs[path]
        name = bed_name(i)
        # from its own place in the record, wrapping at the end (beds share the arrays)
        start = int(offset_s * per_s) % n
        mqtt_cfg = dataclasses.replace(cfg.mqtt, broker=f"mqtt://{args.host}:{args.port}")
        monitor = Monitor.for_inputs(dict.fromkeys(signals, fs), cfg, bed=name)
        # each bed's store (<bed>-store.sqlite3) in the run's folder, as a daemon keeps its own
        sink: Any = (
            MqttSink(mqtt_cfg, name, dataclasses.replace(cfg.state, dir=str(outdir)))
            if args.publisher == "sink"
            else None
        )
        beds.append(
            {
                "name": name,
                "monitor": monitor,
                "sink": sink,
                "signals": signals,
                "per_s": per_s,
                "start": start,
            }
        )
    started = iso_utc(time.time())

    def status(b: dict[str, Any]) -> Status:
        m = b["monitor"]
        return Status(
            bed=b["name"],
            started=started,
            mode="replay",
            t_s=m.t_s,
            estimators={f"{e.quantity}_{e.role}": e.name for e in m.pipeline.estimators},
            sinks={"mqtt": b["sink"].counters() if args.publisher == "sink" else {}},
            alarms=tuple(m.alarm_summary()),
        )

    stop_serving = threading.Event()
    if args.publisher == "sink":
        for b in beds:
            b["sink"].set_status(status(b))
            b["sink"].start()
        is_connected = [_Connected(b["sink"].publisher) for b in beds]
    else:
        for b in beds:
            b["sink"] = DirectBed(b["name"], args.host, args.port)
        threading.Thread(
            target=serve_sockets, args=([b["sink"] for b in beds], stop_serving), daemon=True
        ).start()
        is_connected = [b["sink"].connected for b in beds]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(e.is_set() for e in is_connected):
        time.sleep(0.05)
    connected = sum(e.is_set() for e in is_connected)
    if args.publisher == "direct":
        for b in beds:
            b["sink"].set_status(status(b))
    print(f"ready {connected}", flush=True)
    line = sys.stdin.readline().split()
    if not line or line[0] != "go":
        return 1
    t0 = float(line[1])
    cpu0 = time.process_time()
    # (due wall time, bed index, second): each bed's second k ends at t0 + phase + k
    queue = [(t0 + phase_s(args.first + j, args.beds) + 1.0, j, 1) for j in range(len(beds))]
    heapq.heapify(queue)
    sent_vitals = sent_alarms = statuses = 0
    late_ms: list[float] = []
    while queue:
        due, j, k = heapq.heappop(queue)
        if k > args.seconds:
            continue
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        else:
            late_ms.append(-wait * 1e3)
        b = beds[j]
        a = b["start"] + (k - 1) * b["per_s"]
        mon = b["monitor"]
        for role, x in b["signals"].items():
            a %= len(x)
            mon.feed(role, x[a : a + b["per_s"]])  # whole seconds: never across the end
        sink = b["sink"]
        msgs = mon.step()
        for msg in msgs:
            sink.send(msg, time.time())
            if msg.kind == "alarm":
                sent_alarms += 1
            else:
                sent_vitals += 1
        if k % STATUS_PERIOD_S == 0 or any(m.kind == "alarm" for m in msgs):
            sink.set_status(status(b))
            statuses += 1
        sink.poll()
        heapq.heappush(queue, (due + 1.0, j, k + 1))
    cpu = time.process_time() - cpu0
    counters = {"vitals_sent": 0, "vitals_dropped_offline": 0, "alarms_queued": 0}
    for b in beds:
        b["sink"].stop()
        c = b["sink"].counters() if args.publisher == "sink" else b["sink"].counters
        for key in counters:
            counters[key] += int(c.get(key, 0))
    stop_serving.set()
    print(
        json.dumps(
            {
                "beds": len(beds),
                "connected": connected,
                "vitals_handed": sent_vitals,
                "alarms_handed": sent_alarms,
                "statuses": statuses,
                **counters,
                "late_count": len(late_ms),
                "late_p99_ms": percentile(late_ms, 99),
                "late_max_ms": round(max(late_ms), 1) if late_ms else 0.0,
                "main_thread_cpu_s": round(cpu, 2),
            }
        ),
        flush=True,
    )
    return 0


# -- the orchestrator ----------------------------------------------------------------------
class Broker:
    """Mosquitto started here on a free loopback port; or, with ``url``, a broker elsewhere
    (a ward's, a cluster's), whose CPU and memory are then not measured."""

    def __init__(self, tmp: Path, url: str = "") -> None:
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        if url:
            from device.sinks.mqtt import parse_broker_url

            self.host, self.port = parse_broker_url(url, "--broker")
            return
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(binary, os.X_OK):
            raise SystemExit("mosquitto is not installed: apt-get install -y mosquitto")
        self.port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )
        self.log = tmp / "mosquitto.log"
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=f, stderr=f)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"mosquitto did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_inproc(
    args: argparse.Namespace, broker: Broker, station: Station, tmp: Path
) -> dict[str, Any]:
    procs = args.procs or max(1, math.ceil(args.beds / BEDS_PER_PROC))
    procs = min(procs, args.beds)
    sizes = [args.beds // procs + (1 if p < args.beds % procs else 0) for p in range(procs)]
    workers: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []
    first = 0
    for p, size in enumerate(sizes):
        log = open(tmp / f"worker-{p}.log", "w")  # noqa: SIM115 (closed below)
        logs.append(log)
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            *("--host", broker.host, "--port", str(broker.port), "--beds", str(args.beds)),
            *("--first", str(first), "--count", str(size), "--seconds", str(args.seconds)),
            *("--outdir", str(tmp), "--publisher", args.publisher),
        ]
        workers.append(
            subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=child_env(),
                cwd=ROOT,
                start_new_session=True,
            )
        )
        first += size
    try:
        connected = 0
        for w in workers:
            assert w.stdout is not None
            line = w.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"a worker failed to start: see {tmp}/worker-*.log")
            connected += int(line[1])
        t0 = time.time() + 1.0
        for i in range(args.beds):
            station.due[bed_name(i)] = t0 + phase_s(i, args.beds)
        for w in workers:
            assert w.stdin is not None
            w.stdin.write(f"go {t0!r}\n")
            w.stdin.flush()
        time.sleep(max(0.0, t0 - time.time()))
        window = measure_window(args.seconds, [w.pid for w in workers], broker, station)
        results = []
        for w in workers:
            assert w.stdout is not None
            out = w.stdout.read()
            w.wait(120)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            stop_process(w)
        for handle in logs:
            handle.close()
    time.sleep(args.drain)
    sent = sum(r["vitals_sent"] + r["alarms_queued"] for r in results)
    return {
        "procs": procs,
        "beds_connected": connected,
        "sent_detail": {
            key: sum(r[key] for r in results)
            for key in (
                "vitals_handed",
                "vitals_sent",
                "vitals_dropped_offline",
                "alarms_handed",
                "alarms_queued",
                "statuses",
                "late_count",
            )
        },
        "worker_late_p99_ms": max((r["late_p99_ms"] or 0.0) for r in results),
        "worker_late_max_ms": max(r["late_max_ms"] for r in results),
        "messages_sent": sent,
        **window,
    }


def run_daemons(
    args: argparse.Namespace, broker: Broker, station: Station, tmp: Path
) -> dict[str, Any]:
    paths = record_paths()
    (tmp / "state").mkdir(exist_ok=True)
    daemons: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    t_spawn = time.monotonic()
    try:
        for i in range(args.beds):
            log = open(tmp / f"daemon-{i}.log", "wb")  # noqa: SIM115 (closed below)
            logs.append(log)
            cmd = [
                sys.executable,
                "-m",
                "device",
                "run",
                *("--replay", str(bed_record(i, args.beds, paths)[0]), "--loop"),
                *("--broker", broker.url, "--bed", bed_name(i)),
                *("--state-dir", str(tmp / "state")),
            ]
            daemons.append(
                subprocess.Popen(
                    cmd, stdout=log, stderr=log, env=child_env(), cwd=ROOT, start_new_session=True
                )
            )
            time.sleep(args.stagger)
        names = [bed_name(i) for i in range(args.beds)]
        all_online = station.wait(
            lambda beds: all(n in beds and beds[n].online for n in names),
            args.start_timeout or 30 + 2.0 * args.beds,
        )
        startup_s = time.monotonic() - t_spawn
        with station.lock:
            online = sum(1 for n in names if n in station.beds and station.beds[n].online)
        dead = [i for i, d in enumerate(daemons) if d.poll() is not None]
        time.sleep(args.warmup)
        window = measure_window(args.seconds, [d.pid for d in daemons], broker, station)
    finally:
        for d in daemons:
            if d.poll() is None:
                d.send_signal(signal.SIGTERM)
        for d in daemons:
            try:
                d.wait(60)
            except subprocess.TimeoutExpired:
                d.kill()
        for handle in logs:
            handle.close()
    station.wait(
        lambda beds: all(beds[n].offline_status is not None for n in names if n in beds),
        args.drain + 10,
    )
    time.sleep(args.drain)
    sent = 0
    missing_final = 0
    with station.lock:
        for n in names:
            final = station.beds[n].offline_status if n in station.beds else None
            mqtt = (final or {}).get("mqtt") or {}
            if not mqtt:
                missing_final += 1
                continue
            sent += int(mqtt.get("vitals_sent", 0)) + int(mqtt.get("alarms_queued", 0))
    return {
        "procs": args.beds,
        "beds_connected": online,
        "all_online": all_online,
        "startup_s": round(startup_s, 1),
        "daemons_exited_early": dead,
        "beds_without_final_status": missing_final,
        "messages_sent": sent,
        **window,
    }


def measure_window(
    seconds: float, pids: list[int], broker: Broker, station: Station
) -> dict[str, Any]:
    """CPU of the bed processes, the broker and the station over ``seconds``; memory at the
    end of it."""
    start_wall = time.time()
    c0 = {pid: cpu_s(pid) for pid in pids}
    bpid = broker.proc.pid if broker.proc is not None else -1
    b0, s0 = cpu_s(bpid), time.process_time()
    sys0 = system_cpu()
    m0 = time.monotonic()
    time.sleep(max(0.0, seconds - 0.5))
    mems = [mem_kb(pid) for pid in pids]
    time.sleep(0.5)
    dt = time.monotonic() - m0
    c1 = {pid: cpu_s(pid) for pid in pids}
    b1, s1 = cpu_s(bpid), time.process_time()
    sys1 = system_cpu()
    used = sum(c1[p] - c0[p] for p in pids if c1[p] == c1[p] and c0[p] == c0[p])
    bmem = mem_kb(bpid)
    return {
        "window": (start_wall, start_wall + dt),
        "window_s": round(dt, 2),
        "cpu_percent": round(100.0 * used / dt, 1),
        "broker_cpu_percent": round(100.0 * (b1 - b0) / dt, 2) if bpid > 0 else None,
        "station_cpu_percent": round(100.0 * (s1 - s0) / dt, 2),
        "machine_busy_percent": round(
            100.0 * (sys1[0] - sys0[0]) / max(1.0, sys1[1] - sys0[1]) * (os.cpu_count() or 1), 1
        ),
        "rss_mb": round(sum(m["rss"] for m in mems) / 1024, 1),
        "pss_mb": round(sum(m["pss"] for m in mems) / 1024, 1),
        "peak_rss_mb_max_process": round(max((m["hwm"] for m in mems), default=0) / 1024, 1),
        "broker_rss_mb": round(bmem["rss"] / 1024, 1) if bpid > 0 else None,
    }


def summarise(
    args: argparse.Namespace, res: dict[str, Any], station: Station, load0: list[float]
) -> dict[str, Any]:
    a, b = res.pop("window")
    with station.lock:
        samples = list(station.samples)
        beds = dict(station.beds)
        received = sum(s.vitals + s.alarms for s in beds.values())
        in_window = [s for s in samples if a <= s[0] <= b]
        rates = [rate for p in station.progress.values() if (rate := pace(p, a, b)) is not None]
        traffic = [x for x in station.traffic if a <= x[0] <= b]
        schema_errors = station.n_schema_errors
        examples = list(station.schema_errors)
    # inproc: every message is sent inside the schedule; daemons: latency in the window
    lat_src = samples if args.mode == "inproc" else in_window
    lat = [s[1] for s in lat_src]
    lag = [s[2] for s in lat_src]
    sent = res["messages_sent"]
    out = {
        "beds": args.beds,
        "seconds": args.seconds,
        "mode": args.mode,
        "publisher": args.publisher if args.mode == "inproc" else "daemon (MqttSink)",
        "messages_sent": sent,
        "messages_received": received,
        "delivered_ratio": round(received / sent, 5) if sent else None,
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        "cpu_percent": res["cpu_percent"],
        "rss_mb": res["rss_mb"],
        "cpu_percent_per_bed": round(res["cpu_percent"] / args.beds, 3),
        "rss_mb_per_bed": round(res["rss_mb"] / args.beds, 2),
        "pss_mb_per_bed": round(res["pss_mb"] / args.beds, 2),
        "lag_p50_ms": percentile(lag, 50),
        "lag_p99_ms": percentile(lag, 99),
        "latency_max_ms": round(max(lat), 1) if lat else None,
        "window_messages_per_s": round(len(traffic) / res["window_s"], 1),
        "window_payload_bytes_per_bed_per_s": round(
            sum(x[1] for x in traffic) / res["window_s"] / args.beds, 1
        ),
        # each message in the window went in once (from a bed) and out once (to the station)
        "broker_cpu_us_per_message": (
            round(
                res["broker_cpu_percent"] / 100 * res["window_s"] / max(1, 2 * len(traffic)) * 1e6,
                1,
            )
            if res["broker_cpu_percent"] is not None
            else None
        ),
        "realtime_ratio": round(sum(rates) / len(rates), 4) if rates else None,
        "realtime_ratio_min_bed": round(min(rates), 4) if rates else None,
        "schema_errors": schema_errors,
        "schema_error_examples": examples,
        "seq_gaps": sum(s.gaps for s in beds.values()),
        "seq_dups": sum(s.dups for s in beds.values()),
        "replay_restarts": sum(s.restarts for s in beds.values()),
        "alarms_received": sum(s.alarms for s in beds.values()),
        "beds_heard": len(beds),
        **{k: v for k, v in res.items() if k not in ("messages_sent",)},
        "machine": {**machine(), "loadavg_at_start": load0},
        "records": len(record_paths()),
        "definitions": {
            "latency_ms": "station receive time - the message's ts (the wall-clock time the "
            "bed handed it to its MQTT client): transport through client, broker, subscriber",
            "lag_ms": "station receive time - the moment the signal second's last sample was "
            "due on the replay schedule (inproc: exact; daemon: from the status's started)",
            "cpu_percent": "CPU time of the bed processes / window, % of one core",
            "delivered_ratio": "vitals + alarm messages received / sent by the beds' sinks",
            "realtime_ratio": "per bed, signal seconds received per wall-clock second over the "
            "window (t_s of its last vitals - t_s of its first) / (their receive times); "
            "mean of beds (and the slowest bed): 1.0 when every bed keeps up with real time",
        },
        "command": "python bench/fleet.py " + " ".join(sys.argv[1:]),
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--beds", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=30, help="measuring window (real time)")
    ap.add_argument("--json", metavar="OUT", help="write the figures here")
    ap.add_argument("--mode", choices=("inproc", "daemon"), default="inproc")
    ap.add_argument(
        "--broker",
        default="",
        metavar="URL",
        help="use this broker (mqtt://HOST:PORT, e.g. a ward's cluster) instead of starting "
        "Mosquitto here; its CPU and memory are then not measured",
    )
    ap.add_argument("--procs", type=int, default=0, help="inproc: worker processes")
    ap.add_argument(
        "--publisher",
        choices=("sink", "direct"),
        default="sink",
        help="inproc: each bed's MqttSink (the daemon's, a paho thread per bed), or the lighter "
        "direct publisher (the same topics and QoS, written from the worker's loop)",
    )
    ap.add_argument("--warmup", type=float, default=5.0, help="daemon: seconds after all online")
    ap.add_argument("--stagger", type=float, default=0.05, help="daemon: seconds between starts")
    ap.add_argument("--start-timeout", type=float, default=0.0, help="daemon: wait for online")
    ap.add_argument("--drain", type=float, default=2.0, help="seconds to wait for stragglers")
    # a worker process of inproc mode (started by this script)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--outdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.beds < 1 or args.seconds < 1:
        ap.error("--beds and --seconds must be at least 1")
    load0 = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="bedside-fleet-"))
    broker = Broker(tmp, args.broker)
    station: Station | None = None
    try:
        station = Station(broker.host, broker.port)
        run = run_inproc if args.mode == "inproc" else run_daemons
        res = run(args, broker, station, tmp)
        result = summarise(args, res, station, load0)
    finally:
        if station is not None:
            station.close()
        broker.stop()
    keep = result["delivered_ratio"] != 1.0 or result["schema_errors"]
    if keep:
        result["logs"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(
        f"fleet {args.mode}: {args.beds} beds x {args.seconds} s: delivered "
        f"{result['messages_received']}/{result['messages_sent']} "
        f"(ratio {result['delivered_ratio']}), latency p50 {result['latency_p50_ms']} ms "
        f"p99 {result['latency_p99_ms']} ms, lag p99 {result['lag_p99_ms']} ms, real time "
        f"{result['realtime_ratio']}; beds' CPU {result['cpu_percent']} % of a core "
        f"({result['cpu_percent_per_bed']} % per bed), RSS {result['rss_mb']} MB "
        f"(PSS {result['pss_mb_per_bed']} MB per bed); broker CPU "
        f"{result['broker_cpu_percent']} %; schema errors {result['schema_errors']}, "
        f"gaps {result['seq_gaps']}, dups {result['seq_dups']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
