"""WFDB records everywhere a recording goes: formats 212, 16 and 516 (FLAC) and .mat signal
files, channel names mapped to inputs, and the beat lines of ``bedside process --beats``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.errors import UserError
from device.recording import read_recording, wfdb_channel

wfdb = pytest.importorskip("wfdb")

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "mitdb_205_excerpt.hea"
SHARED = ROOT.parent / "shared" / "data"
BEATS = set("NLRejAaJSVEF/fQ")


def reference_beats(hea: Path) -> tuple[np.ndarray, list[str]]:
    ann = wfdb.rdann(str(hea.with_suffix("")), "atr")
    rec = wfdb.rdheader(str(hea.with_suffix("")))
    keep = [i for i, s in enumerate(ann.symbol) if s in BEATS]
    return ann.sample[keep] / rec.fs, [ann.symbol[i] for i in keep]


def test_the_bundled_record_reads_in_physical_units_with_every_lead() -> None:
    rec = read_recording(EXCERPT)
    assert rec.fs_hz == 360.0
    assert dict(rec.roles) == {"ecg:MLII": "MLII", "ecg:V1": "V1"}
    assert rec.n_samples == 70 * 360
    raw = wfdb.rdrecord(str(EXCERPT.with_suffix("")), physical=False)
    # physical = (digital - baseline) / gain, exactly as the header says
    mlii = (raw.d_signal[:, 0] - raw.baseline[0]) / raw.adc_gain[0]
    assert np.allclose(rec.role("ecg:MLII"), mlii, atol=1e-9)


@pytest.mark.parametrize("fmt", ["16", "516"])
def test_formats_16_and_516_read_the_same_samples(tmp_path: Path, fmt: str) -> None:
    raw = wfdb.rdrecord(str(EXCERPT.with_suffix("")), physical=False)
    wfdb.wrsamp(
        "copy",
        fs=raw.fs,
        units=raw.units,
        sig_name=raw.sig_name,
        d_signal=raw.d_signal,
        fmt=[fmt] * raw.n_sig,
        adc_gain=raw.adc_gain,
        baseline=raw.baseline,
        write_dir=str(tmp_path),
    )
    assert f" {fmt} " in (tmp_path / "copy.hea").read_text()
    a, b = read_recording(EXCERPT), read_recording(tmp_path / "copy.hea")
    for k in a.roles:
        assert np.array_equal(a.role(k), b.role(k))


def test_mat_signal_files_read_like_their_flac_twins() -> None:
    original = SHARED / "cinc2015" / "original" / "b484s.hea"
    if not original.exists():
        pytest.skip("needs ../shared/data/cinc2015 (the CinC 2015 records are not shipped)")
    a, b = read_recording(original), read_recording(SHARED / "cinc2015" / "b484s.hea")
    assert set(a.roles) == {"ecg:II", "ecg:V", "ppg", "abp"}
    assert a.fs_hz == 250.0
    for k in a.roles:
        assert np.array_equal(a.role(k), b.role(k), equal_nan=True)


def test_channel_names_map_to_inputs() -> None:
    assert wfdb_channel("MLII") == "ecg:MLII"
    assert wfdb_channel("avr") == "ecg:aVR"
    assert wfdb_channel("V5") == "ecg:V5"
    assert wfdb_channel("PLETH") == "ppg"
    assert wfdb_channel("ART") == wfdb_channel("ABP") == "abp"
    assert wfdb_channel("RESP") == "resp"
    assert wfdb_channel("CVP") is None


def test_a_record_with_a_missing_signal_file_names_the_fix(tmp_path: Path) -> None:
    shutil.copy(EXCERPT, tmp_path / EXCERPT.name)  # the header without its .dat
    with pytest.raises(UserError, match="signal files") as err:
        read_recording(tmp_path / EXCERPT.name)
    assert "copy the record again" in str(err.value)


def test_use_keeps_every_lead_of_a_role_or_one_lead() -> None:
    rec = read_recording(EXCERPT)
    assert set(rec.restricted(["ecg"]).roles) == {"ecg:MLII", "ecg:V1"}
    assert set(rec.restricted(["ecg:V1"]).roles) == {"ecg:V1"}
    with pytest.raises(UserError, match="lacks"):
        rec.restricted(["ppg"])


def test_process_beats_writes_one_line_per_heartbeat_at_its_r_peak(tmp_path: Path) -> None:
    out = tmp_path / "beats.jsonl"
    subprocess.run(
        [sys.executable, "-m", "device", "process", str(EXCERPT), "--jsonl", str(out), "--beats"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    beats = [ln for ln in lines if ln["type"] == "beat"]
    assert beats and all(b["role"] == "ecg" for b in beats)
    assert {"t_s", "role", "lead", "class", "quality", "leads"} <= set(beats[0])
    assert all(b["class"] in "NSVFQ" for b in beats)
    t = np.array([b["t_s"] for b in beats])
    assert np.all(np.diff(t) > 0.2), "one line per heartbeat, not one per lead"
    ref, _ = reference_beats(EXCERPT)
    ref = ref[(ref > 3.0) & (ref < 67.0)]  # the detector's start-up, and beats still undecided
    # EC57's match window; a few broad complexes of the second VT run are timed late
    matched = [np.min(np.abs(t - r)) <= 0.15 for r in ref]
    assert np.mean(matched) >= 0.96
    extra = [np.min(np.abs(ref - x)) > 0.15 for x in t if 3.0 < x < 67.0]
    assert sum(extra) <= 4
