"""``bedside run --check-config`` approves only configs that start, and refuses, naming the key,
every config the daemon would refuse at start (``device/preflight.py`` runs for both)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"


def bedside(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bedside.toml"
    path.write_text(text)
    return path


#: name -> (config, text the error must contain: the key or the fix)
REFUSED = {
    "no source": ("[bed]\nid = 'b1'\n", "no source configured"),
    "replay file missing": ("[replay]\npath = '{tmp}/nothing.csv.gz'\n", "nothing.csv.gz"),
    "password file missing": (
        "[replay]\npath = '{excerpt}'\n[mqtt]\nusername = 'bed1'\n"
        "password_file = '{tmp}/no-such-secret'\n",
        "mqtt.password_file",
    ),
    "a role from two sources": (
        "[replay]\npath = '{excerpt}'\n[serial]\nurl = '{tmp}/ttyABSENT'\n",
        "role 'ecg' is delivered by both",
    ),
    "models folder missing": (
        "[replay]\npath = '{excerpt}'\n[models]\ndir = '{tmp}/models-gone'\n",
        "models.dir",
    ),
    "forced model absent": (
        "[replay]\npath = '{excerpt}'\n[models]\nforce = ['rr_resp_lstm_int8']\n",
        "[models] force",
    ),
    "bed id with a slash": ("[bed]\nid = 'ward/3'\n[replay]\npath = '{excerpt}'\n", "bed.id"),
    "prefix with a wildcard": (
        "[mqtt]\nprefix = 'bedside/#'\n[replay]\npath = '{excerpt}'\n",
        "mqtt.prefix",
    ),
    "no sink": ("[mqtt]\nenabled = false\n[replay]\npath = '{excerpt}'\n", "no output"),
    "TLS CA file missing": (
        "[replay]\npath = '{excerpt}'\n[mqtt]\nbroker = 'mqtts://127.0.0.1:8883'\n"
        "ca_file = '{tmp}/no-ca.pem'\n",
        "mqtt.ca_file",
    ),
    "TLS CA file not a certificate": (
        "[replay]\npath = '{excerpt}'\n[mqtt]\nbroker = 'mqtts://127.0.0.1:8883'\n"
        "ca_file = '{excerpt}'\n",
        "mqtt.ca_file",
    ),
    "client key missing": (
        "[replay]\npath = '{excerpt}'\n[mqtt]\nbroker = 'mqtts://127.0.0.1:8883'\n"
        "cert_file = '{excerpt}'\nkey_file = '{tmp}/no-key.pem'\n",
        "mqtt.key_file",
    ),
    "client key without certificate": (
        "[replay]\npath = '{excerpt}'\n[mqtt]\nbroker = 'mqtts://127.0.0.1:8883'\n"
        "key_file = '{excerpt}'\n",
        "mqtt.key_file",
    ),
    "TLS files with plain MQTT": (
        "[replay]\npath = '{excerpt}'\n[mqtt]\nbroker = 'mqtt://127.0.0.1:1883'\n"
        "ca_file = '{excerpt}'\n",
        "mqtts://",
    ),
    "vitals bound not positive": (
        "[replay]\npath = '{excerpt}'\n[state]\nvitals_keep_h = 0.0\n",
        "state.vitals_keep_h",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_by_check_config_and_by_the_daemon_alike(case: str, tmp_path: Path) -> None:
    text, expected = REFUSED[case]
    cfg = write(tmp_path, text.format(tmp=tmp_path, excerpt=EXCERPT))
    checked = bedside("run", "--config", str(cfg), "--check-config")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    (line,) = checked.stderr.strip().splitlines()[-1:]
    assert expected in line and "fix:" in line
    started = bedside("run", "--config", str(cfg))
    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    assert expected in started.stderr.strip().splitlines()[-1]


#: configs --check-config accepts; each must then start (and finish, or keep running)
ACCEPTED = {
    "replay": "[replay]\npath = '{excerpt}'\nspeed = 200.0\n[mqtt]\nbroker = '{broker}'\n",
    "replay into a JSON-lines record only": (
        "[replay]\npath = '{excerpt}'\nspeed = 200.0\nuse = ['ppg']\n[mqtt]\nenabled = false\n"
        "[jsonl]\npath = '{tmp}/record.jsonl'\n"
    ),
    "serial board not plugged in yet": (
        "[serial]\nurl = '{tmp}/ttyABSENT'\n[mqtt]\nbroker = '{broker}'\n"
    ),
    "a deployed config with the deprecated outbox_path": (
        "[replay]\npath = '{excerpt}'\nspeed = 200.0\n[mqtt]\nbroker = '{broker}'\n"
        "outbox_path = '{tmp}/outbox.jsonl'\n"
    ),
    "shipped models named explicitly": (
        "[replay]\npath = '{excerpt}'\nspeed = 200.0\nuse = ['resp']\n"
        "[models]\nforce = ['rr_resp_cnn_int8']\n[mqtt]\nbroker = '{broker}'\n"
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_every_accepted_config_starts(case: str, tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    text = ACCEPTED[case].format(tmp=tmp_path, excerpt=EXCERPT, broker=mosquitto.url)
    cfg = write(tmp_path, text)
    checked = bedside("run", "--config", str(cfg), "--check-config")
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            proc.wait(timeout=4)  # a replay at 200x may finish; a live source keeps running
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "error" not in err.lower().replace("inference_error", ""), err
    if "record" in case:
        assert (tmp_path / "record.jsonl").read_text().count('"type":"vitals"') > 100
