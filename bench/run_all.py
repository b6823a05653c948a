"""One command that measures everything, side by side, on this machine.

    python bench/run_all.py [--quick] [--parts accuracy,cost,alarms,fleet] [--budget-s 900]

Writes ``bench/results/<date>-<host>.json`` and ``.md``: a description of the machine (CPU
model, cores, RAM, Python, load average at the start and the end: the figures of a shared
machine depend on it), then each part, run as a subprocess with its own time budget. A part
that fails or runs out of time is reported as such, with the end of its output, never left
out; a part skipped because the whole run's budget is spent says so.

Parts (every script can be run alone; the commands are in the results):

- accuracy: ``bench/peers.py``: HR from PPG, HR from ECG, RR from impedance, RR from PPG on
  the shared BIDMC records, per subject and mean, the core beside NeuroKit2 and HeartPy on the
  same references, with each one's speed;
- cost: ``bench/speed.py`` (``bedside process`` x real time, peak RSS),
  ``bench/serial_daemon.py`` (the daemon's CPU and RSS on a live 125 Hz serial stream), and
  ``bench/daemon_replay.py`` (the daemon per bed in real-time replay: CPU, RSS, and latency
  from the end of a signal second to its vitals at a subscriber, on replay and on serial);
- alarms: ``bench/alarms.py``: false alarms per hour, times to alarm;
- fleet: ``bench/fleet.py`` at N = 1, 50 and 200 beds in one process per 50 beds, and N = 50
  as daemon processes.

``--quick`` runs each part small (2 records, short windows, N = 1 and 5): a check that the
harness works, not figures to quote.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PY = sys.executable


def shared_data() -> Path | None:
    env = os.environ.get("BEDSIDE_SHARED_DATA")
    for cand in (
        Path(env) if env else None,
        ROOT.parent / "shared" / "data",
        ROOT.parents[1] / "shared" / "data",
    ):
        if cand is not None and cand.is_dir():
            return cand
    return None


@dataclass
class Part:
    """One benchmark run as a subprocess: ``{out}`` in ``args`` is its JSON output file."""

    name: str
    group: str
    script: str
    args: list[str]
    budget_s: float
    result: dict[str, Any] = field(default_factory=dict)


#: The cost parts of the report, in order.
COST_PARTS = ("speed", "serial_daemon", "daemon_replay")


def plan(quick: bool, data: Path | None) -> list[Part]:
    bidmc = data / "bidmc" / "bidmc_csv" if data is not None else None
    rec01 = bidmc / "bidmc_01_Signals.csv.gz" if bidmc is not None else None
    few = ["--records", "1,5"] if quick else []
    parts = [
        Part(
            "peers",
            "accuracy",
            "bench/peers.py",
            [*(["--data", str(bidmc)] if bidmc else []), *few, "--jobs", "2", "--out", "{out}"],
            480.0,
        ),
        Part(
            "speed",
            "cost",
            "bench/speed.py",
            [*(["--record", str(rec01)] if rec01 else []), "--repeat", "1" if quick else "3"]
            + ["--out", "{out}"],
            150.0,
        ),
        Part(
            "serial_daemon",
            "cost",
            "bench/serial_daemon.py",
            ["--seconds", "10" if quick else "30", "--warmup", "5" if quick else "10"]
            + ["--out", "{out}"],
            90.0,
        ),
    ]
    # the daemon per bed in real-time replay (CPU, RSS) and latency from the end of a signal
    # second to its vitals at a subscriber, on replay and on serial; shortened from its
    # defaults to fit the whole run's budget
    windows = ("10", "5", "15", "10") if quick else ("60", "15", "60", "45")
    parts.append(
        Part(
            "daemon_replay",
            "cost",
            "bench/daemon_replay.py",
            ["--seconds", windows[0], "--warmup", windows[1], "--latency-seconds", windows[2]]
            + ["--serial-seconds", windows[3], "--out", "{out}"],
            120.0 if quick else 300.0,
        )
    )
    alarms_args = [*(["--data", str(bidmc)] if bidmc else []), "--out", "{out}"]
    if quick:
        alarms_args.append("--skip-false")
    parts.append(Part("alarms", "alarms", "bench/alarms.py", alarms_args, 300.0))
    fleet = [(1, "inproc"), (5, "inproc")] if quick else [(1, "inproc"), (50, "inproc")]
    if not quick:
        fleet += [(200, "inproc"), (50, "daemon")]
    for beds, mode in fleet:
        seconds = 5 if quick else (20 if beds == 1 else 30)
        budget = 60.0 + seconds + (2.5 * beds if mode == "daemon" else 0.15 * beds)
        parts.append(
            Part(
                f"fleet_{mode}_{beds}",
                "fleet",
                "bench/fleet.py",
                ["--beds", str(beds), "--seconds", str(seconds), "--mode", mode]
                + ["--json", "{out}"],
                budget,
            )
        )
    return parts


# -- the machine -----------------------------------------------------------------------------
def describe_machine() -> dict[str, Any]:
    from lab.machine import cpu_model

    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
    }


# -- running a part --------------------------------------------------------------------------
def run_part(part: Part, workdir: Path, budget_s: float) -> dict[str, Any]:
    """Run ``part`` within ``budget_s``; what happened, with its JSON output when it wrote one."""
    script = ROOT / part.script
    if not script.exists():
        return {"status": "failed", "note": f"{part.script} does not exist", "seconds": 0.0}
    out = workdir / f"{part.name}.json"
    args = [a.replace("{out}", str(out)) for a in part.args]
    cmd = [PY, str(script), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    log = workdir / f"{part.name}.log"
    with open(log, "wb") as f:
        # its own session, so that a part over budget is stopped with all it started
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        status = "ok"
        try:
            rc = proc.wait(budget_s)
        except subprocess.TimeoutExpired:
            status = "timeout"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    took = time.monotonic() - t0
    if status == "ok" and rc != 0:
        status = "failed"
    text = log.read_text(errors="replace")
    res: dict[str, Any] = {
        "status": status,
        "returncode": rc,
        "seconds": round(took, 1),
        "budget_s": round(budget_s, 1),
        "command": "python " + " ".join([part.script, *args]).replace(str(workdir) + "/", ""),
        "output_tail": text[-1500:],
    }
    if out.exists():
        try:
            res["result"] = json.loads(out.read_text())
        except ValueError as e:
            res["status"] = "failed"
            res["note"] = f"its JSON output is unreadable: {e}"
    elif status == "ok":
        res["status"] = "failed"
        res["note"] = "it exited 0 but wrote no JSON output"
    if status == "timeout":
        res["note"] = f"stopped after its budget of {budget_s:.0f} s"
    return res


# -- the report ------------------------------------------------------------------------------
def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and math.isnan(x):
            return "-"
        return f"{x:.{nd}f}" if isinstance(x, float) else str(x)
    return str(x)


def _counts(d: Any) -> str:
    if isinstance(d, dict):
        return ", ".join(f"{k} {_f(v)}" for k, v in d.items()) or "none"
    return _f(d)


def flat(d: Any, prefix: str = "", depth: int = 3) -> list[tuple[str, Any]]:
    """Scalar leaves of a JSON object, as (dotted key, value)."""
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict) and depth > 0:
        for k, v in d.items():
            out += flat(v, f"{prefix}{k}.", depth - 1)
    elif isinstance(d, (int, float, str, bool)) or d is None:
        out.append((prefix.rstrip("."), d))
    return out


def md_accuracy(r: dict[str, Any]) -> list[str]:
    methods = r["methods"]
    names = {"bedside": "bedside (core)", "neurokit2": "NeuroKit2", "heartpy": "HeartPy"}
    ver = r.get("versions", {})
    lines = [
        f"{r['records']} records; versions: "
        + ", ".join(f"{k} {v}" for k, v in ver.items())
        + ". Mean of subjects' MAE (median; mean coverage), speed in x real time (CPU).",
        "",
        "| task | " + " | ".join(names.get(m, m) for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for t in r["tasks"]:
        cells = []
        for m in methods:
            s = r["summary"][t].get(m, {})
            if "mean_mae" not in s:
                cells.append(f"- ({s.get('not_offered', 'n/a')})")
                continue
            sp = r["speed_x_realtime"].get(m, {}).get(t)
            cells.append(
                f"{s['mean_mae']:.2f} ({s['median_mae']:.2f}; {s['mean_coverage']:.0%}), "
                f"{_f(sp, 0)}x"
            )
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += ["", "Per subject (MAE; `-` = not offered or no estimate):", ""]
    cols = [(t, m) for t in r["tasks"] for m in methods if m in r["summary"][t]]
    cols = [(t, m) for t, m in cols if "mean_mae" in r["summary"][t][m]]
    lines.append("| record | " + " | ".join(f"{t} {m}" for t, m in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for name, s in r["per_subject"].items():
        row = [_f(s["scores"].get(t, {}).get(m, {}).get("mae")) for t, m in cols]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    notes = [f"{n}: {x}" for n, s in r["per_subject"].items() for x in s.get("notes", [])]
    if notes:
        lines += ["", "Peer failures: " + "; ".join(notes[:20])]
    return lines


FLEET_COLS = (
    ("beds", "beds", 0),
    ("mode", "mode", 0),
    ("delivered_ratio", "delivered", 4),
    ("latency_p50_ms", "latency p50 ms", 1),
    ("latency_p99_ms", "latency p99 ms", 1),
    ("lag_p99_ms", "lag p99 ms", 1),
    ("realtime_ratio_min_bed", "real time (slowest bed)", 3),
    ("cpu_percent", "beds' CPU % of a core", 1),
    ("cpu_percent_per_bed", "CPU %/bed", 3),
    ("rss_mb", "RSS MB", 0),
    ("pss_mb_per_bed", "PSS MB/bed", 1),
    ("broker_cpu_percent", "broker CPU %", 1),
    ("machine_busy_percent", "machine busy %", 0),
    ("schema_errors", "schema errors", 0),
    ("seq_gaps", "gaps", 0),
)


def render_md(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Benchmarks, {report['date']}, {m['host']}",
        "",
        f"`python bench/run_all.py{' ' + report['args'] if report['args'] else ''}` "
        f"took {report['total_s'] / 60:.1f} min (budget {report['budget_s'] / 60:.0f} min), "
        f"commit {m.get('commit') or '?'}.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} ({m['arch']}), {m['cores']} cores |",
        f"| RAM | {m['ram_gb']} GB |",
        f"| OS, Python | {m['os']}, Python {m['python']} |",
        f"| load average (1, 5, 15 min) at start | {', '.join(map(str, m['loadavg_at_start']))} |",
        f"| load average at end | {', '.join(map(str, m.get('loadavg_at_end', [])))} |",
        "",
        "The machine is shared: a load average above its core count means other jobs ran "
        "meanwhile, and CPU shares and latencies measured then are worse than on a quiet "
        "machine.",
        "",
        "## Parts",
        "",
        "| part | status | time s | command |",
        "|---|---|---|---|",
    ]
    for name, p in report["parts"].items():
        status = p["status"] + (f" ({p['note']})" if p.get("note") else "")
        lines.append(
            f"| {name} | {status} | {_f(p.get('seconds'), 0)} | `{p.get('command', '')}` |"
        )
    parts = report["parts"]

    def ok(name: str) -> dict[str, Any] | None:
        p = parts.get(name)
        return p.get("result") if p and p["status"] == "ok" else None

    lines += ["", "## Accuracy beside NeuroKit2 and HeartPy", ""]
    acc = ok("peers")
    lines += md_accuracy(acc) if acc else ["Not available: see the parts table."]
    lines += ["", "## Cost", ""]
    for name in COST_PARTS:
        r = ok(name)
        if r is None:
            continue
        lines += [f"### {name}", "", "| figure | value |", "|---|---|"]
        for k, v in flat(r):
            if k in ("command", "what") or isinstance(v, str) and len(v) > 80:
                continue
            lines.append(f"| {k} | {_f(v)} |")
        lines.append("")
    lines += ["## Alarms", ""]
    al = ok("alarms")
    if al:
        fa = al.get("false_alarms", {})
        if fa:
            lines.append(
                f"False physiological alarms: {fa.get('physiological_false')} in "
                f"{_f(fa.get('hours'), 1)} h ({_f(fa.get('physiological_false_per_hour'))} per "
                f"hour) on {fa.get('records')} records; technical alarms per hour: "
                f"{_counts(fa.get('technical_per_hour', fa.get('technical')))}."
            )
            lines.append("")
        summ = al.get("scenarios", {}).get("summary", {})
        lines += ["| scenario | n | missed | mean s | max s |", "|---|---|---|---|---|"]
        for k, s in summ.items():
            lines.append(
                f"| {k} | {_f(s.get('n'))} | {_f(s.get('missed'))} | "
                f"{_f(s.get('mean_time_to_alarm_s', s.get('mean_s')))} | "
                f"{_f(s.get('max_time_to_alarm_s', s.get('max_s')))} |"
            )
    else:
        lines.append("Not available: see the parts table.")
    lines += ["", "## Fleet on one broker", ""]
    rows = [r for n in parts if n.startswith("fleet_") and (r := ok(n)) is not None]
    if rows:
        lines.append("| " + " | ".join(c[1] for c in FLEET_COLS) + " |")
        lines.append("|" + "---|" * len(FLEET_COLS))
        for r in rows:
            lines.append("| " + " | ".join(_f(r.get(k), nd) for k, _, nd in FLEET_COLS) + " |")
        d = rows[0].get("definitions", {})
        lines += [""] + [f"- `{k}`: {v}" for k, v in d.items()]
    else:
        lines.append("Not available: see the parts table.")
    failed = [n for n, p in parts.items() if p["status"] in ("failed", "timeout")]
    if failed:
        lines += ["", "## Parts that did not finish", ""]
        for n in failed:
            tail = parts[n].get("output_tail") or parts[n].get("note", "")
            lines += [f"### {n}: {parts[n]['status']}", "", "```", tail, "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small runs: checks the harness")
    ap.add_argument("--parts", default="", help="groups to run: accuracy,cost,alarms,fleet")
    ap.add_argument("--budget-s", type=float, default=900.0, help="the whole run (15 min)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--name", default="", help="file stem (default <date>-<host>)")
    ap.add_argument(
        "--render", type=Path, metavar="JSON", help="only write the .md of an earlier run's .json"
    )
    a = ap.parse_args()
    if a.render:
        a.render.with_suffix(".md").write_text(render_md(json.loads(a.render.read_text())))
        return 0
    t_start = time.monotonic()
    machine = describe_machine()
    data = shared_data()
    parts = plan(a.quick, data)
    if a.parts:
        groups = set(a.parts.split(","))
        parts = [p for p in parts if p.group in groups or p.name in groups]
    date = dt.datetime.now().strftime("%Y-%m-%d")
    stem = a.name or f"{date}-{machine['host']}"
    report: dict[str, Any] = {
        "date": date,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "args": " ".join(sys.argv[1:]),
        "budget_s": a.budget_s,
        "machine": machine,
        "shared_data": str(data) if data else None,
        "parts": {},
    }
    with tempfile.TemporaryDirectory(prefix="bedside-runall-") as tmp:
        for i, part in enumerate(parts):
            left = a.budget_s - (time.monotonic() - t_start)
            # what the parts after this one need at the least (half a minute each)
            reserve = 30.0 * (len(parts) - i - 1)
            budget = min(part.budget_s, left - reserve)
            if budget < 20.0:
                res = {"status": "skipped", "note": "the run's time budget was spent", "seconds": 0}
            else:
                print(f"run_all: {part.name} (budget {budget:.0f} s) ...", flush=True)
                res = run_part(part, Path(tmp), budget)
            report["parts"][part.name] = res
            print(f"run_all: {part.name}: {res['status']} in {res['seconds']} s", flush=True)
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["total_s"] = round(time.monotonic() - t_start, 1)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (a.out_dir / f"{stem}.md").write_text(render_md(report))
    print(f"run_all: wrote {a.out_dir / stem}.md and .json in {report['total_s'] / 60:.1f} min")
    bad = [n for n, p in report["parts"].items() if p["status"] in ("failed", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
