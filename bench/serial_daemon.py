"""Daemon cost per bed while reading a live serial stream in real time.

Three real processes, as on a ward: ``bedside replay --to pty`` plays a BIDMC record as
HealthyPi packets at real time into a pseudo-terminal; ``bedside run --serial PTY`` (the
daemon) reads it, estimates HR/RR once per second and publishes to a Mosquitto broker
started here on a free loopback port. The daemon's CPU time (utime + stime from /proc) over
``--seconds`` of steady streaming, after a warm-up, gives its share of one core; its peak RSS
is VmHWM. Targets: <= 2 % of one core, <= 80 MB.

    .venv/bin/python bench/serial_daemon.py [--seconds 60] [--out bench/results/serial_daemon.json]

``--icu`` measures the ICU bed of the arrhythmia alarms instead: a CinC 2015 record with two
ECG leads, pleth and arterial pressure at 250 Hz (``../shared/data/cinc2015/b484s.hea``),
sent by the emulator as ``icu4`` OpenView packets (four int32 channels) and read by the daemon
with ``[serial] preset = "icu4"``: every lead through the beat stream, the beat classifier,
the rhythm judgement and the five arrhythmia conditions. Targets <= 1 % of one core and
<= 70 MB (``bench/results/serial_daemon_icu.json``). The WFDB reader (and its import) is the
emulator's, not the daemon's: the daemon reads bytes from a port, as on the ward.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.machine import describe  # noqa: E402

RECORD = ROOT.parent / "shared/data/bidmc/bidmc_csv/bidmc_02_Signals.csv.gz"
BUNDLED = ROOT / "device/data/bidmc_09_excerpt.csv.gz"
ICU_RECORD = ROOT.parent / "shared/data/cinc2015/b484s.hea"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


#: what the daemon imports that weighs most (RSS of a fresh interpreter importing only it)
IMPORTS = ("numpy", "scipy.signal", "paho.mqtt.client", "serial", "device.daemon")


def import_rss_mb(module: str) -> float:
    code = f"import {module}\nprint(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    return round(int(out.stdout.strip()) / 1024, 1) if out.returncode == 0 else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--warmup", type=float, default=15.0, help="seconds before measuring (start-up, imports)"
    )
    ap.add_argument("--out", default="")
    ap.add_argument("--icu", action="store_true", help="the 250 Hz ICU bed (see above)")
    args = ap.parse_args()
    if args.icu:
        record = ICU_RECORD
        if not record.exists():
            print(f"{record} not found (../shared/data beside the checkout)", file=sys.stderr)
            return 2
        fs, preset, targets = 250, "icu4", {"cpu_percent_of_one_core": 1.0, "peak_rss_mb": 70.0}
        out = args.out or str(ROOT / "bench/results/serial_daemon_icu.json")
    else:
        record = RECORD if RECORD.exists() else BUNDLED
        fs, preset, targets = (
            125,
            "healthypi5",
            {"cpu_percent_of_one_core": 2.0, "peak_rss_mb": 80.0},
        )
        out = args.out or str(ROOT / "bench/results/serial_daemon.json")
    if shutil.which("mosquitto") is None:
        print("mosquitto not installed: apt-get install -y mosquitto", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bedside-bench-"))
    port = free_port()
    (tmp / "mq.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    procs: list[subprocess.Popen[str]] = []
    daemon_log = (tmp / "daemon.log").open("w")  # noqa: SIM115 (closed with the processes)
    py = [sys.executable, "-m", "device"]
    try:
        procs.append(
            subprocess.Popen(
                ["mosquitto", "-c", str(tmp / "mq.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
        replay = subprocess.Popen(
            [*py, "replay", str(record), "--to", "pty", "--format", "openview", "--loop"]
            + ["--preset", preset],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(replay)
        assert replay.stdout is not None
        pty = replay.stdout.readline().strip()
        (tmp / "bed.toml").write_text(
            f'[bed]\nid = "bench"\n[serial]\nurl = "{pty}"\nformat = "openview"\n'
            f'fs_hz = {fs}\npreset = "{preset}"\n[mqtt]\nbroker = "mqtt://127.0.0.1:{port}"\n'
        )
        daemon = subprocess.Popen(
            [*py, "run", "--config", str(tmp / "bed.toml"), "--state-dir", str(tmp / "state")],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=daemon_log,
            text=True,
        )
        procs.append(daemon)
        time.sleep(args.warmup)
        if daemon.poll() is not None:
            print((tmp / "daemon.log").read_text(), file=sys.stderr)
            return 1
        c0, t0 = cpu_s(daemon.pid), time.monotonic()
        rss_start = status_kb(daemon.pid, "VmRSS")
        time.sleep(args.seconds)
        c1, t1 = cpu_s(daemon.pid), time.monotonic()
        peak_kb = status_kb(daemon.pid, "VmHWM")
        rss_kb = status_kb(daemon.pid, "VmRSS")
        threads = status_kb(daemon.pid, "Threads")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        daemon_log.close()
    cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    result = {
        "what": f"bedside run --serial reading a live {fs} Hz OpenView packet stream ({preset}) "
        "from a pty in real time, publishing to Mosquitto; CPU share of one core over the "
        "window after warm-up, peak RSS (VmHWM)",
        "record": record.name,
        "preset": preset,
        "fs_hz": fs,
        "machine": describe(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "window_s": round(t1 - t0, 1),
        "warmup_s": args.warmup,
        "cpu_percent_of_one_core": round(cpu_pct, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_mb_at_start_of_window": round(rss_start / 1024, 1),
        "rss_mb_at_end": round(rss_kb / 1024, 1),
        "threads": threads,
        "targets": targets,
        "meets_targets": cpu_pct <= targets["cpu_percent_of_one_core"]
        and peak_kb / 1024 <= targets["peak_rss_mb"],
        # where the memory goes: peak RSS of a bare interpreter importing each alone
        "import_peak_rss_mb": {m: import_rss_mb(m) for m in IMPORTS},
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
