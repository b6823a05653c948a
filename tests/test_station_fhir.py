"""``bedside export --fhir``: vitals from ``bedside process`` on the bundled real excerpt as a
FHIR R4 Bundle, validated with the ``fhir.resources`` models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from device.compat import UTC
from station.fhir import build_bundle, seconds_from_records

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"
START = "2026-03-01T08:00:00Z"


def _bundle_model() -> Any:
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must validate FHIR: pip install -e '.[station]'")
        pytest.skip("fhir.resources is not installed (pip install -e '.[station]')")
    return Bundle


def _bedside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fhir") / "excerpt.jsonl"
    r = _bedside("process", str(EXCERPT), "--jsonl", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_export_gives_a_valid_r4_bundle_of_vital_signs(processed: Path, tmp_path: Path) -> None:
    Bundle = _bundle_model()
    out = tmp_path / "bundle.json"
    r = _bedside("export", str(processed), "--fhir", str(out), "--start", START, "--bed", "icu-3")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    bundle = Bundle.model_validate(data)  # raises on anything the R4 models reject
    assert bundle.type == "collection"

    by_url = {e["fullUrl"]: e["resource"] for e in data["entry"]}
    obs = [r for r in by_url.values() if r["resourceType"] == "Observation"]
    # 210 s of signal, one Observation per quantity per minute: 4 intervals x HR and RR
    assert len(obs) == 8
    lines = [json.loads(ln) for ln in processed.read_text().splitlines()]
    vitals = [v for v in lines if v["type"] == "vitals"]
    for o in obs:
        assert o["status"] == "final"
        assert o["category"][0]["coding"][0]["code"] == "vital-signs"
        coding = o["code"]["coding"][0]
        assert coding["system"] == "http://loinc.org"
        q = {"8867-4": "hr", "9279-1": "rr"}[coding["code"]]
        vq = o["valueQuantity"]
        assert (vq["system"], vq["code"], vq["unit"]) == (
            "http://unitsofmeasure.org",
            "/min",
            "/min",
        )
        # the value is the median of that minute's estimates from `bedside process`
        start = datetime.fromisoformat(o["effectivePeriod"]["start"].replace("Z", "+00:00"))
        k0 = (start - datetime(2026, 3, 1, 8, tzinfo=UTC)).total_seconds()
        minute = sorted(
            v[f"{q}_bpm"] for v in vitals if k0 < v["t_s"] <= k0 + 60 and v[f"{q}_bpm"] is not None
        )
        assert minute, "an Observation for an interval without estimates"
        assert abs(vq["value"] - minute[len(minute) // 2]) <= 0.5
        # references resolve inside the Bundle: the device and the bed
        assert by_url[o["device"]["reference"]]["resourceType"] == "Device"
        bed = by_url[o["subject"]["reference"]]
        assert bed["resourceType"] == "Location" and bed["name"] == "icu-3"
        assert bed["physicalType"]["coding"][0]["code"] == "bd"
    hr = sorted(
        o["valueQuantity"]["value"] for o in obs if o["code"]["coding"][0]["code"] == "8867-4"
    )
    assert all(70 <= v <= 85 for v in hr), hr  # this patient's monitor shows 76-78 bpm
    assert obs[0]["effectivePeriod"] == {
        "start": "2026-03-01T08:00:00.000Z",
        "end": "2026-03-01T08:01:00.000Z",
    }
    assert "ECG" in obs[0]["method"]["text"]


def test_every_second_and_patient_subject(processed: Path) -> None:
    Bundle = _bundle_model()
    lines = [json.loads(ln) for ln in processed.read_text().splitlines()]
    start = datetime(2026, 3, 1, 8, tzinfo=UTC)
    data = build_bundle(
        seconds_from_records(lines, start), "icu-3", "pi-7", every_s=1, patient="p42"
    )
    Bundle.model_validate(data)
    obs = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    n_hr = sum(1 for v in lines if v["type"] == "vitals" and v["hr_bpm"] is not None)
    n_rr = sum(1 for v in lines if v["type"] == "vitals" and v["rr_bpm"] is not None)
    assert len(obs) == n_hr + n_rr  # one per second with an estimate; none for a null
    assert {o["subject"]["reference"] for o in obs} == {"Patient/p42"}
    assert len({e["fullUrl"] for e in data["entry"]}) == len(data["entry"])


def test_the_validator_rejects_a_broken_observation(processed: Path) -> None:
    """The validation above can fail: an Observation without its code is refused."""
    Bundle = _bundle_model()
    from pydantic import ValidationError

    lines = [json.loads(ln) for ln in processed.read_text().splitlines()]
    data = build_bundle(seconds_from_records(lines, datetime(2026, 3, 1, tzinfo=UTC)), "b", "d")
    del data["entry"][2]["resource"]["code"]
    with pytest.raises(ValidationError):
        Bundle.model_validate(data)


def test_signal_time_only_needs_start(processed: Path, tmp_path: Path) -> None:
    r = _bedside("export", str(processed), "--fhir", str(tmp_path / "x.json"), "--bed", "b")
    assert r.returncode == 2 and "give --start" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_captured_mqtt_payloads_use_their_own_time(tmp_path: Path) -> None:
    Bundle = _bundle_model()
    src = tmp_path / "captured.jsonl"
    src.write_text(
        "\n".join(
            json.dumps(
                {
                    "schema_version": 1,
                    "bed": "icu-5",
                    "ts": f"2026-03-01T09:00:{s:02d}.000Z",
                    "type": "vitals",
                    "t_s": 100.0 + s,
                    "hr_bpm": 60.0 + s,
                    "rr_bpm": None,
                    "hr_source": "ppg",
                    "hr_model": "dsp",
                    "rr_source": None,
                }
            )  # fmt: skip
            for s in range(1, 11)
        )
    )
    out = tmp_path / "b.json"
    r = _bedside("export", str(src), "--fhir", str(out), "--every", "5", "--validate")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    Bundle.model_validate(data)
    obs = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert [o["valueQuantity"]["value"] for o in obs] == [63, 68]  # medians of 61-65, 66-70
    assert obs[0]["effectivePeriod"]["start"] == "2026-03-01T09:00:00.000Z"
    assert all(o["code"]["coding"][0]["code"] == "8867-4" for o in obs)  # no RR: none charted
    assert "pulse oximeter" in obs[0]["method"]["text"]
