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

Single batches vary by 20-30 % on a shared virtual machine. ``--compare main --rounds 5``
(optionally with ``--python /other/venv/bin/python`` more than once) also runs another git
revision beside this tree in interleaved rounds and reports the medians of each (tree,
interpreter): the figures to compare.
"""

from __future__ import annotations

import argparse
import json
import os
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
    import numpy

    from lab.machine import describe

    return {**describe(), "numpy": numpy.__version__}


#: one in-process batch, run in a child with the tree under test first on its path: prints
#: the CPU seconds of each run (after one warm-up run)
INNER = r"""
import json, sys, time
from device.config import load_config
from device.offline import process_recording
from device.recording import read_recording
rec, cfg = read_recording(sys.argv[1]), load_config(None)
list(process_recording(rec, cfg))
runs = []
for _ in range(int(sys.argv[2])):
    t = time.process_time()
    list(process_recording(rec, cfg))
    runs.append(time.process_time() - t)
print(json.dumps(runs))
"""


def whole_command(
    record: Path, pycache: str, tree: Path = ROOT, python: str = sys.executable
) -> tuple[float, float, float]:
    """(CPU s, wall s, peak RSS MB) of one ``python -m device process`` child. Compiled
    bytecode is cached (in ``pycache``) as on an installed appliance, where pip compiles it
    at install time: a development shell with PYTHONDONTWRITEBYTECODE would otherwise
    recompile every module at every start."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [python, "-m", "device", "process", str(record), "--jsonl", os.devnull]
    w0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - w0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024.0


def breakdown(rec: Any, cfg: Any) -> dict[str, float]:
    """CPU ms per second of signal spent in each estimator (``estimate`` and ``push``), the
    role trackers, the alarm engine and the rest (the pipeline's glue), over one run: each
    is wrapped in a timer on a fresh monitor (the timers add a little to every part)."""
    from device.monitor import Monitor

    spent: dict[str, float] = {}

    def timed(obj: Any, name: str, label: str) -> None:
        inner = getattr(obj, name)

        def wrapper(*args: Any, **kw: Any) -> Any:
            t = time.process_time()
            try:
                return inner(*args, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - t

        setattr(obj, name, wrapper)

    signals = rec.role_signals()
    monitor = Monitor.for_inputs(dict.fromkeys(signals, rec.fs_hz), cfg)
    for est in monitor.pipeline.estimators:
        label = f"{est.quantity}_{est.role} ({est.name})"
        timed(est, "estimate", f"{label} estimate")
        timed(est, "push", f"{label} push")
    for tracker in monitor.pipeline._trackers.values():
        timed(tracker, "update", "role trackers")
    timed(monitor.alarms, "update", "alarm engine")
    t0 = time.process_time()
    for a in range(0, rec.n_samples, 1000):
        for role, x in signals.items():
            monitor.feed(role, x[a : a + 1000])
        monitor.step()
    total = time.process_time() - t0
    spent["pipeline glue (the rest)"] = total - sum(spent.values())
    per_s = 1000.0 / rec.duration_s
    out = {k: round(v * per_s, 4) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    out["total"] = round(total * per_s, 4)
    return out


def compare(record: Path, ref: str, pythons: list[str], rounds: int) -> dict[str, Any]:
    """``ref`` (a git revision, extracted with ``git archive``) against this tree, with each
    interpreter, in interleaved rounds (so that a busier minute of a shared machine weighs on
    both alike): per round 3 in-process runs and 2 whole commands for every (tree, python)."""
    out: dict[str, Any] = {"ref": ref, "rounds": rounds, "load_average_1min": []}
    with tempfile.TemporaryDirectory(prefix="bedside-speed-") as tmp:
        base = Path(tmp) / "ref"
        base.mkdir()
        archive = subprocess.run(
            ["git", "archive", ref], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        trees = {f"{ref}": base, "this tree": ROOT}
        runs: dict[tuple[str, str], dict[str, list[float]]] = {
            (t, py): {"in": [], "cmd": []} for t in trees for py in pythons
        }
        for r in range(rounds):
            out["load_average_1min"].append(round(os.getloadavg()[0], 2))
            for (name, py), acc in runs.items():
                tree = trees[name]
                cache = str(Path(tmp) / f"pyc-{abs(hash((name, py)))}")
                env = dict(os.environ, PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=cache)
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                batch = subprocess.run(
                    [py, "-c", INNER, str(record), "3"],
                    cwd=tree,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                acc["in"] += json.loads(batch)
                if r == 0:
                    whole_command(record, cache, tree, py)  # compiles the bytecode
                acc["cmd"] += [whole_command(record, cache, tree, py)[0] for _ in range(2)]
    dur = read_recording(record).duration_s
    out["results"] = [
        {
            "tree": name,
            "python": py,
            "python_version": subprocess.run(
                [py, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "in_process_x_realtime_cpu": round(dur / statistics.median(acc["in"]), 1),
            "in_process_runs": len(acc["in"]),
            "whole_command_x_realtime_cpu": round(dur / statistics.median(acc["cmd"]), 1),
            "whole_command_runs": len(acc["cmd"]),
        }
        for (name, py), acc in runs.items()
    ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.json")
    ap.add_argument(
        "--compare",
        metavar="REV",
        help="also run git revision REV (e.g. main) and this tree in interleaved rounds",
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds of --compare")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time each estimator, the trackers and the alarm engine (ms per signal s)",
    )
    ap.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="EXE",
        help="interpreter(s) for --compare (default: this one); with all the project's "
        "runtime dependencies installed",
    )
    a = ap.parse_args()
    if not a.record.exists():
        print(f"{a.record}: no such recording (give --record)", file=sys.stderr)
        return 2
    if a.compare:
        comparison = compare(a.record, a.compare, a.python or [sys.executable], a.rounds)
        for row in comparison["results"]:
            print(
                f"{row['tree']:10s} python {row['python_version']}: in process "
                f"{row['in_process_x_realtime_cpu']:.0f}x, whole command "
                f"{row['whole_command_x_realtime_cpu']:.0f}x real time (CPU, medians of "
                f"{row['in_process_runs']} and {row['whole_command_runs']} runs)"
            )
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
    if a.compare:
        result["comparison"] = comparison
    if a.breakdown:
        result["in_process"]["cpu_ms_per_signal_s"] = breakdown(rec, cfg)
        for k, v in result["in_process"]["cpu_ms_per_signal_s"].items():
            print(f"  {v:7.3f} ms per second of signal  {k}")
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
