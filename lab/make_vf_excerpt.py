"""Rebuild ``device/data/vfdb_426_excerpt.csv.gz``: 30 s of vfdb record 426 (signal time
630-660 s: 16 s of sinus rhythm, then ventricular fibrillation from 646 s), 250 Hz, mV.

    python lab/make_vf_excerpt.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

HERE = Path(__file__).resolve()
OUT = HERE.parents[1] / "device" / "data" / "vfdb_426_excerpt.csv.gz"
START_S, END_S = 630, 660


def main() -> int:
    import wfdb

    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("BEDSIDE_SHARED_DATA") or HERE.parents[2] / "shared" / "data"
    ap.add_argument("--data", type=Path, default=Path(default))
    args = ap.parse_args()
    rec = wfdb.rdrecord(str(args.data / "vfdb" / "426"))
    fs = int(rec.fs)
    x = rec.p_signal[START_S * fs : END_S * fs, 0]
    lines = ["Time [s],ECG"] + [f"{i / fs:.3f},{v:.3f}" for i, v in enumerate(x)]
    # mtime=0: the same bytes on every rebuild
    with OUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())
    print(f"wrote {OUT} ({len(x)} samples at {fs} Hz)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
