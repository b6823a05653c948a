"""A file the daemon may not read is refused with the real cause and its fix, not as a damaged
file (issue 20, item 5: a replay under /root, hidden by the unit's ProtectHome=, was reported
as "the file is truncated or not gzip/CSV").

The files here are real, mode 000, read by real ``python -m device`` processes. As root (CI),
the child runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``), so that file
permissions apply to it as they do to the service user. The ProtectHome= case itself runs
under the real systemd in the Pi box (bench/pibox.py, check ``protect_home_refusal``).
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device.access import device_hint, read_error, write_error

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "device" / "data"


def as_unprivileged(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions bind it (root: without the DAC capabilities)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *argv]


def device_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INVOCATION_ID"}
    return subprocess.run(
        as_unprivileged([sys.executable, "-m", "device", *args]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


@pytest.fixture
def recordings(tmp_path: Path) -> dict[str, Path]:
    csv_gz = tmp_path / "rec.csv.gz"
    shutil.copy(DATA / "bidmc_09_excerpt.csv.gz", csv_gz)
    csv = tmp_path / "rec.csv"
    csv.write_bytes(gzip.decompress(csv_gz.read_bytes()))
    wav = tmp_path / "rec.wav"
    shutil.copy(DATA / "rrujo_thinklabs_paced12.wav", wav)
    return {"csv.gz": csv_gz, "csv": csv, "wav": wav}


def _really_unreadable(path: Path) -> None:
    path.chmod(0o000)
    probe = subprocess.run(
        as_unprivileged([sys.executable, "-c", f"open({str(path)!r}, 'rb').close()"]),
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, (
        "the test's child can still read a mode-000 file; the checks below would mean nothing"
    )


@pytest.mark.parametrize("kind", ["csv.gz", "csv", "wav"])
def test_unreadable_recording_is_refused_as_permission_denied(
    recordings: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    rec = recordings[kind]
    _really_unreadable(rec)
    out = tmp_path / "out.jsonl"
    for argv, code in (
        (["process", str(rec), "--jsonl", str(out)], 2),
        (["run", "--replay", str(rec), "--bed", "b1", "--check-config"], 1),
    ):
        done = device_cmd(*argv)
        err = done.stderr
        assert done.returncode == code, (argv, done.returncode, err)
        assert "permission denied" in err and "cannot read it" in err, err
        assert "chmod g+r" in err, err  # the fix: let the user read it
        assert "truncated" not in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_unreadable_config_is_refused_as_permission_denied(tmp_path: Path) -> None:
    cfg = tmp_path / "bed.toml"
    cfg.write_text('[bed]\nid = "b1"\n')
    _really_unreadable(cfg)
    done = device_cmd("run", "--config", str(cfg), "--check-config")
    assert done.returncode == 1, done.stderr
    assert "permission denied" in done.stderr and str(cfg) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_path_protect_home_hides_names_the_setting_and_a_place_that_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")  # what systemd sets for a service
    for path in ("/root/recordings/bed.csv.gz", "/home/nurse/bed.csv.gz", "/run/user/1000/x.csv"):
        e = read_error(path, PermissionError(errno.EACCES, "Permission denied", path))
        assert "permission denied" in e.what and "this service runs with ProtectHome=yes" in e.what
        assert e.fix is not None and "/var/lib/bedside" in e.fix and "truncated" not in e.message
    monkeypatch.delenv("INVOCATION_ID")
    e = read_error("/root/x.csv", PermissionError(errno.EACCES, "Permission denied"))
    assert "the bedside service runs with ProtectHome=yes" in e.what
    # elsewhere: the permissions, not ProtectHome
    e = read_error("/srv/x.csv", PermissionError(errno.EACCES, "Permission denied"))
    assert "ProtectHome" not in e.message and "chmod g+r" in (e.fix or "")


def test_private_tmp_and_read_only_system_are_named_under_systemd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    e = read_error("/tmp/bed.csv", FileNotFoundError(errno.ENOENT, "No such file"))
    assert "PrivateTmp=yes" in e.what and "/var/lib/bedside" in (e.fix or "")
    w = write_error("/opt/out.jsonl", OSError(errno.EROFS, "Read-only file system"), "jsonl.path")
    assert "ProtectSystem=strict" in w.what and "/var/lib/bedside/out.jsonl" in (w.fix or "")
    monkeypatch.delenv("INVOCATION_ID")
    assert read_error("/tmp/bed.csv", FileNotFoundError()).message == (
        "/tmp/bed.csv: no such file; fix: check the path"
    )


def test_serial_open_errors_name_the_group_or_the_device_policy() -> None:
    import serial

    denied = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0")
    assert "dialout" in device_hint(denied)
    refused = serial.SerialException(errno.EPERM, "could not open port /dev/ttyUSB0")
    assert "DeviceAllow=" in device_hint(refused)
    assert device_hint(serial.SerialException(errno.ENOENT, "no such port")) == ""
