"""Rebuild the bundled BIDMC excerpt from the full record (run from the project root):

    python device/data/make_excerpt.py [--data ../shared/data/bidmc/bidmc_csv]

Cuts ``START_S`` .. ``START_S + LENGTH_S`` of record ``RECORD``: the signals the device uses
(RESP, PLETH, II) and the matching lines of ``_Numerics`` and ``_Breaths``, with times and
breath sample numbers shifted so the excerpt starts at 0 s. See ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from device.recording import read_csv  # noqa: E402
from lab.writers import write_csv  # noqa: E402

RECORD = "bidmc_09"
#: chosen for clean ECG, pleth and impedance throughout (HR about 77 bpm, RR about 20 /min),
#: and no clipped (saturated) samples on any channel
START_S = 30
LENGTH_S = 210
FS_HZ = 125


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [ln.rstrip("\r\n") for ln in f if ln.strip()]


def _write(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=HERE.parents[2] / "shared" / "data" / "bidmc" / "bidmc_csv"
    )
    a = ap.parse_args()
    stem = f"{RECORD}_excerpt"
    rec = read_csv(a.data / f"{RECORD}_Signals.csv.gz").excerpt(START_S, START_S + LENGTH_S)
    write_csv(HERE / f"{stem}.csv.gz", rec, names=["RESP", "PLETH", "II"])

    num = _lines(a.data / f"{RECORD}_Numerics.csv.gz")
    out = [num[0]]
    for ln in num[1:]:
        t, rest = ln.split(",", 1)
        ts = float(t)
        if START_S <= ts < START_S + LENGTH_S:
            out.append(f"{ts - START_S:g},{rest}")
    _write(HERE / f"{stem}_Numerics.csv.gz", out)

    br = _lines(a.data / f"{RECORD}_Breaths.csv.gz")
    cols: list[list[int]] = [[] for _ in br[0].split(",")]
    for ln in br[1:]:
        for j, s in enumerate(ln.split(",")):
            v = float(s) if s.strip() else float("nan")
            if v == v:  # an annotator's column ends early: NaN or empty fields
                cols[j].append(int(v))
    lo, n = START_S * FS_HZ, LENGTH_S * FS_HZ
    kept = [[v - lo for v in c if lo < v <= lo + n] for c in cols]  # 1-based sample numbers
    rows = [br[0]]
    for i in range(max(len(c) for c in kept)):
        rows.append(",".join(str(c[i]) if i < len(c) else "" for c in kept))
    _write(HERE / f"{stem}_Breaths.csv.gz", rows)
    for p in sorted(HERE.glob(f"{stem}*")):
        print(p.name, p.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
