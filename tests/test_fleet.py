"""bench/fleet.py and bench/run_all.py: a small fleet on a real Mosquitto (started by the
script itself), the station's checks, and run_all's reporting of parts that fail."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from device.config import load_config
from device.offline import process_recording
from device.recording import read_csv

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not os.access("/usr/sbin/mosquitto", os.X_OK),
    reason="mosquitto is not installed (apt-get install mosquitto); CI installs it",
)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


fleet = load("fleet")
run_all = load("run_all")


def run_fleet(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "fleet.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet.py"), *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


# -- the station's checks ---------------------------------------------------------------------
def test_station_accepts_the_device_payloads_and_rejects_broken_ones() -> None:
    msgs = list(process_recording(read_csv(EXCERPT).excerpt(0, 40), load_config(None)))
    vitals = [m.to_payload("b1", 1_700_000_000.0) for m in msgs if m.kind == "vitals"]
    assert len(vitals) >= 30
    for body in vitals:
        assert fleet.check_payload("vitals", "b1", json.loads(json.dumps(body))) is None
    good = vitals[-1]
    assert fleet.check_payload("vitals", "b2", good) == "bed 'b1' on the topic of 'b2'"
    assert fleet.check_payload("vitals", "b1", {**good, "hr_bpm": None}) is None  # no estimate
    broken = dict(good)
    del broken["t_s"]
    assert fleet.check_payload("vitals", "b1", broken) == "no t_s"
    assert "wrong type" in fleet.check_payload("vitals", "b1", {**good, "t_s": "5"})
    assert "ISO 8601" in fleet.check_payload("vitals", "b1", {**good, "ts": "yesterday"})
    status = {"schema_version": 1, "bed": "b1", "ts": good["ts"], "state": "online"}
    assert fleet.check_payload("status", "b1", status) is None
    assert "status state" in fleet.check_payload("status", "b1", {**status, "state": "up"})


def test_station_counts_gaps_duplicates_and_restarts() -> None:
    seen = fleet.BedSeen()
    for t in (1, 2, 3, 5, 5, 6, 1, 2):  # 4 missing, 5 twice, then a looping replay restarts
        fleet.Station._sequence(seen, {"t_s": float(t)})
    assert (seen.gaps, seen.dups, seen.restarts) == (1, 1, 1)
    seen = fleet.BedSeen()
    for s in (7, 8, 10, 10):  # a payload's own seq wins over t_s
        fleet.Station._sequence(seen, {"t_s": 1.0, "seq": s})
    assert (seen.gaps, seen.dups) == (1, 1)


# -- a small fleet, both ways -----------------------------------------------------------------
@needs_mosquitto
@pytest.mark.e2e
@pytest.mark.parametrize("publisher", ["sink", "direct"])
def test_inproc_fleet_delivers_every_message(tmp_path: Path, publisher: str) -> None:
    r = run_fleet(tmp_path, "--beds", "3", "--seconds", "4", "--publisher", publisher)
    assert r["beds"] == 3 and r["beds_connected"] == 3 and r["beds_heard"] == 3
    assert r["sent_detail"]["vitals_sent"] == 3 * 4  # every bed, every second
    assert r["messages_received"] == r["messages_sent"] >= 12
    assert r["delivered_ratio"] == 1.0
    assert r["schema_errors"] == 0 and r["seq_gaps"] == 0 and r["seq_dups"] == 0
    assert r["latency_p50_ms"] is not None and r["latency_p99_ms"] >= r["latency_p50_ms"]
    assert r["lag_p99_ms"] is not None and r["cpu_percent"] > 0 and r["rss_mb"] > 0
    for key in ("beds", "seconds", "messages_sent", "messages_received", "delivered_ratio"):
        assert key in r


@needs_mosquitto
@pytest.mark.e2e
def test_daemon_fleet_counts_from_the_daemons_final_status(tmp_path: Path) -> None:
    r = run_fleet(tmp_path, "--beds", "2", "--seconds", "3", "--mode", "daemon", "--warmup", "1")
    assert r["all_online"] and r["beds_connected"] == 2 and r["daemons_exited_early"] == []
    assert r["beds_without_final_status"] == 0
    # sent is what each daemon's final (offline) status says its sink sent
    assert r["messages_sent"] >= 2 * 3 and r["messages_received"] == r["messages_sent"]
    assert r["schema_errors"] == 0 and r["seq_gaps"] == 0
    assert r["pss_mb_per_bed"] > 0


# -- run_all: a part that fails or overruns is reported, not hidden ----------------------------
def test_run_all_reports_failures_timeouts_and_missing_parts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('something broke')\nsys.exit(3)\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    good = tmp_path / "good.py"
    good.write_text("import json, sys\nopen(sys.argv[1], 'w').write(json.dumps({'x': 1.5}))\n")
    silent = tmp_path / "silent.py"
    silent.write_text("pass\n")
    work = tmp_path / "work"
    work.mkdir()
    res = {
        "bad": run_all.run_part(run_all.Part("bad", "cost", str(bad), [], 30), work, 30),
        "slow": run_all.run_part(run_all.Part("slow", "cost", str(slow), [], 30), work, 2),
        "good": run_all.run_part(run_all.Part("good", "cost", str(good), ["{out}"], 30), work, 30),
        "silent": run_all.run_part(run_all.Part("silent", "cost", str(silent), [], 30), work, 30),
        "missing": run_all.run_part(
            run_all.Part("missing", "cost", "bench/nope.py", [], 30),
            work,
            30,
        ),
    }
    assert res["bad"]["status"] == "failed" and res["bad"]["returncode"] == 3
    assert "something broke" in res["bad"]["output_tail"]
    assert res["slow"]["status"] == "timeout" and res["slow"]["seconds"] < 30
    assert res["good"]["status"] == "ok" and res["good"]["result"] == {"x": 1.5}
    assert res["silent"]["status"] == "failed" and "no JSON" in res["silent"]["note"]
    assert res["missing"] == {
        "status": "failed",
        "note": "bench/nope.py does not exist",
        "seconds": 0.0,
    }
    machine = run_all.describe_machine()
    assert machine["cores"] and machine["cpu"] and machine["python"]
    machine["loadavg_at_end"] = machine["loadavg_at_start"]
    report = {
        "date": "2026-01-01",
        "args": "",
        "budget_s": 900,
        "total_s": 10.0,
        "machine": machine,
        "parts": res,
    }
    md = run_all.render_md(report)
    assert "| bad | failed |" in md and "| slow | timeout (stopped after" in md
    assert "## Parts that did not finish" in md and "something broke" in md
