"""Delegates as plug-ins with an explicit fallback, through the real CLI and real LiteRT.

The Edge TPU runtime (libedgetpu.so.1) and a GPU delegate library are genuinely absent on
this machine (and in CI): the tests check that, then check what a ward sees. With
``--fallback fail`` (the default) the start is refused with one line naming the library and
the fix (exit 2; ``--check-config`` exit 1); with ``--fallback cpu`` the daemon warns, runs the
models on the CPU, and its retained status on a real Mosquitto says ``degraded``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from device.config import ConfigError, parse_config
from device.delegates import DELEGATES, Degraded
from device.inference import shipped_models_dir
from device.sinks.base import Status

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
EDGETPU = "libedgetpu.so.1"
RR_PPG_INT8 = shipped_models_dir() / "rr_ppg_cnn_int8.tflite"


def _absent(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return True
    return False


needs_no_edgetpu = pytest.mark.skipif(
    not _absent(EDGETPU), reason=f"{EDGETPU} is installed here: the missing-library path can't run"
)


def bedside(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# -- config ----------------------------------------------------------------------------------
def test_fallback_key_and_the_old_fallback_to_cpu_still_loads() -> None:
    assert parse_config({}).models.fallback == "fail"
    assert parse_config({"models": {"fallback": "cpu"}}).models.fallback == "cpu"
    # deployed configs (docs/deploy.md told Jetson users to write fallback_to_cpu = true)
    assert parse_config({"models": {"fallback_to_cpu": True}}).models.fallback == "cpu"
    assert parse_config({"models": {"fallback_to_cpu": False}}).models.fallback == "fail"
    with pytest.raises(ConfigError, match="models.fallback_to_cpu.*contradicts"):
        parse_config({"models": {"fallback_to_cpu": True, "fallback": "fail"}})
    with pytest.raises(ConfigError, match="models.fallback_to_cpu"):
        parse_config({"models": {"fallback_to_cpu": "yes"}})
    with pytest.raises(ConfigError, match="models.fallback.*'gpu' is not one of fail, cpu"):
        parse_config({"models": {"fallback": "gpu"}})
    assert set(DELEGATES) >= {"cpu", "gpu", "edgetpu"}


def test_status_payload_names_what_the_bed_runs_without() -> None:
    plain = Status(bed="b", started="", mode="live", t_s=0.0).to_payload()
    assert plain["degraded"] is None
    d = Degraded("edgetpu", EDGETPU, "Edge TPU delegate failed to load (x)", "install it")
    body = Status(bed="b", started="", mode="live", t_s=0.0, degraded=d).to_payload()
    assert body["degraded"] == {
        "delegate": "edgetpu",
        "library": EDGETPU,
        "running_on": "cpu",
        "reason": "Edge TPU delegate failed to load (x)",
        "fix": "install it",
    }


# -- fail: one line, exit 2; --check-config exit 1 ------------------------------------------
@needs_no_edgetpu
@pytest.mark.e2e
def test_missing_delegate_with_fail_refuses_to_start(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = ("run", "--replay", str(EXCERPT), "--broker", mosquitto.url, "--bed", "dlg-fail")
    done = bedside(*run, "--delegate", "edgetpu", "--fallback", "fail")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bedside run: error: Edge TPU delegate libedgetpu.so.1")
    assert "fix: install the Edge TPU runtime" in lines[0]
    assert "Traceback" not in done.stderr

    # the default is fail too; a GPU without a library path is LiteRT's own accelerator,
    # which names why it did not start (here: no Vulkan driver at all) and the fix
    done = bedside(*run, "--delegate", "gpu", env={"VK_ICD_FILENAMES": "/nonexistent.json"})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "LiteRT GPU accelerator" in line and "No adapters found" in line and "fix:" in line
    # a library path that does not open names the library
    done = bedside(*run, "--delegate", "gpu", "--delegate-path", "/nonexistent/libgpu.so")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "GPU delegate /nonexistent/libgpu.so failed to load" in line and "fix:" in line

    # --check-config performs the same check: refused, exit 1, the same reason
    chk = bedside(*run, "--delegate", "edgetpu", "--check-config")
    assert chk.returncode == 1, chk.stdout + chk.stderr
    assert "config error: Edge TPU delegate libedgetpu.so.1" in chk.stderr
    ok = bedside(*run, "--delegate", "edgetpu", "--fallback", "cpu", "--check-config")
    assert ok.returncode == 0, ok.stderr
    assert "configuration is valid" in ok.stdout

    # bedside process obeys the same flags
    out = tmp_path / "v.jsonl"
    done = bedside("process", str(EXCERPT), "--jsonl", str(out), "--delegate", "edgetpu")
    assert done.returncode == 2 and EDGETPU in done.stderr


# -- cpu: a warning, "degraded" in the retained status, CPU inference ----------------------
@needs_no_edgetpu
@pytest.mark.e2e
def test_missing_delegate_with_cpu_fallback_runs_degraded(  # type: ignore[no-untyped-def]
    mosquitto, mqtt_listener, tmp_path: Path
) -> None:
    bed = "dlg-cpu"
    # an old-style config, as deployed: fallback_to_cpu = true
    cfg = tmp_path / "bed.toml"
    cfg.write_text('[models]\ndelegate = "edgetpu"\nfallback_to_cpu = true\n')
    station = mqtt_listener(mosquitto, f"bedside/{bed}/#")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device",
                "run",
                "--config",
                str(cfg),
                "--replay",
                str(EXCERPT),
                "--use",
                "ppg",  # RR from the PPG alone: the shipped rr_ppg model serves it
                "--speed",
                "20",
                "--broker",
                mosquitto.url,
                "--bed",
                bed,
                "--state-dir",
                str(tmp_path / "state"),
            ],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        )
    try:
        got_model = station.wait_for(
            lambda ms: any(
                m.topic.endswith("/vitals") and m.json()["rr_model"] == "rr_ppg_cnn_int8"
                for m in ms
            ),
            60,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    text = log.read_text()
    assert rc == 0, text
    assert got_model, f"no vitals from the model on the CPU:\n{text}"
    warnings = [ln for ln in text.splitlines() if "WARNING" in ln and "delegate edgetpu" in ln]
    assert len(warnings) == 1, text  # once, however many models and cores are built
    assert "fallback_to_cpu' is deprecated" in text

    statuses = [m.json() for m in station.on("/status")]
    online = [s for s in statuses if s["state"] == "online"]
    assert online, statuses
    for s in online + [statuses[-1]]:  # every status while running, and the last (offline)
        deg = s["degraded"]
        assert deg["delegate"] == "edgetpu" and deg["library"] == EDGETPU
        assert deg["running_on"] == "cpu"
        assert "libedgetpu.so.1" in deg["reason"] and deg["fix"]
    # the estimator the status reports is the CPU (int8) variant of the model
    assert online[-1]["estimators"]["rr_ppg"] == "rr_ppg_cnn_int8"


# -- bedside bench-model ---------------------------------------------------------------------
def test_bench_model_on_a_shipped_model(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = bedside("bench-model", str(RR_PPG_INT8), "--runs", "200", "--json", str(out))
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    assert r["delegate"] == "cpu" and r["degraded"] is None and r["runs"] == 200
    assert r["input"] == {"shape": [1, 160, 2], "dtype": "int8"}
    inv, mem = r["invoke_us"], r["memory_mb"]
    assert 0 < inv["min"] <= inv["median"] <= inv["p99"] <= inv["max"]
    assert mem["peak_rss"] >= mem["rss_before_init"] > 0
    assert "median" in done.stdout and "p99" in done.stdout and "peak RSS" in done.stdout


@needs_no_edgetpu
def test_bench_model_delegate_missing_fails_or_falls_back(tmp_path: Path) -> None:
    done = bedside("bench-model", str(RR_PPG_INT8), "--delegate", "edgetpu", "--runs", "5")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert EDGETPU in line and "fix:" in line
    out = tmp_path / "b.json"
    done = bedside(
        "bench-model",
        str(RR_PPG_INT8),
        *("--delegate", "edgetpu", "--fallback", "cpu", "--runs", "5", "--json", str(out)),
    )
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    assert r["delegate"] == "cpu" and r["delegate_requested"] == "edgetpu"
    assert r["degraded"]["library"] == EDGETPU


# -- what a station shows of it --------------------------------------------------------------
def test_station_shows_a_degraded_bed() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    from station.commands.watch import render
    from station.ward import Ward

    ward = Ward()
    deg = Degraded("edgetpu", EDGETPU, "failed to load", "install it").to_payload()

    def status(body: dict) -> None:  # type: ignore[type-arg]
        ward.apply("bedside/b1/status", json.dumps(body).encode(), 0.0)

    def shown() -> str:
        console = Console(width=160, record=True)
        console.print(render(ward, "mqtt://broker", 0.0))
        return console.export_text()

    status({"state": "online", "alarms": [], "degraded": deg})
    assert ward.beds["b1"].degraded == deg
    assert "degraded: edgetpu unavailable, models on the cpu" in shown()
    # the broker's last will says nothing about it; a later status as configured clears it
    status({"state": "offline", "reason": "connection lost (last will)"})
    assert ward.beds["b1"].degraded == deg
    status({"state": "online", "alarms": [], "degraded": None})
    assert ward.beds["b1"].degraded is None and "degraded" not in shown()
