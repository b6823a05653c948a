"""Speed and memory of ``bedside process``'s code path on one full recording, all roles.

    python bench/speed.py [--record PATH] [--repeat 3] [--out bench/results/speed.json]

Runs ``device.offline.process_recording`` (the streaming core plus the alarm engine, as the
``process`` command does, without writing JSON) over an 8-minute 125 Hz BIDMC record with
ECG, PPG and impedance, and prints signal seconds per CPU second (x real time, best of
``--repeat`` runs on one core) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.config import load_config  # noqa: E402
from device.offline import process_recording  # noqa: E402
from device.recording import read_recording  # noqa: E402

DEFAULT_RECORD = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "bidmc"
    / "bidmc_csv"
    / "bidmc_01_Signals.csv.gz"
)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    a = ap.parse_args()
    if not a.record.exists():
        print(f"{a.record}: no such recording (give --record)", file=sys.stderr)
        return 2
    rec = read_recording(a.record)
    cfg = load_config(None)
    roles = sorted(rec.role_signals())
    runs = []
    n_vitals = 0
    for _ in range(a.repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        out = list(process_recording(rec, cfg))
        runs.append((time.process_time() - t0, time.perf_counter() - w0))
        n_vitals = sum(1 for m in out if m.kind == "vitals")
    cpu = min(r[0] for r in runs)
    wall = min(r[1] for r in runs)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {
        "machine": " ".join(
            x for x in (platform.machine(), platform.processor(), platform.python_version()) if x
        ),
        "record": a.record.name,
        "roles": roles,
        "signal_s": rec.duration_s,
        "fs_hz": rec.fs_hz,
        "vitals_records": n_vitals,
        "cpu_s_best": cpu,
        "wall_s_best": wall,
        "x_realtime_cpu": rec.duration_s / cpu,
        "x_realtime_wall": rec.duration_s / wall,
        "peak_rss_mb": peak_rss_mb,
        "repeat": a.repeat,
    }
    print(
        f"{a.record.name}: {rec.duration_s:.0f} s at {rec.fs_hz:g} Hz, roles {','.join(roles)}: "
        f"{result['x_realtime_cpu']:.0f}x real time (CPU, best of {a.repeat}), "
        f"{result['x_realtime_wall']:.0f}x wall; peak RSS {peak_rss_mb:.0f} MB"
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
