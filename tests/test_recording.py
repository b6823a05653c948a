"""Recordings: BIDMC CSV and WAV reading, role mapping, and bad input as one-line errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.errors import UserError
from device.recording import (
    Recording,
    nan_runs,
    read_csv,
    read_recording,
    read_wav,
)
from lab.writers import write_csv, write_wav_int16

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted((ROOT / "device" / "data").glob("bidmc_*_Signals.csv.gz")) + sorted(
    (ROOT / "device" / "data").glob("bidmc_*_excerpt.csv.gz")
)

HEADER = "Time [s], RESP, PLETH, V, AVR, II\n"


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def rows(n: int, fs: float = 125.0, time_col: bool = True) -> str:
    t = np.arange(n) / fs
    lines = []
    for i in range(n):
        vals = [
            f"{np.sin(2 * np.pi * 0.25 * t[i]):.5f}",
            f"{np.sin(2 * np.pi * 1.2 * t[i]):.5f}",
            "0.1",
            "0.2",
            f"{np.sin(2 * np.pi * 1.2 * t[i]) ** 9:.5f}",
        ]
        lines.append(",".join(([f"{t[i]:.3f}"] if time_col else []) + vals))
    return "\n".join(lines) + "\n"


def test_bidmc_csv_columns_by_name_with_spaces_and_gzip(tmp_path: Path) -> None:
    # columns reordered as in some BIDMC records; names carry leading spaces
    text = "Time [s], II, PLETH, RESP\n" + "".join(
        f"{i / 125:.3f},{i},{2 * i},{3 * i}\n" for i in range(250)
    )
    rec = read_csv(write(tmp_path / "r_Signals.csv.gz", text))
    assert rec.fs_hz == 125.0 and rec.n_samples == 250
    assert rec.roles == {"ecg": "II", "ppg": "PLETH", "resp": "RESP"}
    assert rec.role("resp")[10] == 30.0 and rec.role("ppg")[10] == 20.0


def test_time_column_with_rounded_times_still_gives_the_rate(tmp_path: Path) -> None:
    # PhysioNet prints 100.008 as 100.01: repeated times must not break the rate
    t = np.round(np.arange(20000) / 125.0, 2)
    text = "Time [s], PLETH\n" + "".join(f"{x:g},{i % 7}\n" for i, x in enumerate(t))
    assert read_csv(write(tmp_path / "a.csv", text)).fs_hz == pytest.approx(125.0, rel=1e-4)


def test_rate_from_config_when_no_time_column_and_custom_role_map(tmp_path: Path) -> None:
    text = "ecg_raw\tignored\n".replace("\t", ",") + "".join(f"{i},{i}\n" for i in range(300))
    path = write(tmp_path / "b.csv", text)
    with pytest.raises(UserError, match="no 'Time \\[s\\]' column and no sample rate"):
        read_csv(path)
    rec = read_csv(path, fs_hz=300.0, role_map={"ecg_raw": "ecg"})
    assert rec.fs_hz == 300.0 and rec.roles == {"ecg": "ecg_raw"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        (HEADER, "no samples"),
        (HEADER + "0,1,2,3,4,5\n0.008,1,2,3\n0.016,1,2,3,4,5\n", "line 3 has 4 fields"),
        (HEADER + "0,1,2,3,4,x\n0.008,1,2,3,4,5\n", "non-numeric"),
        ("Time [s], FOO, BAR\n0,1,2\n0.008,1,2\n", "no column maps to a role"),
        (HEADER + "0,nan,nan,1,1,nan\n0.008,nan,nan,1,1,nan\n", "only NaN"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(UserError) as err:
        read_csv(path)
    assert (
        message in err.value.message
        and str(path) in err.value.message
        and "fix:" in err.value.message
    )


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    good = write(tmp_path / "g_Signals.csv.gz", HEADER + rows(2000))
    cut = tmp_path / "cut_Signals.csv.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated"):
        read_csv(cut)


def test_role_map_naming_absent_columns_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", HEADER + rows(300))
    with pytest.raises(UserError, match="PPG_RED.*not in the file"):
        read_csv(path, role_map={"PPG_RED": "ppg"})


def test_sample_rate_outside_vital_range_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "PLETH\n" + "1\n" * 100)
    with pytest.raises(UserError, match="outside 50-1000 Hz"):
        read_csv(path, fs_hz=20.0)


def test_nan_runs_are_found() -> None:
    x = np.array([1, np.nan, np.nan, 2, 3, np.nan, 4.0])
    assert nan_runs(x) == [(1, 2), (5, 1)]


def test_wav_roundtrip_and_restriction(tmp_path: Path) -> None:
    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    write_wav_int16(tmp_path / "t.wav", x, 8000)
    rec = read_wav(tmp_path / "t.wav")
    assert rec.fs_hz == 8000 and rec.roles == {"audio": "ch0"}
    assert np.max(np.abs(rec.role("audio") - x)) < 1e-4
    with pytest.raises(UserError, match="lacks"):
        rec.restricted(["ppg"])


def test_write_csv_reads_back(tmp_path: Path) -> None:
    fs = 125.0
    rec = Recording(
        "x",
        fs,
        {"PLETH": np.sin(np.arange(500) / 10), "RESP": np.cos(np.arange(500) / 50)},
        {"ppg": "PLETH", "resp": "RESP"},
    )
    write_csv(tmp_path / "w_Signals.csv.gz", rec)
    back = read_recording(tmp_path / "w_Signals.csv.gz")
    assert back.fs_hz == fs and np.allclose(back.role("ppg"), rec.role("ppg"), atol=1e-5)


def bedside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("files", "args", "needle"),
    [
        ({"bad.csv": "Time [s], RESP\n0,1\n0.008\n"}, ["bad.csv"], "line 3 has 1 fields"),
        ({}, ["missing.csv"], "no such file"),
        (
            {"ok.csv": HEADER + rows(400), "cfg.toml": "[alarms]\nhr_high = 3\n"},
            ["ok.csv", "--config", "cfg.toml"],
            "unknown key 'alarms.hr_high'",
        ),
        (
            {"ok.csv": HEADER + rows(400), "cfg.toml": "[alarms\n"},
            ["ok.csv", "--config", "cfg.toml"],
            "not valid TOML",
        ),
        ({"ok.csv": HEADER + rows(400)}, ["ok.csv", "--use", "audio"], "lacks"),
    ],
)
def test_process_bad_input_exits_2_with_one_line(
    tmp_path: Path, files: dict[str, str], args: list[str], needle: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    full = [
        str(tmp_path / a) if (tmp_path / a).exists() or a.endswith((".csv", ".toml")) else a
        for a in args
    ]
    r = bedside("process", *full, "--jsonl", str(tmp_path / "out.jsonl"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and needle in lines[0]
        and "fix:" in lines[0]
        and "Traceback" not in r.stderr
    )


def test_flat_channel_gives_null_vitals_with_quality(tmp_path: Path) -> None:
    text = HEADER + "".join(f"{i / 125:.3f},0.5,0.5,0,0,0.5\n" for i in range(125 * 40))
    (tmp_path / "flat.csv").write_text(text)
    r = bedside("process", str(tmp_path / "flat.csv"), "--jsonl", "-")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    vit = [x for x in recs if x["type"] == "vitals"]
    assert len(vit) == 40
    assert all(v["hr_bpm"] is None and v["rr_bpm"] is None for v in vit)
    assert all(
        set(v["sqi"]) >= {"hr_ecg", "hr_ppg", "rr_resp"} and max(v["sqi"].values()) == 0.0
        for v in vit
    )
    off = {
        x["role"]
        for x in recs
        if x["type"] == "alarm" and x["condition"] == "sensor_off" and x["state"] == "active"
    }
    assert off == {"ecg", "ppg", "resp"}
