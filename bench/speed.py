"""Speed and memory of ``bedside process`` on one full recording, all roles: in process and as
a whole command including the interpreter's start.

    python bench/speed.py [--record PATH] [--repeat 7] [--out bench/results/speed.json]

Two figures, each the median of ``--repeat`` runs, in signal seconds per CPU second (x real
time; CPU time is user + system, so other jobs on a shared machine slow the wall clock but
not the figure):

- **in process**: ``device.offline.process_recording`` (the streaming core and the alarm
  engine, as the command runs them, messages built but not written) over a recording already
  read; target >= 1000x;
- **whole command**: ``python -m device process RECORD --jsonl /dev/null`` in a child process,
  from the interpreter's start to its exit (imports, reading the gzip CSV, the core, writing
  JSON lines); target >= 400x. Its peak RSS is the child's. Bytecode is compiled once
  beforehand, as ``pip install`` does on an appliance.

Reading the recording alone is timed too. The record defaults to an 8-minute 125 Hz BIDMC
record with ECG, PPG and impedance from ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config import load_config  # noqa: E402
from device.messages import Vitals  # noqa: E402
from device.offline import process_recording  # noqa: E402
from device.recording import read_recording  # noqa: E402

DEFAULT_RECORD = ROOT.parent / "shared" / "data" / "bidmc" / "bidmc_csv" / "bidmc_01_Signals.csv.gz"
TARGETS = {"in_process_x_realtime": 1000.0, "whole_command_x_realtime": 400.0}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return {
        "arch": platform.machine(),
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "host": platform.node(),
    }


def whole_command(record: Path, pycache: str) -> tuple[float, float, float]:
    """(CPU s, wall s, peak RSS MB) of one ``python -m device process`` child. Compiled
    bytecode is cached (in ``pycache``) as on an installed appliance, where pip compiles it
    at install time: a development shell with PYTHONDONTWRITEBYTECODE would otherwise
    recompile every module at every start."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "device", "process", str(record), "--jsonl", os.devnull]
    w0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - w0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.json")
    a = ap.parse_args()
    if not a.record.exists():
        print(f"{a.record}: no such recording (give --record)", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    t0 = time.process_time()
    rec = read_recording(a.record)
    read_cpu = time.process_time() - t0
    cfg = load_config(None)
    roles = sorted(rec.role_signals())
    cpu_runs, wall_runs = [], []
    n_vitals = 0
    for _ in range(a.repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        out = list(process_recording(rec, cfg))
        cpu_runs.append(time.process_time() - t0)
        wall_runs.append(time.perf_counter() - w0)
        n_vitals = sum(1 for m in out if isinstance(m, Vitals))
    in_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with tempfile.TemporaryDirectory(prefix="bedside-speed-pycache-") as pycache:
        whole_command(a.record, pycache)  # compiles and caches the bytecode
        cmd_runs = [whole_command(a.record, pycache) for _ in range(a.repeat)]
    load1 = os.getloadavg()
    dur = rec.duration_s
    in_cpu = statistics.median(cpu_runs)
    cmd_cpu = statistics.median(r[0] for r in cmd_runs)
    result = {
        "machine": machine(),
        "load_average_1min": [round(load0[0], 2), round(load1[0], 2)],
        "record": a.record.name,
        "roles": roles,
        "signal_s": dur,
        "fs_hz": rec.fs_hz,
        "vitals_records": n_vitals,
        "repeat": a.repeat,
        "read_recording_cpu_s": round(read_cpu, 4),
        "in_process": {
            "what": "device.offline.process_recording over the recording already read",
            "cpu_s_median": round(in_cpu, 4),
            "cpu_s_runs": [round(c, 4) for c in cpu_runs],
            "wall_s_median": round(statistics.median(wall_runs), 4),
            "x_realtime_cpu": round(dur / in_cpu, 1),
            "x_realtime_wall": round(dur / statistics.median(wall_runs), 1),
            "peak_rss_mb": round(in_rss, 1),
        },
        "whole_command": {
            "what": "python -m device process RECORD --jsonl /dev/null, interpreter start to "
            "exit, bytecode cached (as installed)",
            "cpu_s_median": round(cmd_cpu, 4),
            "cpu_s_runs": [round(r[0], 4) for r in cmd_runs],
            "wall_s_median": round(statistics.median(r[1] for r in cmd_runs), 4),
            "x_realtime_cpu": round(dur / cmd_cpu, 1),
            "x_realtime_wall": round(dur / statistics.median(r[1] for r in cmd_runs), 1),
            "peak_rss_mb": round(max(r[2] for r in cmd_runs), 1),
        },
        "targets": TARGETS,
    }
    result["meets_targets"] = (
        result["in_process"]["x_realtime_cpu"] >= TARGETS["in_process_x_realtime"]
        and result["whole_command"]["x_realtime_cpu"] >= TARGETS["whole_command_x_realtime"]
    )
    print(
        f"{a.record.name}: {dur:.0f} s at {rec.fs_hz:g} Hz, roles {','.join(roles)}; "
        f"median of {a.repeat} (CPU time): in process "
        f"{result['in_process']['x_realtime_cpu']:.0f}x real time, whole command "
        f"{result['whole_command']['x_realtime_cpu']:.0f}x (peak RSS "
        f"{result['whole_command']['peak_rss_mb']:.0f} MB); reading {read_cpu * 1000:.0f} ms"
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
