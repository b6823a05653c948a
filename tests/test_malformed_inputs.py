"""Malformed recordings, configs and model manifests: one clear line naming the fix, exit 2.

A short run of bench/malformed_inputs.py (which adds hundreds of random mutations): every
hand-made variant of each kind goes through ``device.cli.main`` in this process, with stderr
captured; a few also run as real ``python -m device`` processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import malformed_inputs as mi

ROOT = Path(__file__).resolve().parents[1]

#: kind -> fewest variants the bench must have built (so that a broken builder cannot pass)
MIN_CASES = {
    "recording_csv": 60,
    "recording_wav": 25,
    "manifest": 80,
    "config_check": 100,
    "config_process": 100,
    "config_run": 100,
    "manifest_check": 80,
}


@pytest.fixture(scope="module")
def tallies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, mi.Tally]:
    return mi.run_all(tmp_path_factory.mktemp("malformed"), mutations=6, seed=3)


@pytest.mark.parametrize("kind", sorted(MIN_CASES))
def test_every_malformed_input_is_one_line_and_the_exit_code(
    tallies: dict[str, mi.Tally], kind: str
) -> None:
    t = tallies[kind]
    assert t.cases >= MIN_CASES[kind]
    assert t.failures == 0, json.dumps(t.examples, indent=1)
    # most variants are wrong on purpose and must be refused
    assert t.refused_cleanly >= 0.6 * t.cases


def test_judge_rejects_tracebacks_extra_lines_and_missing_fixes() -> None:
    v = mi.Variant("recording_csv", "x", ["process", "a.csv", "--jsonl", "-"])
    good = "bedside process: error: a.csv: empty file; fix: give a CSV with a header row\n"
    assert mi.judge(v, mi.Outcome(2, good)) is None
    assert mi.judge(v, mi.Outcome(1, good)) is not None
    assert mi.judge(v, mi.Outcome(0, "")) is not None
    assert mi.judge(v, mi.Outcome(2, "warning: x\n" + good)) is not None
    assert mi.judge(v, mi.Outcome(2, good.replace("; fix:", ":"))) is not None
    assert (
        mi.judge(v, mi.Outcome(None, "Traceback (most recent call last):", "KeyError")) is not None
    )
    check = mi.Variant("config_check", "x", ["run", "--check-config"], exit_code=1)
    line = "bedside run: config error: c.toml: unknown key 'bed.idd'; fix: valid keys are: id\n"
    assert mi.judge(check, mi.Outcome(1, line)) is None
    assert mi.judge(check, mi.Outcome(2, line)) is not None


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("garbled.csv.gz", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "cannot read"),
        ("dup.csv", b"Time [s], II, II\n0,1,2\n0.008,1,2\n0.016,1,2\n", "more than once"),
        ("rate0.wav", None, "not a positive number"),
    ],
)
def test_fixed_crashes_as_real_processes(
    tmp_path: Path, name: str, content: bytes | None, needle: str
) -> None:
    """Crashes the bench found (zlib error, duplicate columns silently merged, a WAV rate
    of 0 dividing by zero), run as the user runs them."""
    path = tmp_path / name
    if content is None:
        import numpy as np

        content = mi.wav_bytes(np.zeros(800), fs=0)
    path.write_bytes(content)
    r = subprocess.run(
        [sys.executable, "-m", "device", "process", str(path), "--jsonl", "-"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "; fix: " in lines[0], r.stderr
