"""Soak: 24 hours of signal through ``bedside run`` and a real broker, at accelerated speed.

The real daemon (``python -m device run``) replays a recording in a loop (by default the
bundled BIDMC excerpt, 210 s of ECG + PPG + impedance, so every pass also restarts the core as
a looping replay does) at ``--speed`` x real time into a Mosquitto started here on a free
loopback port; a subscriber counts what a nurses' station receives and checks each topic's
``seq`` for gaps and duplicates. Every ``--sample-s`` seconds of wall time the daemon's RSS
(VmRSS), its open file descriptors (/proc/PID/fd) and the size of its store (database +
write-ahead log) are sampled. Required, after a warm-up (the first ``--warmup-frac`` of the
signal):

- RSS grows by at most 5 %: the median of the last tenth of the samples against the median
  of the first tenth after warm-up;
- file descriptors do not grow: the number open in the steady state (the most frequent count)
  over the last tenth of the samples is not above that over the first tenth after warm-up (a
  leak raises it; a descriptor open for a moment, such as the model file a looping replay's
  new core loads while the old one is still open, does not, and is reported as a transient);
- the store does not grow while the broker is up: its depth (messages not yet acknowledged)
  stays within the in-flight window, so no rows pile up; the database file in the second half
  after warm-up stays within ``DB_SLACK`` of its size in the first half (SQLite allocates whole
  4 KiB pages, and a moment's backlog that splits a page raises the file's high-water mark by
  a page, once; rows piling up would grow it with every hour of signal); its write-ahead log,
  which SQLite recycles, stays within its bound (``WAL_PAGES`` pages and some frames a reader
  may hold up a checkpoint for).

The replay runs as fast as the core keeps up when the machine cannot give ``--speed`` (the
replay source waits for the core); the achieved speed is reported.

    nice -n 10 .venv/bin/python bench/soak.py                       # 24 h of signal
    .venv/bin/python bench/soak.py --signal-h 0.5 --out /tmp/s.json # the short version CI runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "device/data/bidmc_09_excerpt.csv.gz"
BED = "soak1"
#: the publisher keeps at most this many stored messages unacknowledged (device.sinks.mqtt)
WINDOW = 100
#: the write-ahead log: WAL_PAGES frames of a 4 KiB page and a 24-byte header, a 32-byte file
#: header, and 64 frames more that this script's own reads may hold up a checkpoint for
WAL_BOUND = (256 + 64) * (4096 + 24) + 32
#: four pages: a high-water mark raised by a moment's backlog, not rows piling up (a day of
#: vitals is over 50 MB)
DB_SLACK = 4 * 4096


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def store_bytes(state: Path) -> tuple[int, int]:
    db = state / f"{BED}-store.sqlite3"
    wal = state / f"{BED}-store.sqlite3-wal"
    return (
        db.stat().st_size if db.exists() else 0,
        wal.stat().st_size if wal.exists() else 0,
    )


def store_depth(state: Path) -> int:
    db = state / f"{BED}-store.sqlite3"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM messages").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return -1


class Station:
    """A subscriber counting vitals and alarms, with gaps and duplicates of ``seq``."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.lock = threading.Lock()
        self.vitals = 0
        self.alarms = 0
        self.historical = 0
        self.seen: dict[str, set[int]] = {"vitals": set(), "alarms": set()}
        self.duplicates = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-station")
        self.client.on_connect = lambda c, *a: c.subscribe(f"bedside/{BED}/+", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        leaf = msg.topic.rsplit("/", 1)[1]
        if leaf not in self.seen:
            return
        body = json.loads(msg.payload)
        with self.lock:
            seq = int(body["seq"])
            if seq in self.seen[leaf]:
                self.duplicates += 1
                return
            self.seen[leaf].add(seq)
            if leaf == "vitals":
                self.vitals += 1
                self.historical += bool(body.get("historical"))
            else:
                self.alarms += 1

    def gaps(self, kind: str) -> int:
        with self.lock:
            seqs = self.seen[kind]
            return (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def percent(a: float, b: float) -> float:
    return 100.0 * (b - a) / a if a else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--signal-h", type=float, default=24.0, help="hours of signal to replay")
    ap.add_argument("--speed", type=float, default=200.0, help="replay speed (x real time)")
    ap.add_argument("--record", default=str(BUNDLED), help="recording replayed in a loop")
    ap.add_argument("--sample-s", type=float, default=5.0, help="wall seconds between samples")
    ap.add_argument("--warmup-frac", type=float, default=0.1, help="share of signal as warm-up")
    ap.add_argument("--out", default=str(ROOT / "bench/results/soak.json"))
    args = ap.parse_args()
    mosquitto = next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if mosquitto is None:
        print("mosquitto not installed: apt-get install -y mosquitto", file=sys.stderr)
        return 2
    target_s = int(args.signal_h * 3600)
    tmp = Path(tempfile.mkdtemp(prefix="bedside-soak-"))
    state = tmp / "state"
    port = free_port()
    (tmp / "mq.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\n"
    )
    broker = subprocess.Popen(
        [mosquitto, "-c", str(tmp / "mq.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    time.sleep(0.5)
    station = Station(port)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = (tmp / "daemon.log").open("w")  # noqa: SIM115 (closed below)
    cmd = [
        sys.executable, "-m", "device", "run", "--replay", args.record, "--loop",
        "--speed", str(args.speed), "--broker", f"mqtt://127.0.0.1:{port}", "--bed", BED,
        "--state-dir", str(state),
    ]  # fmt: skip
    daemon = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    samples: list[dict[str, float]] = []
    t0 = time.monotonic()
    try:
        while station.vitals < target_s:
            if daemon.poll() is not None:
                raise RuntimeError(f"daemon exited {daemon.returncode}: see {tmp}/daemon.log")
            if broker.poll() is not None:
                raise RuntimeError("mosquitto exited")
            db, wal = store_bytes(state)
            samples.append(
                {
                    "wall_s": round(time.monotonic() - t0, 1),
                    "signal_s": station.vitals,
                    "rss_kb": rss_kb(daemon.pid),
                    "fds": fd_count(daemon.pid),
                    "db_bytes": db,
                    "wal_bytes": wal,
                    "depth": store_depth(state),
                }
            )
            last = samples[-1]
            if len(samples) % 60 == 1:
                print(
                    f"soak: {last['signal_s'] / 3600:.2f} h of signal in {last['wall_s']:.0f} s, "
                    f"RSS {last['rss_kb'] / 1024:.1f} MB, fds {last['fds']}, "
                    f"store {(db + wal) / 1024:.0f} KiB depth {last['depth']}",
                    flush=True,
                )
            time.sleep(args.sample_s)
        wall_s = time.monotonic() - t0
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        log.close()
        time.sleep(1.0)
        station.close()
        broker.terminate()
        broker.wait(10)
    after = [s for s in samples if s["signal_s"] >= args.warmup_frac * target_s]
    if len(after) < 20:
        print(f"soak: only {len(after)} samples after warm-up; run longer", file=sys.stderr)
        return 1
    tenth = max(1, len(after) // 10)
    half = len(after) // 2
    rss_start = statistics.median(s["rss_kb"] for s in after[:tenth])
    rss_end = statistics.median(s["rss_kb"] for s in after[-tenth:])
    fds_first = statistics.mode(int(s["fds"]) for s in after[:tenth])
    fds_last = statistics.mode(int(s["fds"]) for s in after[-tenth:])
    fds_max = max(int(s["fds"]) for s in after)
    transients = sum(1 for s in after if int(s["fds"]) > max(fds_first, fds_last))
    size_first = max(s["db_bytes"] for s in after[:half])
    size_second = max(s["db_bytes"] for s in after[half:])
    wal_max = max(s["wal_bytes"] for s in after)
    depth_max = max(int(s["depth"]) for s in after)
    growth = percent(rss_start, rss_end)
    result = {
        "machine": f"{platform.machine()} {platform.python_version()}, {os.cpu_count()} cores "
        f"(shared), load average at end {os.getloadavg()[0]:.1f}",
        "command": "bench/soak.py " + " ".join(sys.argv[1:]),
        "record": Path(args.record).name,
        "speed_requested": args.speed,
        "signal_s": station.vitals,
        "wall_s": round(wall_s, 1),
        "speed_achieved": round(station.vitals / wall_s, 1),
        "daemon_exit_code": rc,
        "station": {
            "vitals": station.vitals,
            "vitals_historical": station.historical,
            "alarms": station.alarms,
            "seq_gaps_vitals": station.gaps("vitals"),
            "seq_gaps_alarms": station.gaps("alarms"),
            "duplicates": station.duplicates,
        },
        "warmup_signal_s": int(args.warmup_frac * target_s),
        "rss_mb": {
            "after_warmup": round(rss_start / 1024, 2),
            "end": round(rss_end / 1024, 2),
            "max": round(max(s["rss_kb"] for s in after) / 1024, 2),
            "growth_percent": round(growth, 2),
        },
        "fds": {
            "steady_after_warmup": fds_first,
            "steady_end": fds_last,
            "max": fds_max,
            "samples_above_steady": transients,
            "samples": len(after),
        },
        "store_db_bytes": {
            "first_half_max": size_first,
            "second_half_max": size_second,
            "slack": DB_SLACK,
        },
        "store_wal_bytes": {"max": wal_max, "bound": WAL_BOUND},
        "store_depth_max": depth_max,
        "required": {
            "rss_growth_le_5_percent": growth <= 5.0,
            "fds_do_not_grow": fds_last <= fds_first,
            "store_does_not_grow": size_second <= size_first + DB_SLACK
            and wal_max <= WAL_BOUND
            and depth_max <= 2 * WINDOW,
        },
        "samples": samples[:: max(1, len(samples) // 300)],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0 if all(result["required"].values()) and rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
