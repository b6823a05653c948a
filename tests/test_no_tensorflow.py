"""The device never imports TensorFlow (4 s and ~670 MB on import; the appliance runs LiteRT).

Checked in a fresh interpreter: the whole CLI parser (every device command module), a recording
processed by the core, and the daemon assembled as ``bedside run`` assembles it (sources,
publisher, monitor), then ``sys.modules`` must hold no TensorFlow or Keras.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, threading
from device.cli import build_parser
from device.config import load_config
from device.offline import process_recording
from device.recording import read_recording

build_parser()
cfg = load_config(None)
rec = read_recording("device/data/bidmc_09_excerpt.csv.gz").excerpt(0, 40)
records = [m.to_record() for m in process_recording(rec, cfg)]

from device.daemon import Daemon
from device.sinks import build_sinks
from device.sources import build_sources
import lab.broker, device.commands.run, lab.commands.demo

cfg.replay.path = "device/data/bidmc_09_excerpt.csv.gz"
cfg.mqtt.broker = "mqtt://127.0.0.1:9"
sources = build_sources(cfg)
daemon = Daemon(cfg, sources, build_sinks(cfg), stop=threading.Event())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps({"vitals": sum(r["type"] == "vitals" for r in records),
                  "roles": sorted(daemon.monitor.pipeline.fs_hz), "heavy": heavy}))
"""


def test_device_pipeline_and_daemon_import_no_tensorflow() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["vitals"] == 40  # the probe really ran the core
    assert out["roles"] == ["ecg", "ppg", "resp"]  # and really built the daemon's monitor
    assert out["heavy"] == [], f"device imported {out['heavy']}"


APPLIANCE = r"""
import json, sys
from device.cli import build_parser
build_parser("run").parse_args(["run", "--replay", "x"])
build_parser("process")
from device.config import load_config
from device.preflight import preflight
from device.daemon import Daemon
import device.commands.run, device.commands.process, device.offline, device.sinks.jsonl

cfg = load_config(None)
cfg.replay.path = "device/data/bidmc_09_excerpt.csv.gz"
cfg.mqtt.broker = "mqtt://127.0.0.1:9"
plan = preflight(cfg)
others = sorted(m for m in sys.modules if m.split(".")[0] in ("lab", "convert", "station"))
print(json.dumps({"others": others, "sources": [s.name for s in plan.sources]}))
"""


def test_the_appliance_imports_no_lab_workshop_or_station_code() -> None:
    """What `bedside run` and `bedside process` load holds nothing of lab/, convert/ or
    station/: those packages may be left off an appliance."""
    r = subprocess.run(
        [sys.executable, "-c", APPLIANCE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["sources"] and out["others"] == [], out["others"]


WITHOUT_EXTRAS = r"""
import contextlib, io, json, sys
for pkg in ("lab", "convert", "station"):
    sys.modules[pkg] = None  # as on an appliance that was given only device/
from device.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main(["--help"])
err = io.StringIO()
with contextlib.redirect_stderr(err):
    rc = main(["demo"])
print(json.dumps({"help": out.getvalue(), "demo_rc": rc, "demo_err": err.getvalue()}))
"""


def test_help_lists_every_command_when_lab_workshop_and_station_are_absent() -> None:
    r = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for command in ("run", "process", "demo", "station", "train", "install"):
        assert f"    {command} " in out["help"], out["help"]
    assert out["demo_rc"] == 2
    assert "'bedside demo' is not installed here" in out["demo_err"]
    assert "fix: install bedside-edge from its source tree" in out["demo_err"]
