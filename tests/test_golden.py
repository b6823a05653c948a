"""Change-aversion tests: ``bedside process`` must reproduce the committed golden outputs
(``tests/golden/regenerate.py`` writes them) line for line."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
from regenerate import CASES, HERE, run_case  # noqa: E402


@pytest.mark.parametrize("name", sorted(CASES))
def test_process_output_matches_golden(name: str) -> None:
    path, extra = CASES[name]
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data sets are not beside this checkout)")
    want = gzip.decompress((HERE / f"{name}.jsonl.gz").read_bytes()).decode().splitlines()
    got = run_case(path, extra).decode().splitlines()
    assert len(got) == len(want), f"{name}: {len(got)} lines, golden has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"{name}: line {i + 1} differs\n got: {g}\nwant: {w}"
