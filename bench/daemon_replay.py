"""Cost and latency of the daemon for one bed replayed in real time (125 Hz, ECG + PPG +
impedance) into a real Mosquitto on loopback.

    python bench/daemon_replay.py [--seconds 120] [--latency-seconds 180]
                                  [--record PATH] [--out bench/results/daemon_replay.json]

1. **Cost.** ``bedside run --replay RECORD --speed 1`` runs as a child process, exactly as on
   a ward, publishing to a Mosquitto started here. After ``--warmup`` seconds (start-up,
   imports, the first windows filling), its CPU time (utime + stime from /proc) over
   ``--seconds`` of wall time gives its share of one core; its peak RSS is VmHWM at the end.
   A subscriber counts the vitals that arrive. Targets: <= 0.5 % of one core, <= 60 MB.
   ``--also-without-models`` repeats it with ``[models] enabled = false`` (LiteRT never
   loaded), and the peak RSS of a bare interpreter importing each heavy dependency is listed,
   to show where the memory goes.
2. **Latency.** The daemon's own code (``device.preflight`` building the replay source, the
   monitor and the MQTT sink, then ``device.daemon.Daemon``) runs in this process; the
   subscriber runs in a child process. Both stamp times with CLOCK_MONOTONIC, one clock for
   the whole machine. For each signal second k:

   - *release*: when the replay source handed the core (``FrameQueue.put``) the frame that
     holds the sample completing second k. Replay frames end on whole tenths of a second of
     signal, so this is the end of second k on the replay's real-time schedule (the lag
     behind that schedule, the replay thread's wake-up jitter, is reported too);
   - *receipt*: when the subscriber's ``on_message`` sees the vitals message with
     ``t_s == k``.

   Latency = receipt - release: the core's work for that second, publishing, the broker and
   the subscriber's client. Reported: p50, p90, p99 and max over the seconds after the first
   ``--latency-warmup``. Target: p99 <= 20 ms.

3. **Latency on the live path** (``--serial-seconds S``): this process plays a HealthyPi,
   writing packets into a pseudo-terminal in 20 ms bursts at 125 samples/s, and ``bedside run
   --serial`` reads them (a child process); latency of second k runs from the write of the
   burst holding its last sample to the subscriber's receipt.

The machine, its load average during each part, and the record are written with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.machine import describe  # noqa: E402 (after the path is set)
from lab.processes import stop_process  # noqa: E402

RECORD = ROOT.parent / "shared/data/bidmc/bidmc_csv/bidmc_01_Signals.csv.gz"
BUNDLED = ROOT / "device/data/bidmc_09_excerpt.csv.gz"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"cpu_percent_of_one_core": 0.5, "peak_rss_mb": 60.0, "latency_p99_ms": 20.0}

#: the subscriber (a child process): writes "<monotonic receipt time> <t_s>" per vitals message
#: (and "<time> status <samples missing per source>" per status message) to a file, so that
#: nothing in the measuring process wakes up per message while the daemon runs in it
SUBSCRIBER = r"""
import json, sys, time
import paho.mqtt.client as mqtt
port, path, topics = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
out = open(path, "w", buffering=1)
subscribed = []
def on_connect(c, u, flags, rc, props=None):
    for topic in topics:
        c.subscribe(topic, qos=0)
def on_subscribe(c, u, mid, rcs, props=None):
    subscribed.append(mid)
    if len(subscribed) == len(topics):
        print("ready", flush=True)
def on_message(c, u, msg):
    t = time.monotonic()
    body = json.loads(msg.payload)
    if msg.topic.endswith("/status"):
        # samples the core counted as missing: fed by the daemon, or reported by the source
        missing = {k: max(v.values(), default=0) for k, v in body.get("gap_samples", {}).items()}
        for name, src in body.get("sources", {}).items():
            missing[name] = max(missing.get(name, 0), int(src.get("lost_samples", 0)))
        out.write(f"{t:.6f} status {json.dumps(missing, separators=(',', ':'))}\n")
    else:
        out.write(f"{t:.6f} {body['t_s']}\n")
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port)
c.loop_forever()
"""


def cpu_s(pid: int) -> float:
    """CPU time of the process in clock ticks (utime + stime, exited threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def run_s(pid: int) -> float:
    """CPU time of the process's live threads to the nanosecond (the scheduler's own count,
    /proc/PID/task/*/schedstat): at 0.5 % of a core a 120 s window holds only 60 ticks."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


#: what the daemon imports that weighs most: peak RSS of a bare interpreter importing each
IMPORTS = ("numpy", "paho.mqtt.client", "ai_edge_litert.interpreter", "device.daemon")


def import_rss_mb(module: str) -> float:
    code = f"import {module}\nprint(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return round(int(out.stdout.strip()) / 1024, 1) if out.returncode == 0 else float("nan")


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Subscriber:
    """The subscriber child process; after ``stop()``, the receipt times it wrote, by t_s."""

    def __init__(self, port: int, path: Path, *topics: str) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(port), str(path), *topics],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the subscriber did not start")
        self.received: dict[float, float] = {}
        #: (receipt time, samples counted missing per source) of each status message
        self.status: list[tuple[float, dict[str, int]]] = []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        for line in self.path.read_text().splitlines():
            t, what, *rest = line.split(maxsplit=2)
            if what == "status":
                self.status.append((float(t), json.loads(rest[0])))
            else:
                self.received.setdefault(float(what), float(t))


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def measure_cost(
    record: Path, port: int, tmp: Path, warmup: float, seconds: float, models: bool = True
) -> dict[str, Any]:
    """``models=False``: the same with ``[models] enabled = false`` (signal processing only,
    LiteRT never imported), to show what the model runtime costs."""
    sub = Subscriber(port, tmp / "rx-cost.txt", "bedside/cost/vitals")
    config = []
    if not models:
        (tmp / "no-models.toml").write_text("[models]\nenabled = false\n")
        config = ["--config", str(tmp / "no-models.toml")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (tmp / "daemon.log").open("w")  # noqa: SIM115 (closed below)
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device",
            "run",
            "--replay",
            str(record),
            "--speed",
            "1",
            "--bed",
            "cost",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--state-dir",
            str(tmp / "state-cost"),
            *config,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        time.sleep(warmup)
        if daemon.poll() is not None:
            raise SystemExit((tmp / "daemon.log").read_text())
        load0 = os.getloadavg()[0]
        c0, r0, t0 = cpu_s(daemon.pid), run_s(daemon.pid), time.monotonic()
        rss0 = status_kb(daemon.pid, "VmRSS")
        time.sleep(seconds)
        c1, r1, t1 = cpu_s(daemon.pid), run_s(daemon.pid), time.monotonic()
        peak_kb = status_kb(daemon.pid, "VmHWM")
        rss1 = status_kb(daemon.pid, "VmRSS")
        threads = status_kb(daemon.pid, "Threads")
        load1 = os.getloadavg()[0]
    finally:
        stop_process(daemon, timeout_s=15)
        log.close()
        sub.stop()
    window = t1 - t0
    return {
        "what": "bedside run --replay RECORD --speed 1 (a child process) publishing to "
        "Mosquitto; CPU share of one core over the window after warm-up (scheduler runtime "
        "of its threads; clock ticks beside it); peak RSS (VmHWM)",
        "models": "shipped models as configured by default" if models else "disabled",
        "warmup_s": warmup,
        "window_s": round(window, 1),
        "cpu_s": round(r1 - r0, 4),
        "cpu_percent_of_one_core": round(100.0 * (r1 - r0) / window, 3),
        "cpu_percent_of_one_core_ticks": round(100.0 * (c1 - c0) / window, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_mb_start_of_window": round(rss0 / 1024, 1),
        "rss_mb_end": round(rss1 / 1024, 1),
        "threads": threads,
        "vitals_received_in_window": sum(1 for t in sub.received.values() if t0 <= t <= t1),
        "load_average_1min": [round(load0, 2), round(load1, 2)],
    }


def measure_latency(
    record: Path, port: int, tmp: Path, seconds: float, skip: float
) -> dict[str, Any]:
    from device.cli import build_parser
    from device.commands.run import apply_flags
    from device.config import load_config
    from device.daemon import Daemon
    from device.preflight import preflight

    bed = "latency"
    sub = Subscriber(port, tmp / "rx-latency.txt", f"bedside/{bed}/vitals")
    args = build_parser(command="run").parse_args(
        [
            "run",
            "--replay",
            str(record),
            "--speed",
            "1",
            "--bed",
            bed,
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--state-dir",
            str(tmp / "state-latency"),
        ]
    )
    cfg = apply_flags(load_config(None), args)
    plan = preflight(cfg)
    stop = threading.Event()
    daemon = Daemon(cfg, plan.sources, plan.sinks, stop=stop, monitor=plan.monitor)
    fs = next(iter(daemon.monitor.pipeline.fs_hz.values()))
    released: dict[int, float] = {}
    frame_ends: list[tuple[int, float]] = []
    state = {"samples": 0}
    put = daemon.queue.put

    def timed_put(frame: Any) -> None:
        n = len(next(iter(frame.samples.values()))) if frame.samples else 0
        t = time.monotonic()
        before = state["samples"]
        state["samples"] = after = before + n
        k = int(before // fs) + 1
        while k * fs <= after + 1e-9:  # seconds whose last sample is in this frame
            released[k] = t
            k += 1
        frame_ends.append((after, t))
        put(frame)

    daemon.queue.put = timed_put  # type: ignore[method-assign]
    # when the core handed each second's vitals to the MQTT sink: splits the latency into the
    # core's work (release -> send) and the way to the subscriber (send -> receipt)
    sent: dict[float, float] = {}
    for sink in daemon.sinks:
        send = sink.send

        def timed_send(msg: Any, ts: float, send: Any = send) -> None:
            if msg.kind == "vitals":
                sent.setdefault(float(msg.t_s), time.monotonic())
            send(msg, ts)

        sink.send = timed_send  # type: ignore[method-assign]
    timer = threading.Timer(seconds, stop.set)
    load0 = os.getloadavg()[0]
    timer.start()
    try:
        daemon.run()
    finally:
        timer.cancel()
        time.sleep(0.5)
        sub.stop()
    load1 = os.getloadavg()[0]
    # the replay's schedule: frame ends are due at t0 + samples / fs (speed 1); t0 is where
    # the earliest frame puts it, since a frame is never released before it is due
    t0 = min(t - end / fs for end, t in frame_ends)
    lat, lag, core, wire = [], [], [], []
    for k, t_rel in sorted(released.items()):
        t_rx = sub.received.get(float(k))
        if k <= skip or t_rx is None:
            continue
        lat.append(1000.0 * (t_rx - t_rel))
        lag.append(1000.0 * (t_rel - (t0 + k)))
        if float(k) in sent:
            core.append(1000.0 * (sent[float(k)] - t_rel))
            wire.append(1000.0 * (t_rx - sent[float(k)]))
    missing = [k for k in released if k > skip and float(k) not in sub.received]
    return {
        "what": "end of signal second k (the replay hands the core the frame completing it) "
        "-> the vitals message of second k at a subscriber in another process; the daemon's "
        "own classes in this process, CLOCK_MONOTONIC on both sides",
        "seconds_measured": len(lat),
        "seconds_missing": len(missing),
        "skip_first_s": skip,
        "latency_ms": {
            "p50": round(statistics.median(lat), 2),
            "p90": round(percentile(lat, 90), 2),
            "p99": round(percentile(lat, 99), 2),
            "max": round(max(lat), 2),
            "mean": round(statistics.fmean(lat), 2),
        },
        "of_which_core_ms": {
            "what": "release -> the vitals handed to the MQTT sink (the core's work)",
            "p50": round(statistics.median(core), 2),
            "p99": round(percentile(core, 99), 2),
            "max": round(max(core), 2),
        },
        "of_which_publish_to_subscriber_ms": {
            "what": "the sink's send -> receipt (paho, Mosquitto, the subscriber's client)",
            "p50": round(statistics.median(wire), 2),
            "p99": round(percentile(wire, 99), 2),
            "max": round(max(wire), 2),
        },
        "replay_lag_behind_schedule_ms": {
            "p50": round(statistics.median(lag), 2),
            "p99": round(percentile(lag, 99), 2),
            "max": round(max(lag), 2),
        },
        "load_average_1min": [round(load0, 2), round(load1, 2)],
    }


def measure_latency_serial(
    record: Path, port: int, tmp: Path, seconds: float, skip: float
) -> dict[str, Any]:
    """The live path: this process plays the board, writing HealthyPi packets into a pty in
    20 ms bursts at 125 samples/s (as ``bedside replay --to pty`` does); ``bedside run
    --serial`` (a child process) reads them. Latency of second k: the subscriber's receipt of
    its vitals minus the moment the burst holding its last sample was written."""
    from device.recording import read_csv
    from device.sources.formats.openview import HEALTHYPI5, counts_for_signals, encode_packets

    rec = read_csv(record)
    fs = rec.fs_hz
    n = min(rec.n_samples, int((seconds + 2) * fs))
    counts = counts_for_signals(HEALTHYPI5, {r: x[:n] * 1e5 for r, x in rec.role_signals().items()})
    stream = encode_packets(HEALTHYPI5, counts)
    size = len(stream) // n
    master, slave = os.openpty()
    tty.setraw(slave)
    sub = Subscriber(port, tmp / "rx-serial.txt", "bedside/serial/vitals", "bedside/serial/status")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device",
            "run",
            "--serial",
            os.ttyname(slave),
            "--format",
            "openview",
            "--fs",
            f"{fs:g}",
            "--bed",
            "serial",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--state-dir",
            str(tmp / "state-serial"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bursts: list[tuple[int, float]] = []  # (samples written so far, when)
    try:
        time.sleep(8.0)  # started and the port opened (pyserial flushes what came before)
        load0 = os.getloadavg()[0]
        c0, w0 = run_s(daemon.pid), time.monotonic()
        t0, i = time.monotonic(), 0
        while i < n and daemon.poll() is None:
            due = min(n, int((time.monotonic() - t0) * fs) + 1)
            if due > i:
                os.write(master, stream[i * size : due * size])
                bursts.append((due, time.monotonic()))
                i = due
            time.sleep(0.02)
        t_end = time.monotonic()
        time.sleep(1.0)
        c1, w1 = run_s(daemon.pid), time.monotonic()
        load1 = os.getloadavg()[0]
    finally:
        stop_process(daemon, timeout_s=15)
        sub.stop()
        os.close(master)
        os.close(slave)
    # A live source's clock runs with the wall clock: before the first packet the silence was
    # counted as lost samples (the serial source reports them; the status says how many), so
    # the core's second m ends with written sample m * fs - gap. The gap is read from the last
    # status sent while packets were flowing.
    during = [g for t, g in sub.status if bursts and bursts[0][1] + 1.0 < t < t_end]
    gap = max(during[-1].values(), default=0) if during else 0
    written: dict[int, float] = {}
    for m in range(1, int((n + gap) // fs) + 1):
        j = int(round(m * fs)) - gap  # samples written when second m is complete
        if j >= 1:
            written[m] = next(t for total, t in bursts if total >= j)
    lat = [
        1000.0 * (sub.received[float(k)] - t)
        for k, t in sorted(written.items())
        if k > skip + gap / fs and float(k) in sub.received
    ]
    return {
        "what": "live path: packets written into a pty by this process in 20 ms bursts at "
        "125 samples/s -> bedside run --serial (a child process) -> Mosquitto -> subscriber; "
        "latency of second k from the write of the burst holding its last sample",
        "seconds_measured": len(lat),
        "seconds_missing": sum(
            1 for k in written if k > skip + gap / fs and float(k) not in sub.received
        ),
        "gap_samples_before_the_first_packet": gap,
        "latency_ms": {
            "p50": round(statistics.median(lat), 2),
            "p90": round(percentile(lat, 90), 2),
            "p99": round(percentile(lat, 99), 2),
            "max": round(max(lat), 2),
            "mean": round(statistics.fmean(lat), 2),
        },
        "daemon_cpu_percent_of_one_core": round(100.0 * (c1 - c0) / (w1 - w0), 3),
        "load_average_1min": [round(load0, 2), round(load1, 2)],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--record", type=Path, default=RECORD if RECORD.exists() else BUNDLED)
    ap.add_argument("--seconds", type=float, default=120.0, help="cost window (s)")
    ap.add_argument("--warmup", type=float, default=20.0, help="before the cost window (s)")
    ap.add_argument("--latency-seconds", type=float, default=180.0)
    ap.add_argument("--latency-warmup", type=float, default=5.0, help="seconds not scored")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument(
        "--serial-seconds",
        type=float,
        default=0.0,
        help="also measure the latency on the live serial path for this long (0: not)",
    )
    ap.add_argument(
        "--also-without-models",
        action="store_true",
        help="measure the cost a second time with [models] enabled = false",
    )
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/daemon_replay.json")
    a = ap.parse_args()
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(binary, os.X_OK):
        print("mosquitto not installed: apt-get install -y mosquitto", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bedside-bench-daemon-"))
    port = free_port()
    (tmp / "mq.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(
        [binary, "-c", str(tmp / "mq.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result: dict[str, Any] = {
        "machine": describe(),
        "record": a.record.name,
        "speed": 1.0,
        "targets": TARGETS,
    }
    try:
        time.sleep(0.5)
        if not a.skip_cost:
            result["cost"] = measure_cost(a.record, port, tmp, a.warmup, a.seconds)
            print(json.dumps(result["cost"], indent=1), flush=True)
            if a.also_without_models:
                result["cost_without_models"] = measure_cost(
                    a.record, port, tmp, a.warmup, a.seconds, models=False
                )
                print(json.dumps(result["cost_without_models"], indent=1), flush=True)
            result["import_peak_rss_mb"] = {m: import_rss_mb(m) for m in IMPORTS}
        if not a.skip_latency:
            result["latency"] = measure_latency(
                a.record, port, tmp, a.latency_seconds, a.latency_warmup
            )
            print(json.dumps(result["latency"], indent=1), flush=True)
        if a.serial_seconds > 0:
            result["latency_serial"] = measure_latency_serial(
                a.record, port, tmp, a.serial_seconds, a.latency_warmup
            )
            print(json.dumps(result["latency_serial"], indent=1), flush=True)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    cost, lat = result.get("cost"), result.get("latency")
    result["meets_targets"] = {
        "cpu": cost["cpu_percent_of_one_core"] <= TARGETS["cpu_percent_of_one_core"]
        if cost
        else None,
        "rss": cost["peak_rss_mb"] <= TARGETS["peak_rss_mb"] if cost else None,
        "latency": lat["latency_ms"]["p99"] <= TARGETS["latency_p99_ms"] if lat else None,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["meets_targets"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
