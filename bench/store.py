"""What store and forward costs per message: the SQLite store (device/sinks/store.py) and QoS 1.

1. The store alone, on the disk of ``--dir``: a vitals message written (synchronous=NORMAL)
   and deleted after its acknowledgement, and an alarm event written with synchronous=FULL
   (fsync of the write-ahead log); microseconds per message and bytes written to the disk per
   message (``write_bytes`` of /proc/self/io, which counts what reaches the block layer).
2. Publishing through a real Mosquitto: ``--messages`` vitals payloads (a real one, ~600 bytes)
   through the Publisher (store + QoS 1, acknowledgements read back and deleted) against plain
   paho QoS 0 publishing of the same payloads (the path before the store): CPU time of this
   process per message.

    .venv/bin/python bench/store.py [--messages 5000] [--dir DIR] [--out bench/results/store.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config import MqttConfig  # noqa: E402
from device.sinks.mqtt import Publisher  # noqa: E402
from device.sinks.store import Store  # noqa: E402

#: a vitals payload as the daemon publishes it (docs/mqtt.md), about 600 bytes of JSON
VITALS: dict[str, Any] = {
    "schema_version": 1, "bed": "icu-3", "ts": "2026-11-23T12:28:12.474Z", "type": "vitals",
    "t_s": 30.0, "hr_bpm": 78.0, "rr_bpm": 20.0, "hr_source": "ecg", "rr_source": "resp",
    "hr_model": "dsp", "rr_model": "dsp",
    "sqi": {"hr_ecg": 0.999, "hr_ppg": 0.0, "rr_resp": 1.0},
    "measurements": [
        {"mdc": "MDC_ECG_HEART_RATE", "value": 78.0, "unit": "MDC_DIM_BEAT_PER_MIN",
         "source": "ecg", "model": "dsp"},
        {"mdc": "MDC_TTHOR_RESP_RATE", "value": 20.0, "unit": "MDC_DIM_RESP_PER_MIN",
         "source": "resp", "model": "dsp"},
    ],
}  # fmt: skip
ALARM: dict[str, Any] = {
    "schema_version": 1, "bed": "icu-3", "ts": "2026-11-23T12:28:10.729Z", "type": "alarm",
    "t_s": 23.0, "id": "icu-3-sensor_off-ppg-23", "condition": "sensor_off", "priority": "low",
    "state": "active", "value": 3.0, "limit": 3.0, "role": "ppg", "onset_t_s": 23.0,
    "latched": False, "technical": True, "detail": "ppg signal flat",
}  # fmt: skip


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def store_cost(directory: Path, kind: str, n: int) -> dict[str, float]:
    path = directory / f"bench-{kind}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = Store(path)
    body = VITALS if kind == "vitals" else ALARM
    w0, c0, t0 = write_bytes(), time.process_time(), time.perf_counter()
    for _ in range(n):
        store.add(kind, body)
        (msg,) = store.take(1)
        store.done([msg.key])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    written = write_bytes() - w0
    store.close()
    return {
        "messages": n,
        "wall_us_per_message": round(1e6 * wall / n, 1),
        "cpu_us_per_message": round(1e6 * cpu / n, 1),
        "disk_bytes_per_message": round(written / n),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish_cost(directory: Path, port: int, n: int) -> dict[str, Any]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    out: dict[str, Any] = {}
    pub = Publisher(
        MqttConfig(broker=f"mqtt://127.0.0.1:{port}"), "icu-3", Store(directory / "pub.sqlite3")
    )
    pub.start()
    deadline = time.monotonic() + 10
    while not pub.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        pub.publish_vitals({**VITALS, "t_s": float(i)})
        if i % 10 == 0:
            pub.poll()
    while pub.store.depth and time.perf_counter() - t0 < 120:
        pub.poll()
        time.sleep(0.001)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out["store_qos1"] = {
        "messages": n,
        "acknowledged": pub.counters["vitals_sent"],
        "cpu_us_per_message": round(1e6 * cpu / n, 1),
        "wall_s": round(wall, 2),
    }
    pub.stop()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-qos0")
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = json.dumps(VITALS, separators=(",", ":"))
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        client.publish("bedside/icu-3/vitals", payload, qos=0)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out["plain_qos0"] = {
        "messages": n,
        "cpu_us_per_message": round(1e6 * cpu / n, 1),
        "wall_s": round(wall, 2),
    }
    client.disconnect()
    client.loop_stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--alarms", type=int, default=300)
    ap.add_argument("--dir", help="folder on the disk to measure (default: a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/store.json"))
    args = ap.parse_args()
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bedside-store-"))
    directory.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_version()}, {os.cpu_count()} cores "
        "(shared)",
        "command": "bench/store.py " + " ".join(sys.argv[1:]),
        "filesystem": subprocess.run(
            ["stat", "-f", "-c", "%T", str(directory)], capture_output=True, text=True
        ).stdout.strip(),
        "payload_bytes": {
            "vitals": len(json.dumps(VITALS, separators=(",", ":"))),
            "alarm": len(json.dumps(ALARM, separators=(",", ":"))),
        },
        "store_vitals_normal": store_cost(directory, "vitals", args.messages),
        "store_alarm_full": store_cost(directory, "alarm", args.alarms),
    }
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if os.access(binary, os.X_OK):
        port = free_port()
        conf = directory / "mq.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            result["publish"] = publish_cost(directory, port, args.messages)
        finally:
            broker.terminate()
            broker.wait(10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
