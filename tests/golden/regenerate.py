"""Regenerate the golden outputs: ``bedside process`` JSON lines of the bundled excerpt and of
three shared BIDMC records, with every role and with the pulse oximeter alone.

    python tests/golden/regenerate.py            # rewrite tests/golden/*.jsonl.gz

These are change-aversion files: ``tests/test_golden.py`` fails when the core's output
changes. Regenerate them only for a change meant to alter the output, and say so in the
commit message.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: ../shared/data, or BEDSIDE_SHARED_DATA (as tests/conftest.py: a worktree one level deeper)
SHARED = (
    Path(os.environ.get("BEDSIDE_SHARED_DATA") or ROOT.parent / "shared" / "data")
    / "bidmc"
    / "bidmc_csv"
)
EXCERPT = ROOT / "device" / "data" / "bidmc_09_excerpt.csv.gz"

#: name -> (recording, extra arguments): a quiet record (01), the two hardest (13: many
#: missing breath annotations; 41: bigeminy), the two with true alarms in the alarms bench
#: (05: RR 5.9; 21: HR 123), and the excerpt with limits tight enough to raise alarms
CASES: dict[str, tuple[Path, list[str]]] = {
    "excerpt_all": (EXCERPT, []),
    "excerpt_ppg": (EXCERPT, ["--use", "ppg"]),
    "excerpt_alarms": (EXCERPT, ["--config", str(HERE / "tight_limits.toml")]),
    "bidmc01_all": (SHARED / "bidmc_01_Signals.csv.gz", []),
    "bidmc05_all": (SHARED / "bidmc_05_Signals.csv.gz", []),
    "bidmc13_all": (SHARED / "bidmc_13_Signals.csv.gz", []),
    "bidmc21_all": (SHARED / "bidmc_21_Signals.csv.gz", []),
    "bidmc41_all": (SHARED / "bidmc_41_Signals.csv.gz", []),
    "bidmc41_ppg": (SHARED / "bidmc_41_Signals.csv.gz", ["--use", "ppg"]),
}


def run_case(path: Path, extra: list[str]) -> bytes:
    cmd = [sys.executable, "-m", "device", "process", str(path), "--jsonl", "-", *extra]
    return subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT).stdout


def main() -> int:
    for name, (path, extra) in CASES.items():
        if not path.exists():
            print(f"skip {name}: {path} absent", file=sys.stderr)
            continue
        out = run_case(path, extra)
        with gzip.GzipFile(HERE / f"{name}.jsonl.gz", "wb", mtime=0) as f:
            f.write(out)
        print(f"{name}: {len(out.splitlines())} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
